//! The range decode's inner loop, reading wide windows at a bit position.
//!
//! [`crate::chunk::bstream::BitReader`] checks and refills its accumulator on
//! every read. Here a sample usually costs one unaligned 128-bit big-endian
//! load at its first bit (both codes fit in it), and the common codes (a small delta-of-delta, an unchanged
//! value, a value inside the current window) are decoded without branching on
//! the data: the jitter of real scrapes makes those branches unpredictable.
//!
//! Loads never leave the slice. The main loop stops [`GUARD`] bytes before its
//! end; the rest is decoded from a zero-padded copy, where a sample that ends
//! past the real data is reported as truncation, exactly as the iterator does.

use super::code::{
    keep_window_error, new_window_error, no_window_error, XorState, DOD_BITS, DOD_OFFSET,
    DOD_RAW_ONES,
};
use crate::error::{ModelError, Result};
use crate::sample::Sample;

/// Bytes a sample may read beyond the byte it starts in: the longest sample
/// reads at most 26 (a raw 74-bit delta-of-delta, then a 16-byte load for
/// the value; a 79-bit new window ends sooner), and a few spare.
const GUARD: usize = 32;

/// Per number of leading ones of a delta-of-delta code (0..=9): bits of sign
/// and magnitude after the terminating zero.
const DOD_PAYLOAD: [u32; 10] = dod_table(DodField::Payload);
/// Per number of leading ones: magnitude bits.
const DOD_MAG_BITS: [u32; 10] = dod_table(DodField::MagBits);
/// Per number of leading ones: bits the whole code takes.
const DOD_USED: [u32; 10] = dod_table(DodField::Used);
/// Per number of leading ones: smallest magnitude of the bucket.
const DOD_MAG_OFFSET: [u64; 10] = dod_offsets();

/// Which per-bucket number [`dod_table`] lists.
#[derive(Clone, Copy)]
enum DodField {
    Payload,
    MagBits,
    Used,
}

const fn dod_table(what: DodField) -> [u32; 10] {
    let mut out = [0u32; 10];
    let mut ones = 0;
    while ones < 10 {
        let mag = if ones == 0 { 0 } else { DOD_BITS[ones - 1] };
        let payload = if ones == 0 { 0 } else { mag + 1 };
        out[ones] = match what {
            DodField::Payload => payload,
            DodField::MagBits => mag,
            // A zero delta of delta is the single bit `0`.
            DodField::Used if ones == 0 => 1,
            DodField::Used => ones as u32 + 1 + payload,
        };
        ones += 1;
    }
    out
}

const fn dod_offsets() -> [u64; 10] {
    let mut out = [0u64; 10];
    let mut ones = 1;
    while ones < 10 {
        out[ones] = DOD_OFFSET[ones - 1];
        ones += 1;
    }
    out
}

/// The 64 bits from bit `pos` of `buf` (at least 57 of them real), or 0
/// where the load would leave `buf` (the callers' guards rule that out).
#[inline(always)]
fn peek(buf: &[u8], pos: usize) -> u64 {
    let i = pos >> 3;
    let word: Option<[u8; 8]> = buf.get(i..i + 8).and_then(|b| b.try_into().ok());
    word.map_or(0, u64::from_be_bytes) << (pos & 7)
}

/// Reads `n` bits (1..=64) at `*pos`.
#[inline(always)]
fn take(buf: &[u8], pos: &mut usize, n: u32) -> u64 {
    if n <= 56 {
        let v = peek(buf, *pos) >> (64 - n);
        *pos += n as usize;
        return v;
    }
    let hi = peek(buf, *pos) >> (64 - (n - 32));
    *pos += (n - 32) as usize;
    let lo = peek(buf, *pos) >> 32;
    *pos += 32;
    (hi << 32) | lo
}

/// The 128 bits from bit `pos` of `buf` (at least 121 of them real), or 0
/// where the load would leave `buf`.
#[inline(always)]
fn peek128(buf: &[u8], pos: usize) -> u128 {
    let i = pos >> 3;
    let word: Option<[u8; 16]> = buf.get(i..i + 16).and_then(|b| b.try_into().ok());
    word.map_or(0, u128::from_be_bytes) << (pos & 7)
}

