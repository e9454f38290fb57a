//! Decoding of a Prometheus remote-write 1.0 body: a snappy *block* (not the
//! framed stream format) holding a protobuf `WriteRequest`.

use crate::error::{DistributorError, Result};
use aion_proto::prometheus::WriteRequest;
use prost::Message;

mod fast_decode;
pub mod v2;

/// First bytes of a snappy *framed* stream (stream identifier chunk); a common
/// client mistake we name explicitly.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Decompresses `body` (at most `max_decompressed` bytes) and decodes the `WriteRequest`.
pub fn decode(body: &[u8], max_decompressed: usize) -> Result<WriteRequest> {
    let raw = decompress(body, max_decompressed)?;
    if let Some(req) = fast_decode::decode(&raw) {
        return Ok(req);
    }
    WriteRequest::decode(raw.as_slice()).map_err(|e| DistributorError::Protobuf(e.to_string()))
}

/// Decompresses a snappy block, refusing one whose declared length exceeds
/// `max_decompressed` before allocating anything for it.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>> {
    if body.starts_with(SNAPPY_FRAMED_MAGIC) {
        return Err(DistributorError::Snappy(
            "body is in the snappy framed (stream) format; remote write uses the snappy block format".into(),
        ));
    }
    let len = snap::raw::decompress_len(body).map_err(|e| DistributorError::Snappy(e.to_string()))?;
    if len > max_decompressed {
        return Err(DistributorError::BodyTooLarge {
            what: "decompressed body",
            size: Some(len as u64),
            limit: max_decompressed as u64,
        });
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| DistributorError::Snappy(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_proto::prometheus::{Label, Sample, TimeSeries};

    fn body(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("BUG: snappy encode")
    }

    #[test]
    fn round_trips_a_write_request() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: "up".into() }],
                samples: vec![Sample { value: 1.0, timestamp: 1000 }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(decode(&body(&req), 1 << 20).unwrap(), req);
    }

    #[test]
    fn broken_snappy_is_named() {
        let e = decode(b"\xff\xff\xff\xff\xff\xff", 1 << 20).unwrap_err();
        assert!(matches!(e, DistributorError::Snappy(_)), "{e:?}");
        assert!(e.to_string().starts_with("cannot decompress request body as a snappy block"), "{e}");
    }

    #[test]
    fn framed_snappy_is_named() {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut w, b"hello").unwrap();
        let framed = w.into_inner().unwrap();
        let e = decode(&framed, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("framed"), "{e}");
    }

    #[test]
    fn broken_protobuf_is_named() {
        let b = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\xff\x0f garbage").unwrap();
        let e = decode(&b, 1 << 20).unwrap_err();
        assert!(matches!(e, DistributorError::Protobuf(_)), "{e:?}");
    }

    #[test]
    fn declared_length_over_limit_is_413_before_allocating() {
        // A 5-byte varint claiming ~4 GiB of output.
        let e = decode(b"\xff\xff\xff\xff\x0f", 1 << 20).unwrap_err();
        assert!(matches!(e, DistributorError::BodyTooLarge { what: "decompressed body", .. }), "{e:?}");
    }
}
