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
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// gRPC path of the Push method.
pub(super) const PUSH_PATH: &str = "/aion.ingester.Ingester/Push";
/// gRPC path of the PushEncoded method.
pub(super) const PUSH_ENCODED_PATH: &str = "/aion.ingester.Ingester/PushEncoded";
/// gRPC path of the PushEncodedMulti method.
pub(super) const PUSH_ENCODED_MULTI_PATH: &str = "/aion.ingester.Ingester/PushEncodedMulti";

/// Sends pre-encoded request bytes; decodes a `T` (the method's answer).
#[derive(Debug, Clone, Copy)]
struct PreEncodedCodec<T>(PhantomData<fn() -> T>);

/// Writes the bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
struct BytesEncoder;

/// Decodes a `T` with prost.
#[derive(Debug, Clone, Copy)]
struct ProstDecoder<T>(PhantomData<fn() -> T>);

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl<T: Message + Default + Send + 'static> Decoder for ProstDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let len = src.remaining();
        T::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable Push answer: {e}")))
    }
}

impl<T: Message + Default + Send + 'static> Codec for PreEncodedCodec<T> {
    type Encode = Bytes;
    type Decode = T;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<T>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<T> {
        ProstDecoder(PhantomData)
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
    call(channel, path, body).await
}

/// A `PushEncodedMultiRequest` whose shard batches are the already encoded
/// `PushEncodedRequest`s `bodies` (each one field-1 entry of the message).
pub(super) fn encode_push_multi<'a>(bodies: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut out = Vec::new();
    for body in bodies {
        out.push(0x0a); // field 1, length-delimited
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
    }
    Bytes::from(out)
}

/// One `PushEncodedMulti` call over `channel` with the pre-encoded request `body`.
pub(super) async fn push_encoded_multi(channel: Channel, body: Bytes) -> Result<pb::PushEncodedMultiResponse, Status> {
    call(channel, PUSH_ENCODED_MULTI_PATH, body).await
}

/// One unary call of the method at `path` with the pre-encoded request `body`.
async fn call<T: Message + Default + Send + 'static>(channel: Channel, path: &'static str, body: Bytes) -> Result<T, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("ingester connection not ready: {e}")))?;
    let path = PathAndQuery::from_static(path);
    Ok(grpc.unary(tonic::Request::new(body), path, PreEncodedCodec::<T>(PhantomData)).await?.into_inner())
}
