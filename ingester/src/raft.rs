//! Raft replication of one shard (openraft 0.9, storage v2).
//!
//! Design: every shard is its own openraft group ([`TypeConfig`]); a log
//! entry's payload is one [`ShardWrite`] (a tenant's encoded, validated
//! `WriteBatch`, carried as bytes from the Push to the apply), and
//! applying it yields a [`WriteSummary`]. An ingester keeps the logs of all
//! the shards it hosts in ONE RocksDB ([`RaftLogDb`]): column family
//! `raft_log` keyed `shard_id u64 BE | log_index u64 BE` (so each shard's log
//! is one contiguous, index-ordered key range) and `raft_meta` keyed
//! `shard_id u64 BE | tag u8` for the vote, the committed log id and the last
//! purged log id. Each shard gets a cheap [`ShardLogStore`] handle onto that
//! DB. Every write goes through the DB's one writer thread, which puts the
//! writes of all shards that queued up meanwhile into one synced RocksDB
//! write (one fsync for all of them); openraft already serialises the IO of
//! one shard. The append callback fires only after the synced write
//! returned, i.e. the entries are durable. The last few appended entries of
//! each shard stay in memory for openraft's reads (replication, apply).
//!
//! The state machine ([`ShardStateMachine`]) applies entries to a
//! [`ShardData`] backend (anything that can append a batch, dump itself and
//! be restored); snapshots are a byte dump of that backend plus the applied
//! log id and membership. Byte layouts: `docs/format/raft.md`.
//!
//! Invariants: a shard's log has no holes between `last_purged + 1` and the
//! last entry; purge records the new `last_purged` in the same atomic write
//! that deletes the entries; no shard's key range overlaps another's.

pub mod batch;
pub mod codec;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod state_machine;
pub mod tsdb_data;
pub mod wire;

use aion_model::storage::AppendOutcome;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

pub use batch::ShardWrite;
pub use log_store::{RaftLogDb, RaftLogError, ShardLogStore, CF_RAFT_LOG, CF_RAFT_META};
pub use state_machine::{MemShardData, ShardData, ShardSnapshotBuilder, ShardStateMachine};
pub use tsdb_data::{shard_tsdb_dir, TsdbShardData, TsdbStateMachine};

/// Id of a node (ingester) in a shard's Raft group.
pub type NodeId = u64;

/// Id of a shard; selects the key range in the log DB.
pub type ShardId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of one shard's Raft group.
    pub TypeConfig:
        D = ShardWrite,
        R = WriteSummary,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A shard's Raft instance.
pub type ShardRaft = openraft::Raft<TypeConfig>;

/// What applying one entry did: counts of an [`AppendOutcome`] plus the first
/// few rejection messages (enough for a client error, bounded in size).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteSummary {
    /// Samples newly stored.
    pub appended: u64,
    /// Exact duplicates accepted silently.
    pub duplicates_ignored: u64,
    /// Samples rejected (out of order or duplicate timestamp).
    pub rejected: u64,
    /// Up to [`WriteSummary::MAX_MESSAGES`] rejection messages.
    pub messages: Vec<String>,
    /// For an entry of merged writes ([`ShardWrite::merge`]): the summary of
    /// each part, in order (the fields above are then their totals). Empty
    /// for a single write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<WriteSummary>,
}

impl WriteSummary {
    /// Bound on [`WriteSummary::messages`].
    pub const MAX_MESSAGES: usize = 5;

    /// Summarises an append outcome.
    pub fn from_outcome(o: &AppendOutcome) -> Self {
        let messages = o
            .rejected
            .iter()
            .take(Self::MAX_MESSAGES)
            .map(|r| {
                format!(
                    "{} sample at t={} for series {}",
                    r.reason.as_str(),
                    r.t,
                    r.labels
                )
            })
            .collect();
        Self {
            appended: o.appended,
            duplicates_ignored: o.duplicates_ignored,
            rejected: o.rejected.len() as u64,
            messages,
            parts: Vec::new(),
        }
    }

    /// Summarises the outcomes of an entry's parts (one per part): a single
    /// part's summary as it is, several as totals plus [`WriteSummary::parts`].
    pub fn from_parts(outcomes: &[AppendOutcome]) -> Self {
        if let [one] = outcomes {
            return Self::from_outcome(one);
        }
        let parts: Vec<WriteSummary> = outcomes.iter().map(Self::from_outcome).collect();
        Self {
            appended: parts.iter().map(|p| p.appended).sum(),
            duplicates_ignored: parts.iter().map(|p| p.duplicates_ignored).sum(),
            rejected: parts.iter().map(|p| p.rejected).sum(),
            messages: parts.iter().flat_map(|p| p.messages.iter().cloned()).take(Self::MAX_MESSAGES).collect(),
            parts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{SeriesSamples, WriteBatch};
    use aion_model::tenant::TenantId;

    #[test]
    fn shard_write_serde_round_trips_through_json_and_rejects_garbage() {
        let w = ShardWrite::from(WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("a", "b")]),
                samples: vec![Sample::new(5, 0.5)],
            }],
        });
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<ShardWrite>(&json).unwrap(), w);
        let err = serde_json::from_str::<ShardWrite>("[1,2,3]").unwrap_err();
        assert!(err.to_string().contains("corrupt raft record"), "{err}");
    }
}
