//! The `Ingester/Push` and `Ingester/PushEncoded` calls with a request body
//! encoded once: a shard batch is serialised to protobuf bytes before its
//! first attempt and every retry re-sends the same bytes (a cheap `Bytes`
//! clone) instead of deep-copying the request's label strings per attempt as
//! the generated client would. `PushEncoded` carries the batch in the Raft
//! log's batch codec, so the leader appends it without decoding the series.

use crate::raft::codec;
use aion_model::storage::WriteBatch;
use aion_proto::ingester as pb;
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// gRPC path of the Push method.
pub(super) const PUSH_PATH: &str = "/aion.ingester.Ingester/Push";
/// gRPC path of the PushEncoded method.
pub(super) const PUSH_ENCODED_PATH: &str = "/aion.ingester.Ingester/PushEncoded";

/// Sends pre-encoded request bytes; decodes a [`pb::PushResponse`].
#[derive(Debug, Clone, Copy, Default)]
struct PreEncodedPushCodec;

/// Writes the bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
struct BytesEncoder;

/// Decodes a [`pb::PushResponse`] with prost.
#[derive(Debug, Clone, Copy, Default)]
struct PushResponseDecoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PushResponseDecoder {
    type Item = pb::PushResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::PushResponse>, Status> {
        let len = src.remaining();
        pb::PushResponse::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable PushResponse: {e}")))
    }
}

impl Codec for PreEncodedPushCodec {
    type Encode = Bytes;
    type Decode = pb::PushResponse;
    type Encoder = BytesEncoder;
    type Decoder = PushResponseDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> PushResponseDecoder {
        PushResponseDecoder
    }
}

/// `req` encoded once for [`push_encoded`].
pub(super) fn encode_push(req: &pb::PushRequest) -> Bytes {
    Bytes::from(req.encode_to_vec())
}

/// A `PushEncodedRequest` for `shard` carrying `batch` in the Raft batch
/// codec, encoded once for [`push_encoded`].
pub(super) fn encode_push_batch(shard: u64, batch: &WriteBatch) -> Bytes {
    let mut encoded = Vec::with_capacity(64 + 96 * batch.series.len());
    codec::encode_write_batch(batch, &mut encoded);
    let req = pb::PushEncodedRequest {
        shard,
        codec_version: u32::from(codec::FORMAT_VERSION),
        batch: encoded,
    };
    Bytes::from(req.encode_to_vec())
}

/// One call of the Push method at `path` (Push or PushEncoded) over
/// `channel` with the pre-encoded request `body`.
pub(super) async fn push_encoded(channel: Channel, path: &'static str, body: Bytes) -> Result<pb::PushResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("ingester connection not ready: {e}")))?;
    let path = PathAndQuery::from_static(path);
    Ok(grpc.unary(tonic::Request::new(body), path, PreEncodedPushCodec).await?.into_inner())
}
