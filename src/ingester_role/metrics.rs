//! Per-shard Raft metrics of an ingester, read from each shard's Raft
//! metrics and counters at scrape time, each labelled `shard`: gauges
//! `aion_raft_term`, `aion_raft_is_leader`, `aion_raft_leader_id` (-1
//! without a known leader), `aion_raft_last_log_index`,
//! `aion_raft_commit_index`, `aion_raft_last_applied_index`,
//! `aion_raft_apply_lag_entries` (committed − applied) and
//! `aion_raft_log_entries` (entries not yet purged); counters
//! `aion_raft_leader_changes_total`, `aion_raft_snapshots_built_total`,
//! `aion_raft_snapshots_installed_total`; histogram
//! `aion_raft_commit_latency_seconds` (Push: submit to applied, on the leader);
//! node-wide counters of outgoing `AppendEntries` traffic (no labels):
//! `aion_raft_append_{requests,heartbeats,entries,rpcs,batch_rpcs}_total`.

use super::backend::Backend;
use aion_ingester::shards::{ShardHost, ShardStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use aion_ingester::raft::metrics::ShardRaftStats;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

/// Collector of the Raft state of every shard a [`ShardHost`] hosts.
pub struct RaftCollector<B: Backend> {
    host: Arc<ShardHost<B>>,
}

impl<B: Backend> std::fmt::Debug for RaftCollector<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCollector").field("node", &self.host.node_id()).finish()
    }
}

impl<B: Backend> RaftCollector<B> {
    /// A collector over `host`.
    pub fn new(host: Arc<ShardHost<B>>) -> Self {
        Self { host }
    }
}

type Getter = fn(&ShardStatus, u64) -> i64;

const GAUGES: [(&str, &str, Getter); 8] = [
    ("aion_raft_term", "Current Raft term of the shard on this node", |s, _| s.term as i64),
    ("aion_raft_is_leader", "1 if this node leads the shard", |s, me| i64::from(s.leader == Some(me))),
    ("aion_raft_leader_id", "Node id of the shard's leader as this node sees it, -1 if unknown", |s, _| {
        s.leader.map_or(-1, |l| l as i64)
    }),
    ("aion_raft_last_log_index", "Index of the last Raft log entry of the shard on this node", |s, _| {
        s.last_log.map_or(0, |i| i as i64)
    }),
    ("aion_raft_last_applied_index", "Index of the last Raft log entry applied to the shard's state machine", |s, _| {
        s.last_applied.map_or(0, |i| i as i64)
    }),
    ("aion_raft_apply_lag_entries", "Committed log entries on this node not yet applied", |s, _| {
        (s.committed.saturating_sub(s.last_applied.unwrap_or(0))) as i64
    }),
    ("aion_raft_commit_index", "Index of the last committed Raft log entry this node knows of", |s, _| {
        s.committed as i64
    }),
    ("aion_raft_log_entries", "Raft log entries of the shard on this node not yet purged", |s, _| {
        (s.last_log.unwrap_or(0).saturating_sub(s.purged.unwrap_or(0))) as i64
    }),
];

type CounterGetter = fn(&ShardRaftStats) -> u64;

const COUNTERS: [(&str, &str, CounterGetter); 3] = [
    ("aion_raft_leader_changes", "Leader changes of the shard observed by this node", |s| s.leader_changes()),
    ("aion_raft_snapshots_built", "Raft snapshots built by this node's replica of the shard", |s| {
        s.snapshots_built()
    }),
    ("aion_raft_snapshots_installed", "Raft snapshots received from the leader and installed", |s| {
        s.snapshots_installed()
    }),
];

impl<B: Backend> Collector for RaftCollector<B> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.host.status();
        let me = self.host.node_id();
        for (name, help, get) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &status {
                let labels = [("shard", s.shard.to_string())];
                ConstGauge::new(get(s, me)).encode(family.encode_family(&labels)?)?;
            }
        }
        let stats: Vec<(u64, Arc<ShardRaftStats>)> =
            status.iter().filter_map(|s| self.host.shard(s.shard).map(|h| (s.shard, h.stats.clone()))).collect();
        for (name, help, get) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (shard, st) in &stats {
                let labels = [("shard", shard.to_string())];
                ConstCounter::new(get(st)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "aion_raft_commit_latency_seconds",
            "Push commit latency: client write submitted to applied, on the leader",
            None,
            MetricType::Histogram,
        )?;
        for (shard, st) in &stats {
            let labels = [("shard", shard.to_string())];
            st.commit_latency().encode(family.encode_family(&labels)?)?;
        }
        let t = self.host.pool().stats();
        for (name, help, v) in [
            ("aion_raft_append_requests", "Shard AppendEntries requests sent to peers (heartbeats included)", t.append_requests()),
            ("aion_raft_append_heartbeats", "Of those, requests without entries", t.append_heartbeats()),
            ("aion_raft_append_entries", "Raft log entries sent in AppendEntries requests", t.append_entries()),
            ("aion_raft_append_rpcs", "gRPC calls that carried AppendEntries (unary and AppendBatch)", t.append_rpcs()),
            ("aion_raft_append_batch_rpcs", "Of those, AppendBatch calls", t.append_batch_rpcs()),
        ] {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(family)?;
        }
        let reads = aion_ingester::grpc::IngesterService::<B>::process_read_index_counts();
        let mut family = encoder.encode_descriptor(
            "aion_read_index_shard_reads",
            "Linearizable shard reads by how leadership was confirmed: lease (no round trip), confirm (batched ReadIndex.Confirm), linearize (openraft ensure_linearizable)",
            None,
            MetricType::Counter,
        )?;
        for (via, v) in [("lease", reads.lease), ("confirm", reads.confirm), ("linearize", reads.linearize)] {
            ConstCounter::new(v).encode(family.encode_family(&[("via", via)])?)?;
        }
        let family = encoder.encode_descriptor("aion_read_index_confirm_calls", "ReadIndex.Confirm calls sent to peers", None, MetricType::Counter)?;
        ConstCounter::new(reads.confirm_calls).encode(family)?;
        Ok(())
    }
}
