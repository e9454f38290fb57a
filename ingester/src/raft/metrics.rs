//! Per-shard Raft statistics that openraft's own metrics do not carry:
//! the committed index (written by the log store on `save_committed`),
//! snapshots built and installed (by the state machine), leader changes
//! (by a watcher over the Raft metrics) and the commit latency of client
//! writes (by the gRPC `Push` handler). The ingester's `/metrics` reads
//! them at scrape time, one series per shard.

use super::{NodeId, ShardRaft};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters of one shard replica. Shared (`Arc`) by its log store, state
/// machine and host; every field is lock-free.
#[derive(Debug)]
pub struct ShardRaftStats {
    committed_index: AtomicU64,
    snapshots_built: AtomicU64,
    snapshots_installed: AtomicU64,
    leader_changes: AtomicU64,
    commit_latency: Histogram,
}

impl Default for ShardRaftStats {
    fn default() -> Self {
        Self {
            committed_index: AtomicU64::new(0),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            // 0.25 ms … ~4 s.
            commit_latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
        }
    }
}

impl ShardRaftStats {
    /// Fresh counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records the committed log index (0 = nothing committed).
    pub fn set_committed(&self, index: u64) {
        self.committed_index.store(index, Ordering::Relaxed);
    }

    /// Last committed log index this replica knows of.
    pub fn committed(&self) -> u64 {
        self.committed_index.load(Ordering::Relaxed)
    }

    /// Counts one snapshot built from the state machine.
    pub fn snapshot_built(&self) {
        self.snapshots_built.fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshots built so far.
    pub fn snapshots_built(&self) -> u64 {
        self.snapshots_built.load(Ordering::Relaxed)
    }

    /// Counts one snapshot received from the leader and installed.
    pub fn snapshot_installed(&self) {
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshots installed so far.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    /// Leader changes this replica observed.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Observes the latency of one client write (submit to applied).
    pub fn observe_commit(&self, took: Duration) {
        self.commit_latency.observe(took.as_secs_f64());
    }

    /// The commit latency histogram (seconds).
    pub fn commit_latency(&self) -> &Histogram {
        &self.commit_latency
    }

    /// Counts leader changes of `raft` until it shuts down (a background
    /// task on the current tokio runtime).
    pub fn watch_leader_changes(self: &Arc<Self>, raft: &ShardRaft) {
        let mut rx = raft.metrics();
        let stats = Arc::clone(self);
        tokio::spawn(async move {
            let mut last: Option<NodeId> = rx.borrow().current_leader;
            while rx.changed().await.is_ok() {
                let now = rx.borrow().current_leader;
                if now.is_some() && now != last {
                    stats.leader_changes.fetch_add(1, Ordering::Relaxed);
                }
                if now.is_some() {
                    last = now;
                }
            }
        });
    }
}

/// Counters of a node's outgoing Raft `AppendEntries` traffic, over all
/// shards and peers (one per [`ChannelPool`](super::network::ChannelPool)):
/// shard-level requests and the gRPC calls that carried them, so
/// `rpcs / requests` is the effect of batching per peer.
#[derive(Debug, Default)]
pub struct TransportStats {
    append_requests: AtomicU64,
    append_heartbeats: AtomicU64,
    append_entries: AtomicU64,
    append_rpcs: AtomicU64,
    append_batch_rpcs: AtomicU64,
}

impl TransportStats {
    /// Counts one shard's `AppendEntries` request carrying `entries` log
    /// entries (0: a heartbeat).
    pub fn request(&self, entries: usize) {
        self.append_requests.fetch_add(1, Ordering::Relaxed);
        self.append_entries.fetch_add(entries as u64, Ordering::Relaxed);
        if entries == 0 {
            self.append_heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one gRPC call carrying appends; `batched`: an `AppendBatch`.
    pub fn rpc(&self, batched: bool) {
        self.append_rpcs.fetch_add(1, Ordering::Relaxed);
        if batched {
            self.append_batch_rpcs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Shard-level `AppendEntries` requests sent (heartbeats included).
    pub fn append_requests(&self) -> u64 {
        self.append_requests.load(Ordering::Relaxed)
    }

    /// Of [`Self::append_requests`], those without entries (heartbeats).
    pub fn append_heartbeats(&self) -> u64 {
        self.append_heartbeats.load(Ordering::Relaxed)
    }

    /// Log entries sent in `AppendEntries` requests.
    pub fn append_entries(&self) -> u64 {
        self.append_entries.load(Ordering::Relaxed)
    }

    /// gRPC calls that carried `AppendEntries` (unary and batched).
    pub fn append_rpcs(&self) -> u64 {
        self.append_rpcs.load(Ordering::Relaxed)
    }

    /// Of [`Self::append_rpcs`], the `AppendBatch` calls.
    pub fn append_batch_rpcs(&self) -> u64 {
        self.append_batch_rpcs.load(Ordering::Relaxed)
    }
}
