//! Per-series head state: the open XOR chunk, the last sample (for the
//! ordering rules) and its persisted form in the head CF.

use crate::codec::{put_uvarint, Reader};
use crate::keys::{block_start, VALUE_VERSION};
use aion_model::chunk::XorChunk;
use aion_model::sample::Sample;
use aion_model::storage::RejectReason;
use std::sync::atomic::AtomicBool;

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored.
    Appended,
    /// Bit-identical to the last stored sample; ignored.
    Duplicate,
    /// Not stored.
    Rejected(RejectReason),
}

/// A chunk cut from the head, to be written to the chunks CF.
#[derive(Debug, Clone)]
pub(crate) struct ClosedChunk {
    /// Owner series.
    pub series: u64,
    /// First timestamp.
    pub mint: i64,
    /// Last timestamp.
    pub maxt: i64,
    /// Encoded XOR chunk.
    pub bytes: Vec<u8>,
}

/// Head state of one series.
#[derive(Debug)]
pub(crate) struct HeadState {
    /// The open chunk (empty after a cut or a retention drop).
    pub chunk: XorChunk,
    /// Samples in `chunk`.
    pub chunk_len: usize,
    /// First timestamp in `chunk` (meaningless when empty).
    pub chunk_mint: i64,
    /// Newest sample ever stored, for the ordering rules.
    pub last: Option<Sample>,
    /// Lower bound of the oldest retained sample (`i64::MAX` when none).
    pub min_t: i64,
    /// Changed since the last checkpoint.
    /// (Atomic so a checkpoint can collect and clear it under the read lock.)
    pub dirty: AtomicBool,
}

impl Default for HeadState {
    fn default() -> Self {
        Self {
            chunk: XorChunk::new(),
            chunk_len: 0,
            chunk_mint: 0,
            last: None,
            min_t: i64::MAX,
            dirty: AtomicBool::new(true),
        }
    }
}

impl HeadState {
    /// Newest retained timestamp, if any.
    pub(crate) fn max_t(&self) -> Option<i64> {
        self.last.filter(|l| self.min_t <= l.t).map(|l| l.t)
    }

    /// Applies the ordering rules to `s` and stores it when valid. Returns the
    /// verdict and the chunk cut to make room, if any.
    pub(crate) fn append(
        &mut self,
        series: u64,
        s: Sample,
        max_per_chunk: usize,
    ) -> (Verdict, Option<ClosedChunk>) {
        if let Some(last) = self.last {
            if s.t < last.t {
                return (Verdict::Rejected(RejectReason::OutOfOrder), None);
            }
            if s.t == last.t {
                return if s.v.to_bits() == last.v.to_bits() {
                    (Verdict::Duplicate, None)
                } else {
                    (Verdict::Rejected(RejectReason::DuplicateTimestamp), None)
                };
            }
        }
        let mut closed = None;
        if self.chunk_len > 0
            && (self.chunk_len >= max_per_chunk || block_start(s.t) != block_start(self.chunk_mint))
        {
            closed = self.cut(series);
        }
        if self.chunk_len == 0 {
            self.chunk_mint = s.t;
        }
        self.chunk.append(s.t, s.v);
        self.chunk_len += 1;
        self.last = Some(s);
        self.min_t = self.min_t.min(s.t);
        *self.dirty.get_mut() = true;
        (Verdict::Appended, closed)
    }

    /// Closes the open chunk, leaving an empty one.
    fn cut(&mut self, series: u64) -> Option<ClosedChunk> {
        if self.chunk_len == 0 {
            return None;
        }
        let chunk = std::mem::replace(&mut self.chunk, XorChunk::new());
        self.chunk_len = 0;
        *self.dirty.get_mut() = true;
        let maxt = self.last.map_or(self.chunk_mint, |l| l.t);
        Some(ClosedChunk {
            series,
            mint: self.chunk_mint,
            maxt,
            bytes: chunk.bytes().to_vec(),
        })
    }

    /// Retention: forgets the open chunk when it lies in a block before
    /// `cut_block` and raises `min_t` to it. Returns true when a chunk was dropped.
    pub(crate) fn drop_before(&mut self, cut_block: i64) -> bool {
        let mut dropped = false;
        if self.chunk_len > 0 && self.chunk_mint < cut_block {
            self.chunk = XorChunk::new();
            self.chunk_len = 0;
            *self.dirty.get_mut() = true;
            dropped = true;
        }
        if self.min_t < cut_block {
            self.min_t = cut_block;
            *self.dirty.get_mut() = true;
        }
        dropped
    }

