//! Per-shard Raft gauges of an ingester, read from each shard's Raft
//! metrics at scrape time: `aion_raft_term`, `aion_raft_is_leader`,
//! `aion_raft_leader_id` (-1 without a known leader),
//! `aion_raft_last_log_index`, `aion_raft_last_applied_index` and
//! `aion_raft_apply_lag_entries`, each labelled `shard`.

use super::backend::Backend;
use aion_ingester::shards::{ShardHost, ShardStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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

const GAUGES: [(&str, &str, Getter); 6] = [
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
    ("aion_raft_apply_lag_entries", "Log entries on this node not yet applied", |s, _| {
        (s.last_log.unwrap_or(0).saturating_sub(s.last_applied.unwrap_or(0))) as i64
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
        Ok(())
    }
}