/// Decodes one sample's delta-of-delta and value at `*pos`, updating `st`.
///
/// Both codes usually come out of one 128-bit load: the value's load would
/// otherwise wait for the delta-of-delta's length.
#[inline(always)]
fn sample(buf: &[u8], pos: &mut usize, st: &mut XorState) -> Result<()> {
    // The most common sample, a regular scrape: a zero delta-of-delta, then
    // a value whose window (at most 54 bits) fits the 56 real bits left of
    // one 64-bit load.
    let w = peek(buf, *pos);
    if w >> 63 == 0 && st.len <= 54 {
        st.t = st.t.wrapping_add(st.delta);
        *pos += 1;
        return value(w << 1, buf, pos, st);
    }
    let x = peek128(buf, *pos);
    let w = (x >> 64) as u64;
    if w >> 63 == 0 {
        st.t = st.t.wrapping_add(st.delta);
        *pos += 1;
        return value(((x << 1) >> 64) as u64, buf, pos, st);
    }
    let ones = (!w).leading_zeros();
    if ones >= DOD_RAW_ONES {
        *pos += DOD_RAW_ONES as usize;
        st.delta = st.delta.wrapping_add(take(buf, pos, 64) as i64);
        st.t = st.t.wrapping_add(st.delta);
        return value((peek128(buf, *pos) >> 64) as u64, buf, pos, st);
    }
    let k = ones as usize;
    // Sign and magnitude right after the zero; nothing at all for ones == 0.
    let raw = ((w << (ones + 1)) >> 1) >> (63 - DOD_PAYLOAD[k]);
    let bits = DOD_MAG_BITS[k];
    let mag = (raw & ((1u64 << bits) - 1)) + DOD_MAG_OFFSET[k];
    let neg = (raw >> bits) & 1;
    let dod = ((mag ^ neg.wrapping_neg()).wrapping_add(neg)) as i64;
    st.delta = st.delta.wrapping_add(dod);
    st.t = st.t.wrapping_add(st.delta);
    // At most 45 bits used of at least 121: the next 64 are all real.
    let used = DOD_USED[k];
    *pos += used as usize;
    value(((x << used) >> 64) as u64, buf, pos, st)
}

/// Decodes one value code at `*pos` into `st`. `w` holds the bits from
/// `*pos` on, real for at least `2 + min(st.len, 62)` of them (a `10`
/// code's payload is taken from it; longer codes load again).
#[inline(always)]
fn value(w: u64, buf: &[u8], pos: &mut usize, st: &mut XorState) -> Result<()> {
    if w >> 62 != 0b11 {
        // `0` (unchanged) or `10` + the current window's bits.
        let change = w >> 63;
        let len = st.len;
        // No window yet, or one too wide for `w` (`len - 1` wraps for 0).
        if (change == 1) & (len.wrapping_sub(1) > 61) {
            if len == 0 {
                return Err(no_window_error());
            }
            *pos += 2;
            st.v ^= take(buf, pos, len) << (64 - st.lead - len);
            return Ok(());
        }
        // Unchanged values compute bits too and mask them out; `min` keeps
        // the shifts in range for those (their window may be wider).
        let l = len.min(62);
        let bits = ((w << 2) >> 1) >> (63 - l);
        let mask = change.wrapping_neg();
        st.v ^= bits.wrapping_shl(64 - st.lead - l) & mask;
        *pos += (1 + ((1 + u64::from(len)) & mask)) as usize;
        return Ok(());
    }
    if (w >> 61) & 1 == 0 {
        // `110`: keep the trailing edge, new width.
        if st.len == 0 {
            return Err(no_window_error());
        }
        let wtrail = 64 - st.lead - st.len;
        let (len, used) = if (w >> 60) & 1 == 1 {
            (((w << 4) >> 58) as u32 + 1, 10)
        } else {
            (((w << 4) >> 61) as u32 + 1, 7)
        };
        if len + wtrail > 64 {
            return Err(keep_window_error(len, wtrail));
        }
        st.lead = 64 - wtrail - len;
        st.len = len;
        *pos += used;
    } else {
        // `111`: a new window.
        let head = ((w << 3) >> 52) as u32;
        let (lead, len) = (head >> 6, (head & 0x3f) + 1);
        if lead + len > 64 {
            return Err(new_window_error(lead, len));
        }
        st.lead = lead;
        st.len = len;
        *pos += 15;
    }
    st.v ^= take(buf, pos, st.len) << (64 - st.lead - st.len);
    Ok(())
}

/// Where a run of samples stopped.
enum Stop {
    /// All samples decoded, or one after the range's end reached.
    Done,
    /// The guard was reached; samples remain.
    Guard,
}

