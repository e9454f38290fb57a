//! Series placement: which shard owns a series. A pure function of
//! (tenant, sorted labels) and the shard count, the same in every process.
//!
//! The key is [`aion_model::hash::series_hash`] (xxh3 over the tenant and the
//! length-prefixed sorted labels); it is looked up on a consistent-hash ring
//! (the `hashring` crate, SipHash with fixed keys, so stable across
//! processes) holding [`VNODES_PER_SHARD`] virtual nodes per shard id. Going
//! from S to S+1 shards moves about 1/(S+1) of the series, all of them to the
//! new shard. Membership (which ingesters hold a shard) is Raft's business,
//! not this file's.

use crate::raft::ShardId;
use aion_model::hash::series_hash;
use aion_model::labels::Labels;
use hashring::HashRing;

/// Virtual nodes per shard on the ring: enough for an even spread (within
/// ~±15% at 16 shards), few enough that a lookup stays a short binary search.
pub const VNODES_PER_SHARD: u32 = 128;

/// One point of a shard on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct VirtualNode {
    shard: ShardId,
    replica: u32,
}

/// The ring of shard ids `0..shard_count` that series are placed on.
#[derive(Debug, Clone)]
pub struct ShardRing {
    ring: HashRing<VirtualNode>,
    shard_count: u64,
}

impl ShardRing {
    /// The ring of shards `0..shard_count` (at least one shard).
    pub fn new(shard_count: u64) -> Self {
        let shard_count = shard_count.max(1);
        let mut ring = HashRing::new();
        let nodes = (0..shard_count)
            .flat_map(|shard| (0..VNODES_PER_SHARD).map(move |replica| VirtualNode { shard, replica }))
            .collect();
        ring.batch_add(nodes);
        Self { ring, shard_count }
    }

    /// Number of shards on the ring.
    pub fn shard_count(&self) -> u64 {
        self.shard_count
    }

    /// The shard owning the series with placement key `key` (a [`series_hash`]).
    pub fn shard_of_key(&self, key: u64) -> ShardId {
        self.ring.get(&key).map_or(0, |v| v.shard)
    }

    /// The shard owning `tenant`'s series `labels` (labels sorted, as [`Labels`] always are).
    pub fn shard_of(&self, tenant: &str, labels: &Labels) -> ShardId {
        self.shard_of_key(series_hash(tenant, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(seed: u64, n: usize) -> Vec<u64> {
        (0..n as u64).map(|i| series_hash("t", &Labels::from_pairs([("__name__", "m"), ("i", &format!("{seed}-{i}"))]))).collect()
    }

    #[test]
    fn known_series_keep_their_shard() {
        // Placement is part of the on-disk contract: a changed function would
        // strand every stored series on the wrong shard.
        let ring = ShardRing::new(16);
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        let a = ring.shard_of("team-a", &l);
        assert_eq!(a, ShardRing::new(16).shard_of("team-a", &l));
        assert!(a < 16);
        assert_eq!(ShardRing::new(1).shard_of("x", &l), 0);
        assert_eq!(ShardRing::new(0).shard_count(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn placement_is_deterministic(shards in 1u64..64, tenant in "[a-z]{1,8}", name in "[a-z_]{1,12}", v in ".{0,16}") {
            let labels = Labels::from_pairs([("__name__", name.as_str()), ("v", v.as_str())]);
            let a = ShardRing::new(shards).shard_of(&tenant, &labels);
            let b = ShardRing::new(shards).shard_of(&tenant, &labels);
            prop_assert_eq!(a, b);
            prop_assert!(a < shards);
        }

        #[test]
        fn every_shard_gets_a_fair_share(shards in 1u64..=32, seed in any::<u64>()) {
            let ring = ShardRing::new(shards);
            let n = 300 * shards as usize;
            let mut per = vec![0usize; shards as usize];
            for k in keys(seed, n) {
                per[ring.shard_of_key(k) as usize] += 1;
            }
            let mean = n as f64 / shards as f64;
            for (s, c) in per.iter().enumerate() {
                prop_assert!((*c as f64) > 0.5 * mean && (*c as f64) < 1.6 * mean, "shard {} got {} of mean {}: {:?}", s, c, mean, per);
            }
        }

        #[test]
        fn adding_a_shard_moves_about_one_over_s_plus_one(shards in 1u64..=32, seed in any::<u64>()) {
            let (old, new) = (ShardRing::new(shards), ShardRing::new(shards + 1));
            let n = 4000;
            let mut moved = 0usize;
            for k in keys(seed, n) {
                let (a, b) = (old.shard_of_key(k), new.shard_of_key(k));
                if a != b {
                    prop_assert_eq!(b, shards, "a moved series must go to the new shard");
                    moved += 1;
                }
            }
            let expected = n as f64 / (shards + 1) as f64;
            prop_assert!((moved as f64) > 0.5 * expected && (moved as f64) < 1.6 * expected, "moved {} expected ~{}", moved, expected);
        }
    }
}