    /// Encodes the head CF value (layout in `docs/format/rocksdb.md`).
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(VALUE_VERSION);
        buf.push(u8::from(self.last.is_some()));
        buf.extend_from_slice(&self.min_t.to_le_bytes());
        let last = self.last.unwrap_or(Sample::new(0, 0.0));
        buf.extend_from_slice(&last.t.to_le_bytes());
        buf.extend_from_slice(&last.v.to_bits().to_le_bytes());
        buf.extend_from_slice(&self.chunk_mint.to_le_bytes());
        put_uvarint(buf, self.chunk_len as u64);
        let bytes = if self.chunk_len > 0 {
            self.chunk.bytes()
        } else {
            &[]
        };
        put_uvarint(buf, bytes.len() as u64);
        buf.extend_from_slice(bytes);
    }

    /// Decodes a head CF value.
    pub(crate) fn decode(b: &[u8]) -> Result<HeadState, String> {
        let mut r = Reader::new(b);
        let v = r.u8("version")?;
        if v != VALUE_VERSION {
            return Err(format!("unknown head record version {v}"));
        }
        let has_last = r.u8("flags")? & 1 == 1;
        let min_t = r.i64_le("min_t")?;
        let last_t = r.i64_le("last_t")?;
        let last_v = f64::from_bits(r.u64_le("last_v")?);
        let chunk_mint = r.i64_le("chunk_mint")?;
        let chunk_len = r.uvarint("chunk sample count")? as usize;
        let n = r.count(1, "chunk bytes")?;
        let bytes = r.take(n, "chunk bytes")?;
        r.finish("head record")?;
        let chunk = if chunk_len > 0 {
            // `from_bytes` decodes the chunk once, so appends can resume.
            let chunk =
                XorChunk::from_bytes(bytes.to_vec()).map_err(|e| format!("open chunk: {e}"))?;
            if chunk.num_samples() != chunk_len {
                return Err(format!(
                    "open chunk holds {} samples, record says {chunk_len}",
                    chunk.num_samples()
                ));
            }
            chunk
        } else {
            XorChunk::new()
        };
        let last = has_last.then(|| Sample::new(last_t, last_v));
        Ok(HeadState {
            chunk,
            chunk_len,
            chunk_mint,
            last,
            min_t,
            dirty: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::BLOCK_MS;

    #[test]
    fn ordering_rules() {
        let mut h = HeadState::default();
        assert_eq!(h.append(1, Sample::new(10, 1.0), 120).0, Verdict::Appended);
        assert_eq!(
            h.append(1, Sample::new(9, 1.0), 120).0,
            Verdict::Rejected(RejectReason::OutOfOrder)
        );
        assert_eq!(h.append(1, Sample::new(10, 1.0), 120).0, Verdict::Duplicate);
        assert_eq!(
            h.append(1, Sample::new(10, 2.0), 120).0,
            Verdict::Rejected(RejectReason::DuplicateTimestamp)
        );
        let nan = f64::from_bits(0x7ff8_0000_0000_0001);
        assert_eq!(h.append(1, Sample::new(11, nan), 120).0, Verdict::Appended);
        assert_eq!(h.append(1, Sample::new(11, nan), 120).0, Verdict::Duplicate);
        assert_eq!(
            h.append(1, Sample::new(11, f64::NAN), 120).0,
            Verdict::Rejected(RejectReason::DuplicateTimestamp)
        );
        assert_eq!(h.last.map(|l| l.t), Some(11));
        assert_eq!(h.chunk_len, 2);
    }

    #[test]
    fn cuts_at_sample_limit_and_block_boundary() {
        let mut h = HeadState::default();
        let mut closed = Vec::new();
        for t in 0..5 {
            closed.extend(h.append(7, Sample::new(t, 0.0), 3).1);
        }
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].mint, closed[0].maxt), (0, 2));
        closed.extend(h.append(7, Sample::new(BLOCK_MS, 0.0), 3).1);
        assert_eq!((closed[1].mint, closed[1].maxt), (3, 4));
        assert_eq!((h.chunk_mint, h.chunk_len), (BLOCK_MS, 1));
    }

    #[test]
    fn retention_drop_keeps_last_sample() {
        let mut h = HeadState::default();
        h.append(1, Sample::new(5, 1.0), 120);
        assert!(h.drop_before(BLOCK_MS));
        assert_eq!(h.max_t(), None);
        assert_eq!(
            h.append(1, Sample::new(4, 1.0), 120).0,
            Verdict::Rejected(RejectReason::OutOfOrder)
        );
    }

    #[test]
    fn open_chunk_round_trips_and_appends_resume() {
        let mut h = HeadState::default();
        let mut direct = HeadState::default();
        for t in 0..10 {
            h.append(1, Sample::new(t * 15, t as f64 * 0.5), 120);
            direct.append(1, Sample::new(t * 15, t as f64 * 0.5), 120);
        }
        let mut buf = Vec::new();
        h.encode(&mut buf);
        let mut d = HeadState::decode(&buf).unwrap();
        assert_eq!((d.chunk_len, d.chunk_mint, d.min_t), (10, 0, 0));
        assert_eq!(d.last, Some(Sample::new(135, 4.5)));
        d.append(1, Sample::new(150, 7.0), 120);
        direct.append(1, Sample::new(150, 7.0), 120);
        assert_eq!(d.chunk.bytes(), direct.chunk.bytes());
    }

    #[test]
    fn empty_record_round_trips_and_truncation_is_reported() {
        let h = HeadState {
            last: Some(Sample::new(42, 1.5)),
            min_t: 40,
            ..Default::default()
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        let d = HeadState::decode(&buf).unwrap();
        assert_eq!(d.last, Some(Sample::new(42, 1.5)));
        assert_eq!((d.min_t, d.chunk_len, d.dirty.into_inner()), (40, 0, false));
        assert!(HeadState::decode(&buf[..10])
            .unwrap_err()
            .contains("truncated"));
    }
}
