//! Small byte-level helpers shared by every persisted record: unsigned
//! varints, fixed-width integers and a bounds-checked reader. Layouts are
//! documented in `docs/format/rocksdb.md`.

use aion_model::labels::{Label, Labels};

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a varint length and the bytes.
pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Appends a label set: count, then (name, value) as length-prefixed bytes.
pub(crate) fn put_labels<'a>(
    buf: &mut Vec<u8>,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    put_uvarint(buf, labels.len() as u64);
    for (n, v) in labels {
        put_bytes(buf, n.as_bytes());
        put_bytes(buf, v.as_bytes());
    }
}

/// A bounds-checked cursor over a persisted record. Every getter fails with a
/// message naming what was being read instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads 8 bytes as a little-endian u64.
    pub(crate) fn u64_le(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads 8 bytes as a little-endian i64.
    pub(crate) fn i64_le(&mut self, what: &str) -> Result<i64, String> {
        Ok(self.u64_le(what)? as i64)
    }

    /// Reads an unsigned LEB128 varint (at most 10 bytes).
    pub(crate) fn uvarint(&mut self, what: &str) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(format!("varint too long in {what}"))
    }

    /// Reads a varint count, refusing counts that cannot fit in the bytes left
    /// (each element takes at least `min_size` bytes).
    pub(crate) fn count(&mut self, min_size: usize, what: &str) -> Result<usize, String> {
        let n = self.uvarint(what)?;
        if n.saturating_mul(min_size.max(1) as u64) > self.buf.len() as u64 {
            return Err(format!(
                "{what} count {n} exceeds the {} bytes left",
                self.buf.len()
            ));
        }
        Ok(n as usize)
    }

    /// Reads length-prefixed UTF-8.
    pub(crate) fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let n = self.count(1, what)?;
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|e| format!("{what} is not UTF-8: {e}"))
    }

    /// Reads a label set written by [`put_labels`], checking it is sorted,
    /// unique and has no empty values.
    pub(crate) fn labels(&mut self) -> Result<Labels, String> {
        let n = self.count(2, "label count")?;
        let mut out: Vec<Label> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str("label name")?;
            let value = self.str("label value")?;
            if value.is_empty() {
                return Err(format!("label {name:?} has an empty value"));
            }
            if let Some(prev) = out.last() {
                if prev.name.as_str() >= name {
                    return Err(format!(
                        "labels not sorted/unique: {:?} then {name:?}",
                        prev.name
                    ));
                }
            }
            out.push(Label::new(name, value));
        }
        Ok(Labels::from_sorted(out))
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self, what: &str) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes after {what}", self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_labels_round_trip() {
        let mut buf = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            put_uvarint(&mut buf, v);
        }
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\0b")]);
        put_labels(
            &mut buf,
            l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        let mut r = Reader::new(&buf);
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.uvarint("v").unwrap(), v);
        }
        assert_eq!(r.labels().unwrap(), l);
        r.finish("test").unwrap();
    }

    #[test]
    fn reader_reports_truncation_and_unsorted_labels() {
        let mut r = Reader::new(&[0x80]);
        assert!(r.uvarint("x").unwrap_err().contains("truncated x"));
        let mut buf = Vec::new();
        put_labels(&mut buf, [("b", "1"), ("a", "2")].into_iter());
        assert!(Reader::new(&buf)
            .labels()
            .unwrap_err()
            .contains("not sorted"));
        let mut r = Reader::new(&[0xff, 0xff, 0x03]);
        assert!(r.count(1, "series").unwrap_err().contains("exceeds"));
    }
}
