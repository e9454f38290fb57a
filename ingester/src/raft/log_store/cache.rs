//! In-memory tail of each shard's Raft log.
//!
//! openraft reads every entry back from the log store soon after appending
//! it: the leader once per follower (replication) and every replica once
//! more to apply it. Served from RocksDB, each read creates an iterator over
//! the memtables and SST files and copies the entry's bytes out. The cache
//! keeps the last few durably appended entries of every shard (payloads are
//! shared `Bytes`, so a hit copies nothing) and answers those reads.
//!
//! Invariants: a shard's cache holds a contiguous run of log indices whose
//! last one is the last entry in the shard's log (appends extend it; truncate
//! cuts its tail; purge cuts its head; destroy empties it). An entry enters
//! only after its synced write returned, so the cache never shows an entry
//! RocksDB does not hold. Any gap empties the cache; reads it cannot answer
//! entirely go to RocksDB.

use super::super::{NodeId, ShardId, TypeConfig};
use openraft::{Entry, EntryPayload, LogId};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// At most this many entries are cached per shard.
const MAX_ENTRIES: usize = 8;
/// At most this many payload bytes are cached per shard (the oldest entries
/// are dropped first; the newest is always kept).
const MAX_BYTES: usize = 1 << 20;

/// The cached log tail of one shard.
#[derive(Default)]
pub(super) struct TailCache {
    entries: VecDeque<Entry<TypeConfig>>,
    bytes: usize,
    /// The committed log id last given to `save_committed` by this process
    /// (its write to RocksDB is queued, not awaited); `None` if never.
    pub(super) committed: Option<Option<LogId<NodeId>>>,
}

fn payload_len(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(w) => w.bytes().len(),
        _ => 64,
    }
}

impl TailCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn clear_entries(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets everything (the shard's log was destroyed).
    pub(super) fn clear(&mut self) {
        self.clear_entries();
        self.committed = None;
    }

    /// Records entries that were just written durably, in index order.
    pub(super) fn extend(&mut self, entries: &[Entry<TypeConfig>]) {
        for e in entries {
            let contiguous = self
                .entries
                .back()
                .is_none_or(|last| last.log_id.index.checked_add(1) == Some(e.log_id.index));
            if !contiguous {
                self.clear_entries();
            }
            self.bytes += payload_len(e);
            self.entries.push_back(e.clone());
        }
        while self.entries.len() > 1 && (self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= payload_len(&old);
            }
        }
    }

    /// Drops entries with index `>= index` (log truncation).
    pub(super) fn truncate(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= payload_len(&e);
            }
        }
    }

    /// Drops entries with index `<= index` (log purge).
    pub(super) fn purge(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= index) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= payload_len(&e);
            }
        }
    }

    /// Entries `[start, end)` if the cache holds every one of them that the
    /// log holds (the cache's last entry is the log's last), else `None`.
    pub(super) fn range(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take_while(|e| e.log_id.index < end)
                .cloned()
                .collect(),
        )
    }
}

/// The tail caches of every shard of one log DB (shared by all handles).
#[derive(Clone, Default)]
pub(super) struct TailCaches {
    shards: Arc<Mutex<HashMap<ShardId, Arc<Mutex<TailCache>>>>>,
}

impl TailCaches {
    /// The cache of `shard` (created empty on first use).
    pub(super) fn shard(&self, shard: ShardId) -> Arc<Mutex<TailCache>> {
        Arc::clone(self.shards.lock().entry(shard).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ShardWrite;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{SeriesSamples, WriteBatch};
    use aion_model::tenant::TenantId;
    use openraft::CommittedLeaderId;

    fn entry(index: u64) -> Entry<TypeConfig> {
        let w = ShardWrite::from(WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("a", "b")]),
                samples: vec![Sample::new(index as i64, 1.0)],
            }],
        });
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(w),
        }
    }

    fn idx(v: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        v.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_only_ranges_it_holds_and_follows_truncate_and_purge() {
        let mut c = TailCache::default();
        assert_eq!(idx(c.range(0, u64::MAX)), None);
        c.extend(&(5..=9).map(entry).collect::<Vec<_>>());
        assert_eq!(idx(c.range(6, 8)), Some(vec![6, 7]));
        assert_eq!(idx(c.range(5, u64::MAX)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(idx(c.range(10, u64::MAX)), Some(vec![]));
        assert_eq!(idx(c.range(4, 8)), None, "index 4 may be in RocksDB only");
        c.truncate(8);
        assert_eq!(idx(c.range(5, u64::MAX)), Some(vec![5, 6, 7]));
        c.purge(5);
        assert_eq!(idx(c.range(5, 7)), None);
        assert_eq!(idx(c.range(6, 7)), Some(vec![6]));
        c.extend(&[entry(20)]);
        assert_eq!(idx(c.range(6, u64::MAX)), None, "a gap empties the cache");
        assert_eq!(idx(c.range(20, 21)), Some(vec![20]));
        c.extend(&(21..200).map(entry).collect::<Vec<_>>());
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert_eq!(c.first_index(), Some(200 - MAX_ENTRIES as u64));
    }
}
