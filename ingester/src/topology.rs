//! Cluster topology of the ingesters: which ingesters exist (id, addresses,
//! zone), how many shards there are, the replication factor, and which node
//! this process is. [`place`] is the pure placement function: shard →
//! replica node ids, on distinct ingesters and, when zones are set, distinct
//! zones. Every process computes the same placement from the same config.

use crate::raft::{NodeId, ShardId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Errors validating a topology or placing a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// No ingesters listed.
    #[error("no ingesters configured: list at least one under `ingesters` (or --ingester.peers)")]
    NoIngesters,
    /// Shard count of zero.
    #[error("shards must be at least 1, got 0")]
    NoShards,
    /// A Raft timing outside its sane range.
    #[error("{name} must be between {min:?} and {max:?}, got {got:?}")]
    TimingOutOfRange {
        /// The setting.
        name: &'static str,
        /// The value given.
        got: std::time::Duration,
        /// Smallest accepted.
        min: std::time::Duration,
        /// Largest accepted.
        max: std::time::Duration,
    },
    /// Replication factor of zero.
    #[error("replication_factor must be at least 1, got 0")]
    ZeroReplication,
    /// Two ingesters share an id.
    #[error("ingester id {0} is listed more than once")]
    DuplicateId(NodeId),
    /// Fewer ingesters than the replication factor.
    #[error("replication_factor {rf} needs at least {rf} ingesters, only {have} configured")]
    TooFewIngesters {
        /// The replication factor.
        rf: usize,
        /// Ingesters configured.
        have: usize,
    },
    /// Zones are set but fewer distinct zones than the replication factor.
    #[error("replication_factor {rf} needs {rf} distinct zones, only {have} configured ({zones:?})")]
    TooFewZones {
        /// The replication factor.
        rf: usize,
        /// Distinct zones configured.
        have: usize,
        /// The zones.
        zones: Vec<String>,
    },
    /// Some ingesters have a zone and others don't.
    #[error("ingester {0} has no zone while others do: set a zone on every ingester or on none")]
    MixedZones(NodeId),
    /// This process's node id is not among the ingesters.
    #[error("node_id {0} is not one of the configured ingesters {1:?}")]
    UnknownNode(NodeId, Vec<NodeId>),
    /// A peer list entry is malformed.
    #[error("invalid peer {0:?}: expected `id=host:port`")]
    BadPeer(String),
}

/// One ingester of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngesterInfo {
    /// Node id (unique, > 0 recommended).
    pub id: NodeId,
    /// Address peers and clients reach its gRPC server at (`host:port`).
    pub grpc_address: String,
    /// Its HTTP address (admin, metrics), if known.
    #[serde(default)]
    pub http_address: Option<String>,
    /// Failure zone; replicas of a shard go to distinct zones when set.
    #[serde(default)]
    pub zone: Option<String>,
}

/// What each shard replica's state machine stores its data in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMachineKind {
    /// One persistent TSDB per shard (restart re-applies only the log tail).
    #[default]
    Tsdb,
    /// In memory, rebuilt from the (never purged) Raft log on restart.
    Memory,
}

impl std::str::FromStr for StateMachineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tsdb" => Ok(Self::Tsdb),
            "memory" => Ok(Self::Memory),
            other => Err(format!("unknown state machine {other:?}: use tsdb or memory")),
        }
    }
}

/// The `ingester_cluster` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This process's node id.
    pub node_id: NodeId,
    /// Number of shards (Raft groups).
    pub shards: u64,
    /// Replicas per shard.
    pub replication_factor: usize,
    /// Every ingester of the cluster.
    pub ingesters: Vec<IngesterInfo>,
    /// State machine backend of the shards.
    pub state_machine: StateMachineKind,
    /// Start with no shards when this node has no recorded hosted set: a
    /// node added to a running cluster, or one whose data dir was wiped
    /// (it gets replicas through the admin API's move, so it never votes
    /// with a forgotten vote). Ignored once a hosted set is recorded.
    pub join: bool,
    /// Build a Raft snapshot after this many applied entries, and keep at
    /// most this many log entries behind it (tsdb backend only).
    pub snapshot_after_entries: u64,
    /// Serve linearizable reads under a leader lease (no `ReadIndex.Confirm`
    /// round while it runs; see `grpc/read_index/lease.rs`). Default on.
    pub read_lease: bool,
    /// How long a write to an idle shard this node leads waits for other
    /// writes to share its Raft entry (see `shards/group_commit.rs`).
    /// Zero proposes at once. Default 10 ms.
    #[serde(with = "humantime_serde")]
    pub write_linger: std::time::Duration,
    /// Raft heartbeat interval of the shards this node leads; election
    /// timeouts are 4–8× it (see `shards::raft_timing`). Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: std::time::Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            shards: 16,
            replication_factor: 3,
            ingesters: Vec::new(),
            state_machine: StateMachineKind::default(),
            join: false,
            snapshot_after_entries: 5000,
            read_lease: true,
            write_linger: std::time::Duration::from_millis(10),
            heartbeat_interval: std::time::Duration::from_millis(200),
        }
    }
}

