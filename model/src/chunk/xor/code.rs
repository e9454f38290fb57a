//! The per-sample bit codes of the XOR chunk, encoder and decoder side by side
//! so they cannot drift apart. Layout and rationale: `docs/format/chunk.md`.
//!
//! Timestamp delta-of-delta (`dod`): `0` for 0; otherwise `k` one bits, a zero,
//! a sign bit and `DOD_BITS[k-1]` bits of `|dod| - DOD_OFFSET[k-1]`, so
//! |dod| 1..=2 costs 4 bits, 3..=4 costs 5, 5..=8 costs 7; ten ones introduce
//! a raw 64-bit dod. The short buckets are tuned for the few-millisecond
//! jitter of real scrapes, where most dods lie within ±8 ms.
//!
//! Value (XOR with the previous value):
//! - `0`: unchanged;
//! - `10` + `len` bits: the XOR fits the current window (`lead`, `len`);
//! - `110` + length class + bits: keep the window's trailing edge, new width
//!   (`0` + 3 bits for widths 1..=8, `1` + 6 bits for 1..=64);
//! - `111` + 6 bits leading zeros + 6 bits (width - 1) + bits: new window.
//!
//! The encoder picks whichever of these is shortest for the sample at hand.

use crate::chunk::bstream::{BitReader, BitWriter};
use crate::error::{ModelError, Result};

/// Magnitude bits of the non-zero delta-of-delta buckets.
pub(crate) const DOD_BITS: [u32; 9] = [1, 1, 2, 3, 5, 8, 14, 24, 36];
/// Smallest `|dod|` of each bucket of [`DOD_BITS`].
pub(crate) const DOD_OFFSET: [u64; 9] = dod_offsets();
/// Number of leading ones that announce a raw 64-bit delta-of-delta.
pub(crate) const DOD_RAW_ONES: u32 = DOD_BITS.len() as u32 + 1;

const fn dod_offsets() -> [u64; DOD_BITS.len()] {
    let mut out = [0u64; DOD_BITS.len()];
    let mut lo = 1u64;
    let mut i = 0;
    while i < DOD_BITS.len() {
        out[i] = lo;
        lo += 1 << DOD_BITS[i];
        i += 1;
    }
    out
}

/// Widths up to this use the short length class of the `110` value code.
const SHORT_LEN_MAX: u32 = 8;

/// What the encoder remembers between appends (and the decoder between samples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct XorState {
    /// Timestamp of the last sample.
    pub(crate) t: i64,
    /// Last timestamp delta (wrapping).
    pub(crate) delta: i64,
    /// Bits of the last value.
    pub(crate) v: u64,
    /// Leading zeros of the current XOR window.
    pub(crate) lead: u32,
    /// Width of the current XOR window; 0 = no window yet.
    pub(crate) len: u32,
}

/// Writes a timestamp delta-of-delta.
#[inline]
pub(crate) fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    let mag = dod.unsigned_abs();
    for (k, (&bits, &lo)) in DOD_BITS.iter().zip(DOD_OFFSET.iter()).enumerate() {
        // Buckets are contiguous from 1, so `mag >= lo` holds here.
        if mag < lo + (1u64 << bits) {
            let ones = k as u32 + 1;
            // `ones` one bits, a zero, the sign, then the magnitude.
            let prefix = (((1u64 << ones) - 1) << 2) | u64::from(dod < 0);
            w.write_bits((prefix << bits) | (mag - lo), ones + 2 + bits);
            return;
        }
    }
    w.write_bits((1u64 << DOD_RAW_ONES) - 1, DOD_RAW_ONES);
    w.write_bits(dod as u64, 64);
}

/// Reads a timestamp delta-of-delta.
#[inline(always)]
pub(crate) fn read_dod(r: &mut BitReader<'_>) -> Result<i64> {
    let ones = r.read_unary(DOD_RAW_ONES)?;
    if ones == 0 {
        return Ok(0);
    }
    if ones == DOD_RAW_ONES {
        return Ok(r.read_bits(64)? as i64);
    }
    let k = ones as usize - 1;
    let bits = DOD_BITS[k];
    let raw = r.read_bits(bits + 1)?;
    // At most about 2^36: far inside i64.
    let mag = ((raw & ((1u64 << bits) - 1)) + DOD_OFFSET[k]) as i64;
    Ok(if raw >> bits == 1 { -mag } else { mag })
}

/// Bits the `110` code spends on a width.
#[inline]
fn len_class_bits(len: u32) -> u32 {
    if len <= SHORT_LEN_MAX {
        4
    } else {
        7
    }
}

/// Writes `v` as the XOR with the previous value in `st`, updating `st`.
#[inline]
pub(crate) fn write_value(w: &mut BitWriter, st: &mut XorState, v: u64) {
    let xor = v ^ st.v;
    st.v = v;
    if xor == 0 {
        w.write_bit(false);
        return;
    }
    let lead = xor.leading_zeros();
    let trail = xor.trailing_zeros();
    let new_len = 64 - lead - trail;
    let new_cost = 15 + new_len;
    if st.len > 0 {
        let wtrail = 64 - st.lead - st.len;
        if trail >= wtrail {
            let keep_len = 64 - wtrail - lead;
            let keep_cost = 3 + len_class_bits(keep_len) + keep_len;
            let reuse_cost = 2 + st.len;
            if lead >= st.lead && reuse_cost <= keep_cost && reuse_cost <= new_cost {
                w.write_bits(0b10, 2);
                w.write_bits(xor >> wtrail, st.len);
                return;
            }
            if keep_cost <= new_cost {
                let head = if keep_len <= SHORT_LEN_MAX {
                    (0b1100 << 3) | u64::from(keep_len - 1)
                } else {
                    (0b1101 << 6) | u64::from(keep_len - 1)
                };
                w.write_bits(head, 3 + len_class_bits(keep_len));
                w.write_bits(xor >> wtrail, keep_len);
                st.lead = lead;
                st.len = keep_len;
                return;
            }
        }
    }
    let head = (0b111 << 12) | (u64::from(lead) << 6) | u64::from(new_len - 1);
    w.write_bits(head, 15);
    w.write_bits(xor >> trail, new_len);
    st.lead = lead;
    st.len = new_len;
}

