//! Big-endian bit streams for the chunk codecs.
//!
//! [`BitWriter`] appends bits most-significant first into a `Vec<u8>` that is
//! always a complete, readable byte string: the last byte holds the newest bits
//! in its high positions and zero padding below them. [`BitReader`] reads the
//! same order back from a borrowed slice and reports running out of input as an
//! error instead of panicking, so it is safe on arbitrary bytes.

use crate::error::{ModelError, Result};

/// Appends bits to an owned byte buffer, most significant bit first.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits of the last byte of `buf` (0..=7).
    free: u32,
}

impl BitWriter {
    /// A writer that continues after the bytes already in `buf`.
    ///
    /// `used_bits_in_last` is how many high bits of the last byte are data
    /// (1..=8; ignored when `buf` is empty); the remaining low bits are cleared.
    pub fn from_vec(mut buf: Vec<u8>, used_bits_in_last: u32) -> Self {
        let free = match buf.last_mut() {
            Some(last) if (1..8).contains(&used_bits_in_last) => {
                let free = 8 - used_bits_in_last;
                *last &= 0xffu8 << free;
                free
            }
            _ => 0,
        };
        Self { buf, free }
    }

    /// The bytes written so far (the last byte zero-padded).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access to already written whole bytes (used to patch headers).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Gives the buffer back.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// Inserts whole bytes at `at`, which must lie before any partially
    /// written byte (used to widen a header).
    pub fn insert_bytes(&mut self, at: usize, bytes: &[u8]) {
        self.buf.splice(at..at, bytes.iter().copied());
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            let last = self.buf.len() - 1;
            self.buf[last] |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `v` (`n` in 0..=64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        let mut n = n;
        if self.free > 0 && n > 0 {
            let take = self.free.min(n);
            let chunk = (v >> (n - take)) & ((1u64 << take) - 1);
            let last = self.buf.len() - 1;
            self.buf[last] |= (chunk as u8) << (self.free - take);
            self.free -= take;
            n -= take;
        }
        if n > 0 {
            // Left-align the remaining `n` bits and append the bytes they touch.
            let aligned = v << (64 - n);
            let nbytes = n.div_ceil(8);
            self.buf
                .extend_from_slice(&aligned.to_be_bytes()[..nbytes as usize]);
            self.free = nbytes * 8 - n;
        }
    }

    /// Writes `v` as an unsigned LEB128-style varint (7 bits per group, low
    /// group first, high bit of each 8-bit group set when more follow).
    pub fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_bits((v & 0x7f) | 0x80, 8);
            v >>= 7;
        }
        self.write_bits(v, 8);
    }
}

/// Reads bits from a borrowed slice, most significant bit first.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    /// Next byte of `buf` not yet loaded into `acc`.
    pos: usize,
    /// Loaded bits, left-aligned; bits below `avail` are zero.
    acc: u64,
    /// Number of valid bits in `acc`.
    avail: u32,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Number of bits consumed so far.
    pub fn bits_read(&self) -> usize {
        self.pos * 8 - self.avail as usize
    }

    /// The whole input and the bit position of the next read in it.
    pub fn position(&self) -> (&'a [u8], usize) {
        (self.buf, self.bits_read())
    }

    /// Number of bits not yet consumed.
    pub fn bits_left(&self) -> usize {
        (self.buf.len() - self.pos) * 8 + self.avail as usize
    }

    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.buf.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let take = (64 - self.avail) / 8;
            if take == 0 {
                return;
            }
            let bits = take * 8;
            // `bits` is 8..=64: shift in two steps so 64 never overflows.
            let fresh = (u64::from_be_bytes(w) >> (64 - bits)) << (64 - bits);
            self.acc |= fresh >> self.avail;
            self.avail += bits;
            self.pos += take as usize;
        } else {
            (self.pos, self.acc, self.avail) = refill_tail(self.buf, self.pos, self.acc, self.avail);
        }
    }

    // The cold paths take the reader's fields by value, never `&self`: a
    // reader whose address never escapes stays in registers in the
    // decoders' loops (its fields are otherwise reloaded at every read).
    #[inline]
    fn eof(&self, wanted: u32) -> ModelError {
        eof_error(self.bits_read(), self.buf.len(), wanted)
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Result<bool> {
        if self.avail == 0 {
            self.refill();
            if self.avail == 0 {
                return Err(self.eof(1));
            }
        }
        let bit = self.acc >> 63 == 1;
        self.acc <<= 1;
        self.avail -= 1;
        Ok(bit)
    }

    /// Counts leading one bits, consuming them and the terminating zero, up to
    /// `max` ones (then no zero is consumed). Used for unary prefix codes.
    #[inline]
    pub fn read_unary(&mut self, max: u32) -> Result<u32> {
        debug_assert!(max < 32);
        if self.avail <= max {
            self.refill();
        }
        if self.avail > max {
            let ones = (!self.acc).leading_zeros().min(max);
            let used = if ones == max { ones } else { ones + 1 };
            self.acc <<= used;
            self.avail -= used;
            return Ok(ones);
        }
        let mut ones = 0;
        while ones < max && self.read_bit()? {
            ones += 1;
        }
        Ok(ones)
    }

    /// Reads `n` bits (`n` in 0..=64) as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64> {
        if n > 56 {
            return self.read_bits_wide(n);
        }
        self.read_bits_short(n)
    }

    /// [`Self::read_bits`] for `n` in 57..=64: two reads (the accumulator
    /// holds at least 57 bits after a refill).
    #[inline]
    fn read_bits_wide(&mut self, n: u32) -> Result<u64> {
        let hi = self.read_bits_short(n - 32)?;
        let lo = self.read_bits_short(32)?;
        Ok((hi << 32) | lo)
    }

    /// [`Self::read_bits`] for `n` in 0..=56.
    #[inline(always)]
    fn read_bits_short(&mut self, n: u32) -> Result<u64> {
        debug_assert!(n <= 56);
        if n == 0 {
            return Ok(0);
        }
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(self.eof(n));
            }
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.avail -= n;
        Ok(v)
    }

    /// Reads a varint written by [`BitWriter::write_uvarint`].
    #[inline]
    pub fn read_uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let group = self.read_bits(8)?;
            let payload = group & 0x7f;
            if i == 9 && payload > 1 {
                return Err(ModelError::CorruptChunk(format!(
                    "varint overflows 64 bits (last group {group:#04x})"
                )));
            }
            v |= payload << (7 * i);
            if group & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ModelError::CorruptChunk(
            "varint longer than 10 groups".to_string(),
        ))
    }
}