/// `got` within `min..=max`, or [`TopologyError::TimingOutOfRange`] naming `name`.
fn in_range(name: &'static str, got: Duration, min: Duration, max: Duration) -> Result<(), TopologyError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(TopologyError::TimingOutOfRange { name, got, min, max })
    }
}

impl ClusterConfig {
    /// Checks ids, counts and zones, and that `node_id` is listed.
    pub fn validate(&self) -> Result<(), TopologyError> {
        check(&self.ingesters, self.shards, self.replication_factor)?;
        in_range("heartbeat_interval", self.heartbeat_interval, Duration::from_millis(10), Duration::from_secs(60))?;
        in_range("write_linger", self.write_linger, Duration::ZERO, Duration::from_secs(1))?;
        if !self.ingesters.iter().any(|i| i.id == self.node_id) {
            return Err(TopologyError::UnknownNode(
                self.node_id,
                self.ingesters.iter().map(|i| i.id).collect(),
            ));
        }
        Ok(())
    }

    /// Replica node ids of every shard (see [`place`]).
    pub fn placement(&self) -> Result<BTreeMap<ShardId, Vec<NodeId>>, TopologyError> {
        (0..self.shards)
            .map(|s| Ok((s, place(&self.ingesters, self.replication_factor, s)?)))
            .collect()
    }

    /// Shards with a replica on `node`, ascending.
    pub fn shards_of(&self, node: NodeId) -> Result<Vec<ShardId>, TopologyError> {
        Ok(self
            .placement()?
            .into_iter()
            .filter(|(_, r)| r.contains(&node))
            .map(|(s, _)| s)
            .collect())
    }

    /// gRPC address of every ingester, by id.
    pub fn grpc_addresses(&self) -> BTreeMap<NodeId, String> {
        self.ingesters.iter().map(|i| (i.id, i.grpc_address.clone())).collect()
    }

    /// Replaces the ingesters with a `1=host:port,2=host:port` list (no zones).
    pub fn set_peers(&mut self, list: &str) -> Result<(), TopologyError> {
        self.ingesters = parse_peers(list)?;
        Ok(())
    }
}

/// Parses `1=host:port,2=host:port` into ingesters without zones.
pub fn parse_peers(list: &str) -> Result<Vec<IngesterInfo>, TopologyError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (id, addr) = p.split_once('=').ok_or_else(|| TopologyError::BadPeer(p.into()))?;
            let id = id.trim().parse().map_err(|_| TopologyError::BadPeer(p.into()))?;
            let addr = addr.trim();
            if addr.is_empty() || !addr.contains(':') {
                return Err(TopologyError::BadPeer(p.into()));
            }
            Ok(IngesterInfo { id, grpc_address: addr.into(), http_address: None, zone: None })
        })
        .collect()
}