/// The samples still to decode and the range they are filtered to.
pub(super) struct RangeDecode<'o> {
    /// Decoder state after the last decoded sample.
    pub(super) st: XorState,
    /// Samples left.
    pub(super) left: u32,
    /// First timestamp kept.
    pub(super) start: i64,
    /// Last timestamp wanted.
    pub(super) end: i64,
    /// Where kept samples go.
    pub(super) out: &'o mut Vec<Sample>,
}

/// A range decode under way: what is left, over which bytes, from which bit.
pub(super) struct Cursor<'b, 'o> {
    /// State, samples left, range and output.
    pub(super) dec: RangeDecode<'o>,
    /// The chunk's body.
    pub(super) body: &'b [u8],
    /// Bit position of the next sample in `body`.
    pub(super) pos: usize,
}

impl Cursor<'_, '_> {
    /// Decodes the remaining samples.
    pub(super) fn run(self) -> Result<()> {
        let Cursor { mut dec, body, mut pos } = self;
        if let Stop::Done = dec.span(body, &mut pos, body.len(), usize::MAX)? {
            return Ok(());
        }
        // Fewer than GUARD bytes left: continue in a zero-padded copy.
        let tail = body.get(pos >> 3..).unwrap_or_default();
        let mut padded = [0u8; 2 * GUARD + 8];
        let Some(dst) = padded.get_mut(..tail.len()) else {
            return Err(truncated(tail.len() * 8)); // unreachable: the guard stopped the loop
        };
        dst.copy_from_slice(tail);
        let mut pos = pos & 7;
        dec.span(&padded, &mut pos, usize::MAX, tail.len() * 8)?;
        Ok(())
    }

    /// Decodes two chunks' remaining samples, alternating one sample of
    /// each while both are well inside their bytes: two independent chains
    /// of dependent loads and shifts overlap in the CPU. Each then finishes
    /// alone. The results are each chunk's own.
    pub(super) fn run_pair(mut a: Self, mut b: Self) -> (Result<()>, Result<()>) {
        let (mut ra, mut rb) = (None, None);
        while ra.is_none() && rb.is_none() && a.clear_of_end() && b.clear_of_end() {
            ra = a.step().transpose();
            rb = b.step().transpose();
        }
        let ra = ra.unwrap_or_else(|| a.run());
        let rb = rb.unwrap_or_else(|| b.run());
        (ra, rb)
    }

    /// True while a whole sample can be read without nearing the body's end.
    #[inline(always)]
    fn clear_of_end(&self) -> bool {
        self.dec.left > 0 && (self.pos >> 3) + GUARD <= self.body.len()
    }

    /// Decodes one sample (the body must be [`Self::clear_of_end`]):
    /// `None` while more are wanted, `Some(())` once done.
    #[inline(always)]
    fn step(&mut self) -> Result<Option<()>> {
        sample(self.body, &mut self.pos, &mut self.dec.st)?;
        Ok((!self.dec.keep()).then_some(()))
    }
}

impl RangeDecode<'_> {
    /// Counts the sample just decoded and keeps it when it is in the range;
    /// false once no more are wanted (it was after the range, or the last).
    #[inline(always)]
    fn keep(&mut self) -> bool {
        self.left -= 1;
        let st = &self.st;
        if st.t > self.end {
            self.left = 0;
            return false;
        }
        if st.t >= self.start {
            self.out.push(Sample {
                t: st.t,
                v: f64::from_bits(st.v),
            });
        }
        self.left > 0
    }

    /// Decodes while samples remain and each starts at least [`GUARD`] bytes
    /// before `guard_end`; a sample that ends past bit `real_bits` is an error.
    #[inline(always)]
    fn span(&mut self, buf: &[u8], pos: &mut usize, guard_end: usize, real_bits: usize) -> Result<Stop> {
        while self.left > 0 {
            if (*pos >> 3).saturating_add(GUARD) > guard_end {
                return Ok(Stop::Guard);
            }
            sample(buf, pos, &mut self.st)?;
            if *pos > real_bits {
                return Err(truncated(real_bits));
            }
            if !self.keep() {
                break;
            }
        }
        Ok(Stop::Done)
    }
}

/// The error of a sample that runs past the last of a chunk's bytes.
#[cold]
#[inline(never)]
fn truncated(real_bits: usize) -> ModelError {
    ModelError::CorruptChunk(format!(
        "unexpected end of data: a sample runs past the last {real_bits} bits"
    ))
}

