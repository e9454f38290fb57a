//! A selected series whose samples are still XOR chunks.
//!
//! The query read path hands these to the engine instead of decoded sample
//! vectors, so decoding happens inside the engine's per-series (parallel)
//! work, straight into a buffer that is reused from series to series: no
//! query-sized sample vector is ever materialised, and the samples are
//! consumed while they are still in cache.

use crate::chunk::{decode_chunks_range_into, XorIter};
use crate::error::{ModelError, Result};
use crate::labels::Labels;
use crate::sample::Sample;

/// A series' encoded chunks (in time order; overlaps allowed) and the time
/// range wanted from them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSeries {
    /// The series' labels (metric name included).
    pub labels: Labels,
    /// First wanted timestamp (inclusive), ms.
    start: i64,
    /// Last wanted timestamp (inclusive), ms.
    end: i64,
    /// The chunks back to back.
    bytes: Vec<u8>,
    /// End offset in `bytes` of each chunk.
    ends: Vec<usize>,
}

impl ChunkSeries {
    /// A series with no chunk yet whose samples in `start..=end` are wanted.
    pub fn new(labels: Labels, start: i64, end: i64) -> Self {
        Self { labels, start, end, bytes: Vec::new(), ends: Vec::new() }
    }

    /// Appends an encoded chunk (header and body), later in time than or
    /// overlapping the previous ones.
    pub fn push_chunk(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        self.ends.push(self.bytes.len());
    }

    /// The encoded chunks in the order they were pushed.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.bytes[a..b])
    }

    /// Number of chunks.
    pub fn num_chunks(&self) -> usize {
        self.ends.len()
    }

    /// Encoded size of all chunks, bytes.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// An upper bound of the samples decoding yields (the chunks' sample counts).
    pub fn max_samples(&self) -> usize {
        self.chunks().map(|c| XorIter::new(c).remaining()).sum()
    }

    /// Replaces `out`'s contents with the samples in the wanted range, in
    /// strictly increasing time order: chunks that overlap (a replay with
    /// other chunk boundaries) repeat samples of the same timestamp, which
    /// are the same sample, so one of each is kept.
    pub fn decode_into(&self, out: &mut Vec<Sample>) -> Result<()> {
        out.clear();
        decode_chunks_range_into(self.chunks(), self.start, self.end, out).map_err(|(i, e)| {
            let why = match e {
                ModelError::CorruptChunk(why) => why,
                other => other.to_string(),
            };
            ModelError::CorruptChunk(format!("chunk {i} of series {}: {why}", self.labels))
        })?;
        if !out.windows(2).all(|w| w[0].t < w[1].t) {
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
        Ok(())
    }

    /// The samples in the wanted range (see [`ChunkSeries::decode_into`]).
    pub fn decode(&self) -> Result<Vec<Sample>> {
        let mut out = Vec::with_capacity(self.max_samples().min(self.bytes.len().saturating_mul(4)));
        self.decode_into(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chunk::XorChunk;

    fn chunk(ts: impl IntoIterator<Item = i64>) -> Vec<u8> {
        let mut c = XorChunk::new();
        for t in ts {
            c.append(t, t as f64 * 0.5);
        }
        c.into_bytes()
    }

    #[test]
    fn decodes_the_range_across_chunks_and_merges_overlaps() {
        let mut s = ChunkSeries::new(Labels::from_pairs([("__name__", "m")]), 15, 55);
        s.push_chunk(&chunk((0..30).step_by(10)));
        s.push_chunk(&chunk((20..70).step_by(10)));
        assert_eq!(s.num_chunks(), 2);
        assert_eq!(s.max_samples(), 8);
        let got: Vec<i64> = s.decode().unwrap().iter().map(|p| p.t).collect();
        assert_eq!(got, vec![20, 30, 40, 50]);
        let mut buf = vec![Sample::new(1, 1.0)];
        s.decode_into(&mut buf).unwrap();
        assert_eq!(buf.len(), 4, "the buffer's old contents are replaced");
        assert_eq!(buf[0], Sample::new(20, 10.0));
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_naming_the_series() {
        let mut s = ChunkSeries::new(Labels::from_pairs([("__name__", "m"), ("a", "b")]), 0, 100);
        s.push_chunk(&chunk([1, 2]));
        let mut bad = chunk([1, 2, 3]);
        bad.truncate(7); // the header and half of the first value
        s.push_chunk(&bad);
        let err = s.decode().unwrap_err().to_string();
        assert!(err.starts_with("corrupt chunk: chunk 1 of series m{a=\"b\"}: unexpected end"), "{err}");
    }
}
