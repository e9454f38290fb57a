//! Stable series hashing: the same (tenant, labels) always hashes the same,
//! across processes and versions (xxh3-64 over a length-prefixed encoding).

use crate::labels::Labels;
use xxhash_rust::xxh3::Xxh3;

/// Hash of a label set alone.
pub fn labels_hash(labels: &Labels) -> u64 {
    let mut h = Xxh3::new();
    for l in labels {
        h.update(&(l.name.len() as u32).to_le_bytes());
        h.update(l.name.as_bytes());
        h.update(&(l.value.len() as u32).to_le_bytes());
        h.update(l.value.as_bytes());
    }
    h.digest()
}

/// Hash of (tenant, labels): the key used to place a series on a shard.
pub fn series_hash(tenant: &str, labels: &Labels) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(tenant.len() as u32).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(&labels_hash(labels).to_le_bytes());
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_changes_hash() {
        let l = Labels::from_pairs([("__name__", "up")]);
        assert_ne!(series_hash("a", &l), series_hash("b", &l));
        assert_eq!(series_hash("a", &l), series_hash("a", &l.clone()));
    }
}
