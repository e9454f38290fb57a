//! Series identity: packed label storage in memory, the string interner for
//! the postings index, and the series CF record (`ref -> tenant, labels`).

use crate::codec::{put_labels, put_uvarint, Reader};
use crate::keys::VALUE_VERSION;
use aion_model::labels::{Label, Labels};
use std::collections::HashSet;
use std::sync::Arc;

/// The labels of one in-memory series, sorted, packed into one allocation:
/// `n uvarint | n x (len uvarint | name | len uvarint | value)`. One buffer
/// (about the size of the label text) instead of a pointer pair per label:
/// less memory per series, and the per-sample identity check in the head
/// reads one or two cache lines instead of chasing a pointer per string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedLabels(Box<[u8]>);

/// Reads an unsigned varint written by `put_uvarint` from packed labels.
fn packed_uvarint(b: &[u8], pos: &mut usize) -> usize {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Reads one length-prefixed string of packed labels.
fn packed_bytes<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let n = packed_uvarint(b, pos);
    let s = &b[*pos..*pos + n];
    *pos += n;
    s
}

impl PackedLabels {
    /// Packs a sorted label set.
    pub(crate) fn new(labels: &Labels) -> Self {
        let text: usize = labels.iter().map(|l| l.name.len() + l.value.len() + 2).sum();
        let mut buf = Vec::with_capacity(text + 1);
        put_uvarint(&mut buf, labels.len() as u64);
        for l in labels {
            put_uvarint(&mut buf, l.name.len() as u64);
            buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(&mut buf, l.value.len() as u64);
            buf.extend_from_slice(l.value.as_bytes());
        }
        Self(buf.into_boxed_slice())
    }

    /// Number of label pairs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        packed_uvarint(&self.0, &mut 0)
    }

    /// The pairs in name order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        let mut pos = 0;
        let n = packed_uvarint(&self.0, &mut pos);
        let as_str = |b| std::str::from_utf8(b).expect("BUG: packed labels are built from UTF-8 strings");
        (0..n).map(move |_| {
            let name = as_str(packed_bytes(&self.0, &mut pos));
            let value = as_str(packed_bytes(&self.0, &mut pos));
            (name, value)
        })
    }

    /// The packed bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True when these are exactly `labels` (compared as bytes, no UTF-8 checks).
    pub(crate) fn eq_labels(&self, labels: &Labels) -> bool {
        let b = &self.0;
        let mut pos = 0;
        if packed_uvarint(b, &mut pos) != labels.len() {
            return false;
        }
        labels.iter().all(|l| {
            packed_bytes(b, &mut pos) == l.name.as_bytes()
                && packed_bytes(b, &mut pos) == l.value.as_bytes()
        })
    }
}

/// [`aion_model::hash::labels_hash`] of labels in the packed form, computed
/// from the bytes (no UTF-8 checks) with `scratch` as the hashed buffer.
pub(crate) fn packed_hash(b: &[u8], scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    let mut pos = 0;
    let n = packed_uvarint(b, &mut pos);
    for _ in 0..2 * n {
        let s = packed_bytes(b, &mut pos);
        scratch.extend_from_slice(&(s.len() as u32).to_le_bytes());
        scratch.extend_from_slice(s);
    }
    xxhash_rust::xxh3::xxh3_64(scratch)
}

/// Labels from bytes in the packed form whose strings were not checked
/// (invalid UTF-8 is replaced, never panics).
pub(crate) fn packed_to_labels_lossy(b: &[u8]) -> Labels {
    let mut pos = 0;
    let n = packed_uvarint(b, &mut pos);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8_lossy(packed_bytes(b, &mut pos)).into_owned();
        let value = String::from_utf8_lossy(packed_bytes(b, &mut pos)).into_owned();
        out.push(Label::new(name, value));
    }
    Labels::from_sorted(out)
}

/// String interner for tenant ids, label names and label values.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `s`.
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }
}

/// Rebuilds an owned [`Labels`] from packed labels (already sorted).
pub(crate) fn to_labels(l: &PackedLabels) -> Labels {
    Labels::from_sorted(l.iter().map(|(n, v)| Label::new(n, v)).collect())
}

/// Value of label `name` in packed labels, `""` when absent.
pub(crate) fn label_value<'a>(l: &'a PackedLabels, name: &str) -> &'a str {
    l.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
}

/// True when the packed labels equal `labels`.
pub(crate) fn same_labels(a: &PackedLabels, labels: &Labels) -> bool {
    a.eq_labels(labels)
}

/// Encodes the series CF value: `version | len(tenant) u8 | tenant | labels`.
pub(crate) fn encode_series(tenant: &str, labels: &PackedLabels, buf: &mut Vec<u8>) {
    buf.push(VALUE_VERSION);
    buf.push(tenant.len().min(255) as u8);
    buf.extend_from_slice(tenant.as_bytes());
    put_labels(buf, labels.iter());
}

/// Decodes a series CF value into `(tenant, labels)`.
pub(crate) fn decode_series(b: &[u8]) -> Result<(String, Labels), String> {
    let mut r = Reader::new(b);
    let v = r.u8("version")?;
    if v != VALUE_VERSION {
        return Err(format!("unknown series record version {v}"));
    }
    let tl = usize::from(r.u8("tenant length")?);
    let tenant = std::str::from_utf8(r.take(tl, "tenant")?)
        .map_err(|e| format!("tenant is not UTF-8: {e}"))?;
    let labels = r.labels()?;
    r.finish("series record")?;
    Ok((tenant.to_string(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_labels_and_series_record_round_trip() {
        let long = "x".repeat(300);
        let l = Labels::from_pairs([("__name__", "up"), ("job", "api"), ("path", long.as_str())]);
        let p = PackedLabels::new(&l);
        assert_eq!(p.len(), 3);
        assert!(same_labels(&p, &l));
        assert!(!same_labels(&p, &Labels::from_pairs([("__name__", "up"), ("job", "api")])));
        assert!(!same_labels(&p, &Labels::from_pairs([("__name__", "up"), ("job", "apj"), ("path", long.as_str())])));
        assert!(same_labels(&PackedLabels::new(&Labels::empty()), &Labels::empty()));
        assert_eq!(to_labels(&p), l);
        assert_eq!((label_value(&p, "job"), label_value(&p, "nope")), ("api", ""));
        assert_eq!(label_value(&p, "path"), long);

        let mut i = Interner::default();
        assert!(Arc::ptr_eq(&i.intern("api"), &i.intern("api")));

        let mut buf = Vec::new();
        encode_series("team-a", &p, &mut buf);
        assert_eq!(decode_series(&buf).unwrap(), ("team-a".to_string(), l));
        assert!(decode_series(&buf[..buf.len() - 1]).is_err());
    }
}