/// [`BitReader::refill`] within the last 8 bytes of `buf`, byte by byte:
/// the new `(pos, acc, avail)`.
#[cold]
#[inline(never)]
fn refill_tail(buf: &[u8], mut pos: usize, mut acc: u64, mut avail: u32) -> (usize, u64, u32) {
    while avail <= 56 {
        let Some(&b) = buf.get(pos) else {
            break;
        };
        acc |= u64::from(b) << (56 - avail);
        avail += 8;
        pos += 1;
    }
    (pos, acc, avail)
}

/// The error of a read of `wanted` bits at bit `at` of a `len`-byte buffer that ends first.
#[cold]
#[inline(never)]
fn eof_error(at: usize, len: usize, wanted: u32) -> ModelError {
    ModelError::CorruptChunk(format!(
        "unexpected end of data: wanted {wanted} more bits at bit {at} of {}",
        len * 8
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_across_byte_boundaries() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> = vec![
            (1, 1),
            (0b101, 3),
            (0x3ff, 10),
            (u64::MAX, 64),
            (0, 7),
            (0xdead_beef, 32),
            (5, 57),
            (1, 1),
        ];
        for &(v, n) in &items {
            w.write_bits(v, n);
        }
        let total: u32 = items.iter().map(|&(_, n)| n).sum();
        assert_eq!(w.bytes().len(), total.div_ceil(8) as usize);
        let mut r = BitReader::new(w.bytes());
        for &(v, n) in &items {
            let mask = if n == 64 { u64::MAX } else { (1 << n) - 1 };
            assert_eq!(r.read_bits(n).unwrap(), v & mask, "reading {n} bits");
        }
        assert_eq!(r.bits_read(), total as usize);
    }

    #[test]
    fn single_bits_and_unary() {
        let mut w = BitWriter::default();
        for ones in [0u32, 1, 3, 8] {
            for _ in 0..ones {
                w.write_bit(true);
            }
            if ones < 8 {
                w.write_bit(false);
            }
        }
        let mut r = BitReader::new(w.bytes());
        for ones in [0u32, 1, 3, 8] {
            assert_eq!(r.read_unary(8).unwrap(), ones);
        }
    }

    #[test]
    fn varints_round_trip() {
        let mut w = BitWriter::default();
        w.write_bit(true); // misalign on purpose
        let vals = [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX];
        for &v in &vals {
            w.write_uvarint(v);
        }
        let mut r = BitReader::new(w.bytes());
        assert!(r.read_bit().unwrap());
        for &v in &vals {
            assert_eq!(r.read_uvarint().unwrap(), v);
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let bytes = [0xffu8; 11];
        assert!(matches!(
            BitReader::new(&bytes).read_uvarint(),
            Err(ModelError::CorruptChunk(_))
        ));
        let mut bytes = [0x80u8; 10];
        bytes[9] = 0x02;
        assert!(BitReader::new(&bytes).read_uvarint().is_err());
    }

    #[test]
    fn reading_past_the_end_is_an_error_not_a_panic() {
        let mut r = BitReader::new(&[0xab]);
        assert_eq!(r.read_bits(4).unwrap(), 0xa);
        assert!(r.read_bits(5).is_err());
        assert!(BitReader::new(&[]).read_bit().is_err());
        assert!(BitReader::new(&[0xff]).read_unary(8).is_ok());
        assert!(BitReader::new(&[0xff]).read_unary(9).is_err());
    }

    #[test]
    fn from_vec_continues_after_partial_byte() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        let mut bytes = w.into_vec();
        bytes[0] |= 0b0001_1111; // garbage in the padding must be cleared
        let mut w = BitWriter::from_vec(bytes, 3);
        w.write_bits(0b11, 2);
        assert_eq!(w.bytes(), &[0b1011_1000]);
    }
}
