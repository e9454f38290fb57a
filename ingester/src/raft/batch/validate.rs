//! The checks a [`super::ShardWrite`]'s bytes pass before anything walks
//! them: a tight, allocation-free pass (single-byte varints on the fast
//! path, one ASCII/UTF-8 check per series' whole label section).
//!
//! Levels: [`Check::Framing`] (a valid tenant; counts, lengths and sample
//! sizes add up, no trailing bytes: walking cannot go out of bounds) for bytes this node
//! wrote to its own log after a full check; [`Check::Full`] adds UTF-8,
//! labels sorted and unique, a valid tenant (bytes from the wire or from
//! serde); [`Check::Client`] also refuses empty label names and values
//! (bytes from a Push).

use crate::raft::codec::CodecError;
use aion_model::tenant::TenantId;

/// How much of an encoded batch to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Structure and tenant only.
    Framing,
    /// Structure, UTF-8, label order, tenant.
    Full,
    /// [`Check::Full`] plus no empty label names or values.
    Client,
}

/// Counts found by [`validate`].
#[derive(Debug)]
pub(super) struct Counts {
    pub series: usize,
    pub samples: u64,
}

/// Bounds-checked cursor; `None` means truncated or malformed.
pub(super) struct Cur<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cur<'a> {
    /// An unsigned LEB128 varint (one byte on the fast path).
    #[inline(always)]
    pub(super) fn uvarint(&mut self) -> Option<u64> {
        let &first = self.b.get(self.pos)?;
        self.pos += 1;
        if first < 0x80 {
            return Some(u64::from(first));
        }
        let mut v = u64::from(first & 0x7f);
        for i in 1..10 {
            let &byte = self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// The next `n` bytes.
    #[inline(always)]
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A count of elements of at least `min` bytes each that fit in what is left.
    #[inline(always)]
    fn count(&mut self, min: u64) -> Option<usize> {
        let n = self.uvarint()?;
        let left = (self.b.len() - self.pos) as u64;
        (n.saturating_mul(min) <= left).then_some(n as usize)
    }
}

fn malformed(at: usize, what: &str) -> CodecError {
    CodecError(format!("malformed write batch at byte {at}: {what}"))
}

/// Checks `b` at level `check`; returns its series and sample counts. With
/// `refs`, `b` is the series-by-ref form: each series starts with a
/// `uvarint` ref, `0` meaning its labels follow.
pub(super) fn validate(b: &[u8], check: Check, refs: bool) -> Result<Counts, CodecError> {
    let mut c = Cur { b, pos: 0 };
    let tn = c.uvarint().ok_or_else(|| malformed(0, "tenant length"))? as usize;
    let tenant = c.take(tn).ok_or_else(|| malformed(c.pos, "truncated tenant"))?;
    // The tenant is checked at every level (once per batch; callers rely on it).
    let t = std::str::from_utf8(tenant).map_err(|e| CodecError(format!("tenant is not UTF-8: {e}")))?;
    TenantId::new(t).map_err(|e| CodecError(format!("tenant {t:?}: {e}")))?;
    let n = c.count(2).ok_or_else(|| malformed(c.pos, "series count"))?;
    let mut samples = 0u64;
    for _ in 0..n {
        let named = refs && c.uvarint().ok_or_else(|| malformed(c.pos, "series ref"))? != 0;
        if !named {
            series(&mut c, check)?;
        }
        let ns = c.count(9).ok_or_else(|| malformed(c.pos, "sample count"))?;
        for _ in 0..ns {
            c.uvarint().ok_or_else(|| malformed(c.pos, "timestamp delta"))?;
            c.take(8).ok_or_else(|| malformed(c.pos, "truncated sample value"))?;
        }
        samples += ns as u64;
    }
    if c.pos != b.len() {
        return Err(CodecError(format!("{} trailing bytes after write batch", b.len() - c.pos)));
    }
    Ok(Counts { series: n, samples })
}

/// Checks one series' whole label section (packed form) at level `check`.
pub(super) fn check_labels(section: &[u8], check: Check) -> Result<(), CodecError> {
    let mut c = Cur { b: section, pos: 0 };
    series(&mut c, check)?;
    if c.pos != section.len() {
        return Err(malformed(c.pos, "bytes after the labels"));
    }
    Ok(())
}

/// Checks one series' label section.
#[inline]
fn series(c: &mut Cur<'_>, check: Check) -> Result<(), CodecError> {
    let start = c.pos;
    let nl = c.count(2).ok_or_else(|| malformed(c.pos, "label count"))?;
    let mut prev: Option<&[u8]> = None;
    for _ in 0..nl {
        let n = c.uvarint().ok_or_else(|| malformed(c.pos, "label name length"))? as usize;
        let name = c.take(n).ok_or_else(|| malformed(c.pos, "truncated label name"))?;
        let v = c.uvarint().ok_or_else(|| malformed(c.pos, "label value length"))? as usize;
        let value = c.take(v).ok_or_else(|| malformed(c.pos, "truncated label value"))?;
        if check == Check::Framing {
            continue;
        }
        if prev.is_some_and(|p| p >= name) {
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            return Err(CodecError(format!(
                "labels not sorted/unique: {:?} then {:?}",
                prev.map(show),
                show(name)
            )));
        }
        if check == Check::Client && (name.is_empty() || value.is_empty()) {
            return Err(CodecError(format!(
                "empty label name or value: {:?}={:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )));
        }
        prev = Some(name);
    }
    if check != Check::Framing {
        labels_utf8(&c.b[start..c.pos])?;
    }
    Ok(())
}

/// UTF-8 check of a label section. All-ASCII (the common case, lengths
/// included) passes in one pass; otherwise each string is checked.
fn labels_utf8(section: &[u8]) -> Result<(), CodecError> {
    if section.is_ascii() {
        return Ok(());
    }
    let mut c = Cur { b: section, pos: 0 };
    let nl = c.uvarint().unwrap_or(0);
    for _ in 0..2 * nl {
        let n = c.uvarint().unwrap_or(0) as usize;
        let s = c.take(n).unwrap_or_default();
        std::str::from_utf8(s).map_err(|e| CodecError(format!("label is not UTF-8: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::codec::{put_str, put_uvarint};

    fn one_series(name: &[u8], value: &[u8], samples: usize) -> Vec<u8> {
        let mut b = Vec::new();
        put_str(&mut b, "t");
        put_uvarint(&mut b, 1);
        put_uvarint(&mut b, 1);
        put_uvarint(&mut b, name.len() as u64);
        b.extend_from_slice(name);
        put_uvarint(&mut b, value.len() as u64);
        b.extend_from_slice(value);
        put_uvarint(&mut b, samples as u64);
        for i in 0..samples {
            put_uvarint(&mut b, 300 * i as u64);
            b.extend_from_slice(&1.5f64.to_le_bytes());
        }
        b
    }

    #[test]
    fn levels_check_what_they_promise() {
        let ok = one_series(b"job", "caf\u{e9}".as_bytes(), 3);
        for check in [Check::Framing, Check::Full, Check::Client] {
            let c = validate(&ok, check, false).unwrap();
            assert_eq!((c.series, c.samples), (1, 3));
        }
        let long = "x".repeat(200);
        assert!(validate(&one_series(long.as_bytes(), b"v", 1), Check::Client, false).is_ok());
        let bad_utf8 = one_series(b"job", &[0xff, 0x41], 1);
        assert!(validate(&bad_utf8, Check::Framing, false).is_ok());
        assert!(validate(&bad_utf8, Check::Full, false).unwrap_err().0.contains("UTF-8"));
        let empty = one_series(b"job", b"", 1);
        assert!(validate(&empty, Check::Full, false).is_ok());
        assert!(validate(&empty, Check::Client, false).unwrap_err().0.contains("empty label"));
        for cut in 0..ok.len() {
            assert!(validate(&ok[..cut], Check::Framing, false).is_err(), "cut at {cut}");
        }
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(validate(&trailing, Check::Framing, false).unwrap_err().0.contains("trailing"));
    }
}