fn check(ingesters: &[IngesterInfo], shards: u64, rf: usize) -> Result<(), TopologyError> {
    if ingesters.is_empty() {
        return Err(TopologyError::NoIngesters);
    }
    if shards == 0 {
        return Err(TopologyError::NoShards);
    }
    if rf == 0 {
        return Err(TopologyError::ZeroReplication);
    }
    let mut ids = BTreeSet::new();
    for i in ingesters {
        if !ids.insert(i.id) {
            return Err(TopologyError::DuplicateId(i.id));
        }
    }
    if ingesters.len() < rf {
        return Err(TopologyError::TooFewIngesters { rf, have: ingesters.len() });
    }
    let zoned = ingesters.iter().filter(|i| i.zone.is_some()).count();
    if zoned > 0 && zoned < ingesters.len() {
        let bare = ingesters.iter().find(|i| i.zone.is_none()).map(|i| i.id).unwrap_or_default();
        return Err(TopologyError::MixedZones(bare));
    }
    let zones: BTreeSet<&String> = ingesters.iter().filter_map(|i| i.zone.as_ref()).collect();
    if zoned > 0 && zones.len() < rf {
        return Err(TopologyError::TooFewZones {
            rf,
            have: zones.len(),
            zones: zones.into_iter().cloned().collect(),
        });
    }
    Ok(())
}

/// The replicas of `shard`: `rf` node ids, ascending. Ingesters are taken in
/// id order starting at position `shard % n` (so replica sets and thus
/// bootstrap duty rotate across nodes), skipping any whose zone is already
/// used when zones are set. Pure: same inputs, same answer, on every node.
pub fn place(ingesters: &[IngesterInfo], rf: usize, shard: ShardId) -> Result<Vec<NodeId>, TopologyError> {
    check(ingesters, 1, rf)?;
    let mut sorted: Vec<&IngesterInfo> = ingesters.iter().collect();
    sorted.sort_by_key(|i| i.id);
    let n = sorted.len();
    let start = (shard % n as u64) as usize;
    let mut chosen = Vec::with_capacity(rf);
    let mut zones_used = BTreeSet::new();
    for k in 0..n {
        let ing = sorted[(start + k) % n];
        if let Some(z) = &ing.zone {
            if !zones_used.insert(z.clone()) {
                continue;
            }
        }
        chosen.push(ing.id);
        if chosen.len() == rf {
            break;
        }
    }
    // `check` guarantees enough ingesters and zones.
    debug_assert_eq!(chosen.len(), rf, "BUG: placement found too few replicas");
    chosen.sort_unstable();
    Ok(chosen)
}

