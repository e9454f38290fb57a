//! Stable series hashing: the same (tenant, labels) always hashes the same,
//! across processes and versions (xxh3-64 over a length-prefixed encoding).
//!
//! The encoding of a label set is, per pair in name order,
//! `len(name) u32 LE | name | len(value) u32 LE | value`; the hash is the
//! one-shot xxh3-64 of those bytes (equal to streaming them through `Xxh3`,
//! which earlier versions did; the one-shot form is several times faster).

use crate::labels::Labels;
use std::cell::RefCell;
use xxhash_rust::xxh3::xxh3_64;

thread_local! {
    /// Per-thread scratch buffer for the label encoding, so hashing allocates nothing.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Appends the hashed encoding of one label pair to `buf`.
fn put_pair(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value.as_bytes());
}

/// Hash of label pairs given in name order (as [`labels_hash`] of the same set).
pub fn pairs_hash<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let hash_into = |buf: &mut Vec<u8>, pairs: &mut dyn Iterator<Item = (&'a str, &'a str)>| {
        buf.clear();
        for (n, v) in pairs {
            put_pair(buf, n, v);
        }
        xxh3_64(buf)
    };
    let mut pairs = pairs.into_iter();
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => hash_into(&mut buf, &mut pairs),
        // Re-entered from inside the iterator: use a fresh buffer.
        Err(_) => hash_into(&mut Vec::new(), &mut pairs),
    })
}

/// Hash of a label set alone.
pub fn labels_hash(labels: &Labels) -> u64 {
    pairs_hash(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Hash of (tenant, labels): the key used to place a series on a shard.
pub fn series_hash(tenant: &str, labels: &Labels) -> u64 {
    let mut buf = [0u8; 4 + 255 + 8];
    if tenant.len() <= 255 {
        let n = tenant.len();
        buf[..4].copy_from_slice(&(n as u32).to_le_bytes());
        buf[4..4 + n].copy_from_slice(tenant.as_bytes());
        buf[4 + n..12 + n].copy_from_slice(&labels_hash(labels).to_le_bytes());
        return xxh3_64(&buf[..12 + n]);
    }
    let mut v = Vec::with_capacity(tenant.len() + 12);
    v.extend_from_slice(&(tenant.len() as u32).to_le_bytes());
    v.extend_from_slice(tenant.as_bytes());
    v.extend_from_slice(&labels_hash(labels).to_le_bytes());
    xxh3_64(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::Xxh3;

    /// The original streaming definition; the one-shot form must match it forever.
    fn streaming_labels_hash(labels: &Labels) -> u64 {
        let mut h = Xxh3::new();
        for l in labels {
            h.update(&(l.name.len() as u32).to_le_bytes());
            h.update(l.name.as_bytes());
            h.update(&(l.value.len() as u32).to_le_bytes());
            h.update(l.value.as_bytes());
        }
        h.digest()
    }

    fn streaming_series_hash(tenant: &str, labels: &Labels) -> u64 {
        let mut h = Xxh3::new();
        h.update(&(tenant.len() as u32).to_le_bytes());
        h.update(tenant.as_bytes());
        h.update(&streaming_labels_hash(labels).to_le_bytes());
        h.digest()
    }

    #[test]
    fn tenant_changes_hash() {
        let l = Labels::from_pairs([("__name__", "up")]);
        assert_ne!(series_hash("a", &l), series_hash("b", &l));
        assert_eq!(series_hash("a", &l), series_hash("a", &l.clone()));
    }

    #[test]
    fn one_shot_hash_equals_the_streaming_definition() {
        let long = "v".repeat(700);
        let sets = [
            Labels::empty(),
            Labels::from_pairs([("__name__", "up")]),
            Labels::from_pairs([("__name__", "http_requests_total"), ("instance", "10.0.0.1:9100"), ("job", "node")]),
            Labels::from_pairs([("a", long.as_str()), ("b", "x")]),
        ];
        for l in &sets {
            assert_eq!(labels_hash(l), streaming_labels_hash(l), "{l}");
            let pairs = l.iter().map(|p| (p.name.as_str(), p.value.as_str()));
            assert_eq!(pairs_hash(pairs), streaming_labels_hash(l), "{l}");
            for tenant in ["", "team-a", &"t".repeat(300)] {
                assert_eq!(series_hash(tenant, l), streaming_series_hash(tenant, l), "{tenant} {l}");
            }
        }
    }
}
