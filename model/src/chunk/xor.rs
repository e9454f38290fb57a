//! Gorilla-style XOR chunk for float samples (byte layout: `docs/format/chunk.md`).
//!
//! Timestamps are stored as delta-of-delta with a prefix code tuned for the
//! few-millisecond jitter of real scrapes; values as the XOR with the previous
//! value, reusing the previous leading/trailing-zero window when it pays off.
//! All timestamp arithmetic wraps modulo 2^64, so any `i64` sequence (even a
//! non-increasing one) round-trips exactly and nothing can overflow; every
//! float bit pattern (NaN payloads, the staleness marker, ±Inf, -0.0) is
//! preserved bit for bit.
//!
//! Hand-written rather than taken from a crate: the chunk encoding is the
//! product's storage and wire format, so we own its bytes and its speed.

mod code;
mod fast;
mod read;

pub use read::{decode_chunks_range_into, XorIter};

use crate::chunk::bstream::BitWriter;
use crate::error::{ModelError, Result};
use crate::sample::Sample;
use code::{write_dod, write_value, XorState};

/// First header byte of a chunk whose sample count is a big-endian `u16`.
pub const FORMAT_XOR_V1_COUNT16: u8 = 0x01;
/// First header byte of a chunk whose sample count is a big-endian `u32`
/// (used once a chunk grows past `u16::MAX` samples).
pub const FORMAT_XOR_V1_COUNT32: u8 = 0x02;

/// Zigzag-maps a signed integer so small magnitudes become small unsigned ones.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// An XOR-encoded chunk of float samples, appendable in O(1).
///
/// `bytes()` is always a complete chunk (header + body), ready to store or send.
#[derive(Debug, Clone)]
pub struct XorChunk {
    w: BitWriter,
    count: u32,
    first_t: i64,
    st: XorState,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        let mut w = BitWriter::default();
        w.write_bits(u64::from(FORMAT_XOR_V1_COUNT16), 8);
        w.write_bits(0, 16);
        Self {
            w,
            count: 0,
            first_t: 0,
            st: XorState::default(),
        }
    }

    /// Wraps encoded bytes, checking the header and decoding the whole body once
    /// (so that `append` can continue and later `iter` calls cannot fail).
    ///
    /// Read-only callers that want to skip this pass can use [`XorIter::new`]
    /// or [`XorChunk::decode_all`] on the bytes directly.
    pub fn from_bytes(buf: Vec<u8>) -> Result<Self> {
        let (count, _) = parse_header(&buf)?;
        let mut it = XorIter::new(&buf);
        let mut first_t = 0;
        for (i, s) in it.by_ref().enumerate() {
            let s = s?;
            if i == 0 {
                first_t = s.t;
            }
        }
        let (st, used_in_last) = it.finish_state()?;
        let w = BitWriter::from_vec(buf, used_in_last);
        Ok(Self {
            w,
            count,
            first_t,
            st,
        })
    }

    /// Decodes every sample of an encoded chunk.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        XorIter::new(bytes).decode_range_into(i64::MIN, i64::MAX, &mut out)?;
        Ok(out)
    }

    /// Appends a sample; `t` should be greater than the last appended
    /// timestamp (the codec round-trips any `i64` sequence, but the rest of
    /// the system assumes increasing time).
    ///
    /// # Panics
    /// When the chunk already holds `u32::MAX` samples.
    pub fn append(&mut self, t: i64, v: f64) {
        let v = v.to_bits();
        match self.count {
            0 => {
                self.w.write_uvarint(zigzag(t));
                self.w.write_bits(v, 64);
                self.first_t = t;
                self.st = XorState {
                    t,
                    delta: 0,
                    v,
                    lead: 0,
                    len: 0,
                };
            }
            1 => {
                // Increasing time makes this a small positive number; a
                // decreasing one still round-trips (as a large u64).
                let delta = t.wrapping_sub(self.st.t);
                self.w.write_uvarint(delta as u64);
                self.st.delta = delta;
                self.st.t = t;
                write_value(&mut self.w, &mut self.st, v);
            }
            _ => {
                let delta = t.wrapping_sub(self.st.t);
                write_dod(&mut self.w, delta.wrapping_sub(self.st.delta));
                self.st.delta = delta;
                self.st.t = t;
                write_value(&mut self.w, &mut self.st, v);
            }
        }
        self.bump_count();
    }

    fn bump_count(&mut self) {
        assert!(
            self.count < u32::MAX,
            "BUG: XOR chunk is full ({} samples)",
            self.count
        );
        self.count += 1;
        if self.count > u32::from(u16::MAX) && self.w.bytes()[0] == FORMAT_XOR_V1_COUNT16 {
            // Widen the header once; amortised O(1).
            self.w.insert_bytes(1, &[0, 0]);
            self.w.bytes_mut()[0] = FORMAT_XOR_V1_COUNT32;
        }
        let b = self.w.bytes_mut();
        if b[0] == FORMAT_XOR_V1_COUNT16 {
            b[1..3].copy_from_slice(&(self.count as u16).to_be_bytes());
        } else {
            b[1..5].copy_from_slice(&self.count.to_be_bytes());
        }
    }

    /// Encoded bytes: header and body, the last byte zero-padded.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Gives the encoded bytes back.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_vec()
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.count as usize
    }

    /// True when the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the first sample.
    pub fn first_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_t)
    }

    /// Timestamp of the last sample.
    pub fn last_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.st.t)
    }

    /// Value of the last sample (bit-exact).
    pub fn last_value(&self) -> Option<f64> {
        (self.count > 0).then_some(f64::from_bits(self.st.v))
    }

    /// Iterates the samples. Never fails for a chunk built by `new`/`append`
    /// or accepted by `from_bytes`.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(self.w.bytes())
    }
}