/// Reads a value written by [`write_value`], updating `st`.
#[inline(always)]
pub(crate) fn read_value(r: &mut BitReader<'_>, st: &mut XorState) -> Result<()> {
    let ones = r.read_unary(3)?;
    if ones == 0 {
        return Ok(());
    }
    if ones < 3 && st.len == 0 {
        return Err(no_window_error());
    }
    match ones {
        1 => {}
        2 => {
            let wtrail = 64 - st.lead - st.len;
            let len = if r.read_bit()? {
                r.read_bits(6)?
            } else {
                r.read_bits(3)?
            } as u32
                + 1;
            if len + wtrail > 64 {
                return Err(keep_window_error(len, wtrail));
            }
            st.lead = 64 - wtrail - len;
            st.len = len;
        }
        _ => {
            let head = r.read_bits(12)? as u32;
            let (lead, len) = (head >> 6, (head & 0x3f) + 1);
            if lead + len > 64 {
                return Err(new_window_error(lead, len));
            }
            st.lead = lead;
            st.len = len;
        }
    }
    let bits = r.read_bits(st.len)?;
    st.v ^= bits << (64 - st.lead - st.len);
    Ok(())
}

/// A `10` or `110` value code before any `111` defined a window.
#[cold]
pub(crate) fn no_window_error() -> ModelError {
    ModelError::CorruptChunk("value reuses an XOR window before any was defined".to_string())
}

/// A `110` code whose new width does not fit above the kept trailing zeros.
#[cold]
pub(crate) fn keep_window_error(len: u32, wtrail: u32) -> ModelError {
    ModelError::CorruptChunk(format!(
        "XOR window of {len} bits above {wtrail} trailing zeros exceeds 64 bits"
    ))
}

/// A `111` code whose window does not fit in 64 bits.
#[cold]
pub(crate) fn new_window_error(lead: u32, len: u32) -> ModelError {
    ModelError::CorruptChunk(format!(
        "XOR window of {len} bits after {lead} leading zeros exceeds 64 bits"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    fn value_cost(prev: &mut XorState, v: u64) -> usize {
        let mut w = BitWriter::default();
        let before = *prev;
        write_value(&mut w, prev, v);
        let mut r = BitReader::new(w.bytes());
        let mut dec = before;
        read_value(&mut r, &mut dec).unwrap();
        assert_eq!(dec, *prev, "decoder state must track encoder state");
        r.bits_read()
    }

    #[test]
    fn value_codes_pick_the_cheapest_form() {
        let mut st = XorState {
            v: 1000f64.to_bits(),
            ..XorState::default()
        };
        assert_eq!(value_cost(&mut st, 1000f64.to_bits()), 1, "unchanged");
        let first = value_cost(&mut st, 1003f64.to_bits());
        assert_eq!(first, 15 + 2, "first change opens a window of 2 bits");
        assert_eq!(
            value_cost(&mut st, 1000f64.to_bits()),
            2 + 2,
            "same bits reuse the window"
        );
        // 1000 -> 1015 flips bits 0..=4 of the integer: same trailing edge, wider.
        assert_eq!(value_cost(&mut st, 1015f64.to_bits()), 3 + 4 + 5);
        assert_eq!(st.len, 5);
    }

    #[test]
    fn dod_bucket_edges_cost_what_the_table_says() {
        for (dod, bits) in [
            (0i64, 1usize),
            (1, 4),
            (-2, 4),
            (3, 5),
            (-4, 5),
            (5, 7),
            (8, 7),
            (9, 9),
            (-16, 9),
            (17, 12),
        ] {
            let mut w = BitWriter::default();
            write_dod(&mut w, dod);
            let mut r = BitReader::new(w.bytes());
            assert_eq!(read_dod(&mut r).unwrap(), dod);
            assert_eq!(r.bits_read(), bits, "dod {dod}");
        }
        for dod in [i64::MIN, i64::MAX, -(1 << 40), 1 << 40] {
            let mut w = BitWriter::default();
            write_dod(&mut w, dod);
            let mut r = BitReader::new(w.bytes());
            assert_eq!(read_dod(&mut r).unwrap(), dod);
        }
    }

    #[test]
    fn impossible_windows_are_errors() {
        // `111`, lead 63, width 2: 65 bits.
        let mut w = BitWriter::default();
        w.write_bits((0b111 << 12) | (63 << 6) | 1, 15);
        w.write_bits(0, 8);
        let mut st = XorState::default();
        assert!(read_value(&mut BitReader::new(w.bytes()), &mut st).is_err());
        // `10` with no window.
        assert!(read_value(&mut BitReader::new(&[0b1000_0000, 0]), &mut st).is_err());
        // `110` widening past bit 63.
        let mut st = XorState {
            lead: 0,
            len: 4,
            ..XorState::default()
        };
        let mut w = BitWriter::default();
        w.write_bits(0b11_0111_1111, 10); // `110`, long class, width 64
        w.write_bits(0, 64);
        assert!(read_value(&mut BitReader::new(w.bytes()), &mut st).is_err());
    }
}