/// The replica of `shard` that initializes its Raft group (and so usually
/// leads it first): `replicas[shard % len]` of the ascending replica list,
/// so first leaderships spread evenly over the nodes even when every shard
/// has the same replica set. `None` for an empty list.
pub fn bootstrapper(shard: ShardId, replicas: &[NodeId]) -> Option<NodeId> {
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    sorted.get((shard % sorted.len().max(1) as u64) as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ing(id: NodeId, zone: Option<&str>) -> IngesterInfo {
        IngesterInfo {
            id,
            grpc_address: format!("127.0.0.1:{}", 9000 + id),
            http_address: None,
            zone: zone.map(String::from),
        }
    }

    #[test]
    fn raft_timings_out_of_range_are_named() {
        let ok = ClusterConfig { ingesters: vec![ing(1, None), ing(2, None), ing(3, None)], ..ClusterConfig::default() };
        ok.validate().unwrap();
        let slow = ClusterConfig { heartbeat_interval: Duration::from_secs(3600), ..ok.clone() };
        let e = slow.validate().unwrap_err().to_string();
        assert!(e.contains("heartbeat_interval") && e.contains("3600s"), "{e}");
        let fast = ClusterConfig { heartbeat_interval: Duration::from_millis(1), ..ok.clone() };
        assert!(fast.validate().unwrap_err().to_string().contains("heartbeat_interval"));
        let linger = ClusterConfig { write_linger: Duration::from_secs(5), ..ok };
        assert!(linger.validate().unwrap_err().to_string().contains("write_linger"));
    }

    #[test]
    fn replicas_are_distinct_and_rotate() {
        let ings: Vec<_> = (1..=5).map(|i| ing(i, None)).collect();
        let mut first = BTreeMap::new();
        for s in 0..20 {
            let r = place(&ings, 3, s).unwrap();
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
            *first.entry(r[0]).or_insert(0) += 1;
            assert_eq!(r, place(&ings, 3, s).unwrap(), "deterministic");
        }
        // Shard 0 → 1,2,3; shard 3 → 4,5,1; every node leads some shards.
        assert_eq!(place(&ings, 3, 0).unwrap(), vec![1, 2, 3]);
        assert_eq!(place(&ings, 3, 3).unwrap(), vec![1, 4, 5]);
        assert!(first.len() >= 3, "{first:?}");
    }

    #[test]
    fn bootstrappers_spread_over_replicas() {
        let counts = (0..16u64).fold(BTreeMap::new(), |mut m, s| {
            *m.entry(bootstrapper(s, &[3, 1, 2]).unwrap()).or_insert(0) += 1;
            m
        });
        assert_eq!(counts, BTreeMap::from([(1, 6), (2, 5), (3, 5)]));
        assert_eq!(bootstrapper(4, &[7]), Some(7));
        assert_eq!(bootstrapper(4, &[]), None);
    }

    #[test]
    fn placement_ignores_list_order() {
        let a: Vec<_> = (1..=4).map(|i| ing(i, None)).collect();
        let mut b = a.clone();
        b.reverse();
        for s in 0..8 {
            assert_eq!(place(&a, 2, s).unwrap(), place(&b, 2, s).unwrap());
        }
    }

    #[test]
    fn zones_are_distinct_when_set() {
        let ings = vec![ing(1, Some("a")), ing(2, Some("a")), ing(3, Some("b")), ing(4, Some("c")), ing(5, Some("b"))];
        for s in 0..10 {
            let r = place(&ings, 3, s).unwrap();
            let zones: BTreeSet<_> =
                r.iter().map(|id| ings.iter().find(|i| i.id == *id).unwrap().zone.clone()).collect();
            assert_eq!(zones.len(), 3, "shard {s}: {r:?}");
        }
        let e = place(&ings[..3], 3, 0).unwrap_err();
        assert!(matches!(e, TopologyError::TooFewZones { have: 2, .. }), "{e}");
    }

    #[test]
    fn rf_all_covers_every_node_and_errors_are_named() {
        let ings: Vec<_> = (1..=3).map(|i| ing(i, None)).collect();
        let cfg = ClusterConfig { node_id: 2, ingesters: ings.clone(), ..ClusterConfig::default() };
        cfg.validate().unwrap();
        assert_eq!(cfg.shards_of(2).unwrap(), (0..16).collect::<Vec<_>>());
        let bad = ClusterConfig { node_id: 7, ..cfg.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("node_id 7"));
        let bad = ClusterConfig { replication_factor: 4, ..cfg.clone() };
        assert!(matches!(bad.validate(), Err(TopologyError::TooFewIngesters { rf: 4, have: 3 })));
        let mut dup = ings.clone();
        dup.push(ing(2, None));
        assert_eq!(place(&dup, 1, 0), Err(TopologyError::DuplicateId(2)));
        let mixed = vec![ing(1, Some("a")), ing(2, None)];
        assert_eq!(place(&mixed, 1, 0), Err(TopologyError::MixedZones(2)));
    }

    #[test]
    fn peers_flag_parses_and_rejects_garbage() {
        let p = parse_peers("1=127.0.0.1:9001, 2=127.0.0.1:9002").unwrap();
        assert_eq!(p.iter().map(|i| (i.id, i.grpc_address.as_str())).collect::<Vec<_>>(),
            vec![(1, "127.0.0.1:9001"), (2, "127.0.0.1:9002")]);
        assert!(matches!(parse_peers("1:127.0.0.1:9001"), Err(TopologyError::BadPeer(_))));
        assert!(matches!(parse_peers("x=127.0.0.1:9001"), Err(TopologyError::BadPeer(_))));
        let yaml = "node_id: 2\ningesters:\n  - {id: 1, grpc_address: 'h:1', zone: a}\n  - {id: 2, grpc_address: 'h:2', http_address: 'h:3', zone: b}\n";
        let c: ClusterConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!((c.shards, c.replication_factor, c.node_id), (16, 3, 2));
        assert_eq!(c.ingesters[1].http_address.as_deref(), Some("h:3"));
        assert_eq!(c.state_machine, StateMachineKind::Tsdb);
        let c: ClusterConfig = serde_yaml::from_str("state_machine: memory").unwrap();
        assert_eq!(c.state_machine, StateMachineKind::Memory);
        assert_eq!("memory".parse::<StateMachineKind>(), Ok(StateMachineKind::Memory));
        assert!("disk".parse::<StateMachineKind>().unwrap_err().contains("disk"));
    }
}