/// Parses the header: returns (sample count, header length in bytes).
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(u32, usize)> {
    let corrupt = |what: String| Err(ModelError::CorruptChunk(what));
    match bytes.first() {
        None => corrupt("empty chunk: no header byte".to_string()),
        Some(&FORMAT_XOR_V1_COUNT16) => match bytes.get(1..3) {
            Some(c) => Ok((u32::from(u16::from_be_bytes([c[0], c[1]])), 3)),
            None => corrupt(format!("header truncated: {} bytes, want 3", bytes.len())),
        },
        Some(&FORMAT_XOR_V1_COUNT32) => match bytes.get(1..5) {
            Some(c) => Ok((u32::from_be_bytes([c[0], c[1], c[2], c[3]]), 5)),
            None => corrupt(format!("header truncated: {} bytes, want 5", bytes.len())),
        },
        Some(&b) => corrupt(format!(
            "unknown chunk format byte {b:#04x} (known: {FORMAT_XOR_V1_COUNT16:#04x}, {FORMAT_XOR_V1_COUNT32:#04x})"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;
    use crate::chunk::testdata::{encoded_size, realistic_mix, size_report, Jitter};
    use crate::sample::{stale_nan, STALE_NAN_BITS};

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        c
    }

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let c = encode(samples);
        let got = XorChunk::decode_all(c.bytes()).unwrap();
        assert_eq!(got.len(), samples.len());
        for (g, &(t, v)) in got.iter().zip(samples) {
            assert!(
                g.bit_eq(&Sample::new(t, v)),
                "got {g:?}, want ({t}, {v:?} = {:#x})",
                v.to_bits()
            );
        }
        let again = XorChunk::from_bytes(c.bytes().to_vec()).unwrap();
        assert_eq!(again.num_samples(), samples.len());
        assert_eq!(again.bytes(), c.bytes());
    }

    #[test]
    fn decode_range_into_matches_the_iterator() {
        let samples: Vec<(i64, f64)> = (0..200).map(|i| (i * 15_000 + i % 7, (i * i) as f64 / 3.0)).collect();
        let c = encode(&samples);
        for (start, end) in [(0, i64::MAX), (30_000, 90_000), (-5, -1), (2_985_000, i64::MAX), (i64::MIN, 0)] {
            let want: Vec<Sample> = c.iter().map(|s| s.unwrap()).filter(|s| s.t >= start && s.t <= end).collect();
            let mut got = vec![Sample::new(-1, 0.0)];
            c.iter().decode_range_into(start, end, &mut got).unwrap();
            assert_eq!(&got[1..], &want[..], "{start}..={end}");
            assert_eq!(got[0], Sample::new(-1, 0.0), "appends, never clears");
        }
        let bytes = c.bytes();
        let mut got = Vec::new();
        let truncated = XorIter::new(&bytes[..bytes.len() / 2]).decode_range_into(0, i64::MAX, &mut got);
        assert!(truncated.is_err());
        assert!(!got.is_empty() && got.len() < samples.len(), "samples before the damage are kept");
        assert!(XorIter::new(&[0xff]).decode_range_into(0, i64::MAX, &mut Vec::new()).is_err());
    }

    #[test]
    fn empty_chunk_has_header_only() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[FORMAT_XOR_V1_COUNT16, 0, 0]);
        assert!(c.is_empty());
        assert_eq!(
            (c.first_t(), c.last_t(), c.last_value()),
            (None, None, None)
        );
        assert_eq!(c.iter().count(), 0);
        assert!(XorChunk::from_bytes(c.bytes().to_vec()).unwrap().is_empty());
    }

    #[test]
    fn special_values_round_trip_bit_exactly() {
        let vals = [
            stale_nan(),
            f64::NAN,
            f64::from_bits(0xfff8_0000_0000_0001),
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            stale_nan(),
        ];
        let samples: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect();
        assert_round_trip(&samples);
        let c = encode(&samples);
        assert_eq!(c.last_value().map(f64::to_bits), Some(STALE_NAN_BITS));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        assert_round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
        assert_round_trip(&[
            (i64::MIN, 1.0),
            (i64::MIN + 1, 1.0),
            (i64::MAX - 1, 1.0),
            (i64::MAX, 1.0),
        ]);
        assert_round_trip(&[
            (-5, 1.0),
            (-4, 1.0),
            (1 << 40, 1.0),
            ((1 << 40) + 1, 1.0),
            ((1 << 40) + 2, 1.0),
        ]);
        // Every dod bucket boundary, both signs.
        let mut t = 0i64;
        let mut delta = 1_000_000_000_000i64;
        let mut samples = vec![(t, 0.0)];
        for (&bits, &lo) in code::DOD_BITS.iter().zip(code::DOD_OFFSET.iter()) {
            for dod in [
                lo as i64,
                (lo + (1 << bits) - 1) as i64,
                (lo + (1 << bits)) as i64,
            ] {
                for d in [dod, -dod] {
                    delta += d;
                    t += delta;
                    samples.push((t, 0.0));
                }
            }
        }
        assert_round_trip(&samples);
    }

    #[test]
    fn accessors_track_first_and_last() {
        let c = encode(&[(10, 1.5), (20, 2.5), (35, -3.0)]);
        assert_eq!(c.num_samples(), 3);
        assert_eq!(c.first_t(), Some(10));
        assert_eq!(c.last_t(), Some(35));
        assert_eq!(c.last_value(), Some(-3.0));
        let ts: Vec<i64> = c.iter().map(|s| s.unwrap().t).collect();
        assert_eq!(ts, vec![10, 20, 35]);
    }

    #[test]
    fn append_after_from_bytes_continues_the_stream() {
        let all: Vec<(i64, f64)> = (0..50)
            .map(|i| (1_000 + i * 15_000 + (i % 3), (i * i) as f64 * 0.25))
            .collect();
        for split in [0, 1, 2, 3, 17, 50] {
            let mut c = XorChunk::from_bytes(encode(&all[..split]).into_bytes()).unwrap();
            for &(t, v) in &all[split..] {
                c.append(t, v);
            }
            assert_eq!(c.bytes(), encode(&all).bytes(), "split at {split}");
            assert_eq!(c.first_t(), Some(1_000));
        }
    }

    #[test]
    fn header_widens_past_u16_samples() {
        let n = u16::MAX as i64 + 10;
        let mut c = XorChunk::new();
        for i in 0..n {
            c.append(i * 10, (i % 7) as f64);
        }
        assert_eq!(c.bytes()[0], FORMAT_XOR_V1_COUNT32);
        assert_eq!(c.num_samples(), n as usize);
        let got = XorChunk::decode_all(c.bytes()).unwrap();
        assert_eq!(got.len(), n as usize);
        assert_eq!(
            got[n as usize - 1],
            Sample::new((n - 1) * 10, ((n - 1) % 7) as f64)
        );
        let mut c = XorChunk::from_bytes(c.into_bytes()).unwrap();
        c.append(n * 10, 1.0);
        assert_eq!(c.iter().last().unwrap().unwrap(), Sample::new(n * 10, 1.0));
    }

    #[test]
    fn bad_headers_are_rejected() {
        for bad in [
            &[][..],
            &[0x00, 0, 0],
            &[0x07, 0, 0],
            &[FORMAT_XOR_V1_COUNT16, 0],
            &[FORMAT_XOR_V1_COUNT32, 0, 0],
        ] {
            assert!(
                matches!(
                    XorChunk::from_bytes(bad.to_vec()),
                    Err(ModelError::CorruptChunk(_))
                ),
                "{bad:?}"
            );
            assert!(XorChunk::decode_all(bad).is_err());
            let mut it = XorIter::new(bad);
            assert!(it.next().unwrap().is_err());
            assert!(it.next().is_none());
        }
    }

    #[test]
    fn truncation_yields_one_error_then_ends() {
        let c = encode(&[(1, 1.0), (2, 2.0), (3, 3.5), (4, 7.25)]);
        let bytes = c.bytes();
        for cut in 3..bytes.len() {
            let mut it = XorIter::new(&bytes[..cut]);
            let items: Vec<Result<Sample>> = it.by_ref().collect();
            assert!(items.last().unwrap().is_err(), "cut at {cut}");
            assert_eq!(items.iter().filter(|r| r.is_err()).count(), 1);
            assert!(it.next().is_none());
            assert!(XorChunk::from_bytes(bytes[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn trailing_garbage_and_dirty_padding_rejected_by_from_bytes() {
        let c = encode(&[(1, 1.0), (2, 2.0), (4, 3.0)]);
        let mut extra = c.bytes().to_vec();
        extra.push(0);
        assert!(XorChunk::from_bytes(extra).is_err());
        let mut dirty = c.bytes().to_vec();
        *dirty.last_mut().unwrap() |= 1;
        assert!(XorChunk::from_bytes(dirty).is_err());
    }

    #[test]
    fn unchanged_scrapes_cost_two_bits() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, 42.0))
            .collect();
        let c = encode(&samples);
        // header 3 + first t 6 + first v 8 + delta 2 (bit-packed) + 1 value bit + 118 * 2 bits.
        assert_eq!(
            c.bytes().len(),
            3 + 6 + 8 + (16 + 1 + 118 * 2usize).div_ceil(8)
        );
    }

    #[test]
    fn realistic_mix_stays_under_one_and_a_half_bytes_per_sample() {
        let mix = realistic_mix(7, 10, 2 * 120, Jitter::Realistic);
        let (bytes, samples) = encoded_size(&mix);
        let per_sample = bytes as f64 / samples as f64;
        assert!(
            per_sample <= 1.5,
            "{per_sample:.3} bytes/sample:\n{}",
            size_report(&mix)
        );
        // Harsher scrapers (uniform ±3 ms) must not fall off a cliff either.
        let harsh = realistic_mix(7, 10, 2 * 120, Jitter::Uniform(3));
        let (bytes, samples) = encoded_size(&harsh);
        assert!(
            bytes as f64 / samples as f64 <= 1.7,
            "harsh jitter:\n{}",
            size_report(&harsh)
        );
        for s in &mix {
            let c = encode(&s.samples.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>());
            let got = XorChunk::decode_all(c.bytes()).unwrap();
            assert!(got.iter().zip(&s.samples).all(|(a, b)| a.bit_eq(b)));
        }
    }
}
