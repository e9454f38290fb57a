//! Decoding side of the XOR chunk: a borrowing, allocation-free iterator.

use super::code::{read_dod, read_value, XorState};
use super::fast::{Cursor, RangeDecode};
use super::{parse_header, unzigzag};
use crate::chunk::bstream::BitReader;
use crate::error::{ModelError, Result};
use crate::sample::Sample;
use std::cell::RefCell;
use std::iter::FusedIterator;

/// Iterator over a chunk's samples.
///
/// Yields `Err(ModelError::CorruptChunk)` once when the bytes are truncated or
/// malformed, then ends. It never panics and always terminates: every sample
/// consumes at least two bits of input and the header bounds the count.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u32,
    idx: u32,
    st: XorState,
    /// A header error not yet reported.
    pending: Option<ModelError>,
    done: bool,
}

impl<'a> XorIter<'a> {
    /// Iterates an encoded chunk without copying it. A bad header is reported
    /// as the first item.
    pub fn new(bytes: &'a [u8]) -> Self {
        let (r, total, pending) = match parse_header(bytes) {
            Ok((count, header_len)) => (BitReader::new(&bytes[header_len..]), count, None),
            Err(e) => (BitReader::new(&[]), 0, Some(e)),
        };
        Self {
            r,
            total,
            idx: 0,
            st: XorState::default(),
            pending,
            done: false,
        }
    }

    /// Decodes the remaining samples with `start <= t <= end` into `out`,
    /// stopping at the first sample after `end`. Same samples and errors as
    /// iterating, in one tight loop (the query read path's hot spot).
    pub fn decode_range_into(self, start: i64, end: i64, out: &mut Vec<Sample>) -> Result<()> {
        match self.into_cursor(start, end, out)? {
            Some(c) => c.run(),
            None => Ok(()),
        }
    }

    /// Decodes the first two samples (they have codes of their own) and
    /// hands the rest to the fast loop; `None` when nothing is left to do.
    fn into_cursor<'o>(mut self, start: i64, end: i64, out: &'o mut Vec<Sample>) -> Result<Option<Cursor<'a, 'o>>> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        while self.idx < self.total.min(2) {
            let s = self.decode_next()?;
            self.idx += 1;
            if s.t > end {
                return Ok(None);
            }
            if s.t >= start {
                out.push(s);
            }
        }
        let Self { r, st, idx, total, .. } = self;
        // A forged count must not make us allocate: each sample takes >= 2 bits.
        out.reserve(((total - idx) as usize).min(r.bits_left() / 2));
        let (body, pos) = r.position();
        let dec = RangeDecode {
            st,
            left: total - idx,
            start,
            end,
            out,
        };
        Ok(Some(Cursor { dec, body, pos }))
    }

    /// Samples the header says are still to come (an upper bound if the body is corrupt).
    pub fn remaining(&self) -> usize {
        if self.done {
            0
        } else {
            (self.total - self.idx) as usize
        }
    }

    /// After all samples were read: the decoder state (for appending) and how
    /// many bits of the last byte are data. Fails on trailing garbage.
    pub(crate) fn finish_state(&self) -> Result<(XorState, u32)> {
        if self.idx != self.total || self.done {
            return Err(ModelError::CorruptChunk(format!(
                "decoded {} of {} samples",
                self.idx, self.total
            )));
        }
        let left = self.r.bits_left();
        if left >= 8 {
            return Err(ModelError::CorruptChunk(format!(
                "{} trailing bytes after the last of {} samples",
                left / 8,
                self.total
            )));
        }
        let mut rest = self.r.clone();
        let padding = rest.read_bits(left as u32)?;
        if padding != 0 {
            return Err(ModelError::CorruptChunk(format!(
                "non-zero padding bits {padding:#b} after the last sample"
            )));
        }
        Ok((self.st, 8 - left as u32))
    }

    #[inline]
    fn decode_next(&mut self) -> Result<Sample> {
        let st = &mut self.st;
        let r = &mut self.r;
        match self.idx {
            0 => {
                st.t = unzigzag(r.read_uvarint()?);
                st.v = r.read_bits(64)?;
                // Literals, not `Sample::new`: this inlines into other crates.
                return Ok(Sample {
                    t: st.t,
                    v: f64::from_bits(st.v),
                });
            }
            1 => st.delta = r.read_uvarint()? as i64,
            _ => st.delta = st.delta.wrapping_add(read_dod(r)?),
        }
        st.t = st.t.wrapping_add(st.delta);
        read_value(r, st)?;
        Ok(Sample {
            t: st.t,
            v: f64::from_bits(st.v),
        })
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<Sample>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.done || self.idx >= self.total {
            return None;
        }
        match self.decode_next() {
            Ok(s) => {
                self.idx += 1;
                Some(Ok(s))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pending = usize::from(self.pending.is_some());
        (0, Some(self.remaining().max(pending)))
    }
}

impl FusedIterator for XorIter<'_> {}

/// Decodes the samples with `start <= t <= end` of `chunks`, in order, into
/// `out`: the same as [`XorIter::decode_range_into`] on each in turn, but
/// two chunks at a time, so that one chunk's decode runs while the other
/// waits on its loads (each alone is a chain of dependent steps).
///
/// On a corrupt chunk: its index and error; `out` then holds the samples of
/// the chunks before it and those of it before the damage.
pub fn decode_chunks_range_into<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> std::result::Result<(), (usize, ModelError)> {
    thread_local! {
        /// The second chunk's samples of a pair, kept between calls.
        static SCRATCH: RefCell<Vec<Sample>> = const { RefCell::new(Vec::new()) };
    }
    /// Largest scratch buffer kept for the next call, in samples (a chunk
    /// holds 120 by default; an unusually long one is not held on to).
    const KEEP_SAMPLES: usize = 64 * 1024;
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let r = decode_pairs(chunks, start, end, out, &mut scratch);
            if scratch.capacity() > KEEP_SAMPLES {
                *scratch = Vec::new();
            }
            r
        }
        // Only a re-entrant call (none today) finds it taken.
        Err(_) => decode_pairs(chunks, start, end, out, &mut Vec::new()),
    })
}

/// [`decode_chunks_range_into`] with an explicit buffer for second chunks.
fn decode_pairs<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
    scratch: &mut Vec<Sample>,
) -> std::result::Result<(), (usize, ModelError)> {
    let mut chunks = chunks.into_iter().enumerate();
    while let Some((i, first)) = chunks.next() {
        let Some((j, second)) = chunks.next() else {
            return XorIter::new(first).decode_range_into(start, end, out).map_err(|e| (i, e));
        };
        scratch.clear();
        let a = XorIter::new(first).into_cursor(start, end, out).map_err(|e| (i, e))?;
        let b = XorIter::new(second).into_cursor(start, end, scratch);
        let (ra, rb) = match (a, b) {
            (Some(a), Ok(Some(b))) => Cursor::run_pair(a, b),
            (a, b) => (a.map_or(Ok(()), Cursor::run), b.and_then(|b| b.map_or(Ok(()), Cursor::run))),
        };
        ra.map_err(|e| (i, e))?;
        out.extend_from_slice(scratch);
        rb.map_err(|e| (j, e))?;
    }
    Ok(())
}
