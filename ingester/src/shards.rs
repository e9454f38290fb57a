//! [`ShardHost`]: the shard replicas one ingester runs. It owns the node's
//! one [`RaftLogDb`] (every shard's log and vote in it) and one Raft group
//! member per hosted shard, all talking to peers over one shared
//! [`ChannelPool`] (one gRPC connection per peer). The gRPC server routes
//! Raft RPCs and client calls to a shard through [`ShardHost::shard`].
//!
//! The state machine backend is the type parameter `S` (default
//! [`HostData`]); the caller builds each shard's [`ShardStateMachine`], so
//! swapping in the persistent TSDB backend means changing the [`HostData`]
//! alias (it must implement [`ShardData`] and [`ShardQuery`]) and the one
//! call that builds the state machine.

mod group_commit;
mod hosting;
mod membership;

pub use group_commit::{GroupCommit, PushGuard, PushLoad, WriteResult};

use crate::raft::metrics::ShardRaftStats;
use crate::raft::network::{ChannelPool, GrpcNetworkFactory};
use crate::raft::{
    MemShardData, NodeId, RaftLogDb, ShardData, ShardId, ShardRaft, ShardStateMachine,
    TsdbShardData,
};
use aion_model::matcher::Matcher;
use aion_model::storage::Queryable;
use aion_model::tenant::TenantId;
use openraft::{BasicNode, Config};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The state machine backend a [`ShardHost`] uses by default.
pub type HostData = MemShardData;

/// Read access to a shard's applied data (what `Select` queries).
pub trait ShardQuery: Send + Sync + 'static {
    /// The shard's data as a [`Queryable`].
    fn queryable(&self) -> &dyn Queryable;

    /// An upper bound of how many series a select with `matchers` returns,
    /// found without reading (`None`: unknown).
    fn series_bound(&self, _tenant: &TenantId, _matchers: &[Matcher]) -> Option<usize> {
        None
    }
}

impl ShardQuery for MemShardData {
    fn queryable(&self) -> &dyn Queryable {
        self.store()
    }
}

impl ShardQuery for TsdbShardData {
    fn queryable(&self) -> &dyn Queryable {
        self.tsdb()
    }

    fn series_bound(&self, tenant: &TenantId, matchers: &[Matcher]) -> Option<usize> {
        self.tsdb().series_bound(tenant, matchers)
    }
}

/// Errors of [`ShardHost`] operations.
#[derive(Debug, thiserror::Error)]
pub enum ShardHostError {
    /// The shard is already hosted on this node.
    #[error("shard {shard} is already hosted on node {node}")]
    DuplicateShard {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: NodeId,
    },
    /// The shard is not hosted on this node.
    #[error("shard {shard} is not hosted on node {node}")]
    UnknownShard {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: NodeId,
    },
    /// `node` is not a voter of the shard's group.
    #[error("node {node} is not a voter of shard {shard} (voters: {voters:?})")]
    NotAVoter {
        /// The shard.
        shard: ShardId,
        /// The node named as the replica to move.
        node: NodeId,
        /// The group's voters.
        voters: Vec<NodeId>,
    },
    /// `node` already is a voter of the shard's group.
    #[error("node {node} already is a voter of shard {shard}")]
    AlreadyVoter {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// This node does not lead the shard (membership changes run on the leader).
    #[error("node {node} is not the leader of shard {shard}; leader: {leader:?}")]
    NotLeader {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: NodeId,
        /// The leader (id, gRPC address) if known.
        leader: Option<(NodeId, String)>,
    },
    /// A call to another ingester failed.
    #[error("shard {shard}: {op} on node {peer} at {addr} failed: {reason}")]
    Peer {
        /// The shard.
        shard: ShardId,
        /// The peer.
        peer: NodeId,
        /// Its gRPC address.
        addr: String,
        /// What was asked.
        op: &'static str,
        /// The gRPC status.
        reason: String,
    },
    /// The new replica did not catch up in time.
    #[error("shard {shard}: learner {node} did not catch up within {waited:?}")]
    CatchUpTimeout {
        /// The shard.
        shard: ShardId,
        /// The learner.
        node: NodeId,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// Opening/removing a replica's state or the hosted-set record failed.
    #[error("shard {shard} on node {node}: {what}: {reason}")]
    Storage {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: NodeId,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// openraft refused or failed an operation.
    #[error("raft of shard {shard} on node {node}: {op} failed: {reason}")]
    Raft {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: NodeId,
        /// What was attempted.
        op: &'static str,
        /// openraft's message.
        reason: String,
    },
}

/// One hosted shard replica: its Raft and the data its state machine applies to.
pub struct HostedShard<S> {
    /// The shard id.
    pub id: ShardId,
    /// The shard's Raft instance on this node.
    pub raft: ShardRaft,
    /// The state machine's data (read by `Select`).
    pub data: Arc<S>,
    /// Counters of this replica (metrics).
    pub stats: Arc<ShardRaftStats>,
    /// Group commit of the writes this replica proposes as leader.
    pub writer: Arc<GroupCommit>,
}

/// Raft state of one hosted shard, as the admin API will list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard.
    pub shard: ShardId,
    /// Current leader as this node sees it.
    pub leader: Option<NodeId>,
    /// This node's current term.
    pub term: u64,
    /// Index of the last log entry applied here.
    pub last_applied: Option<u64>,
    /// Index of the last log entry here.
    pub last_log: Option<u64>,
    /// The group's members from its latest membership: id → (address, voter).
    pub members: BTreeMap<NodeId, (String, bool)>,
    /// Voter ids, ascending.
    pub voters: Vec<NodeId>,
    /// Learner ids, ascending.
    pub learners: Vec<NodeId>,
    /// On the leader: each replica's matched log index (`None` = nothing
    /// matched yet); `None` on followers.
    pub replication: Option<BTreeMap<NodeId, Option<u64>>>,
    /// Last committed index this replica knows of (0 = none).
    pub committed: u64,
    /// Index of the last purged log entry, if any.
    pub purged: Option<u64>,
    /// Index of the last entry in the latest snapshot, if any.
    pub snapshot: Option<u64>,
}

/// Builds (and removes) the state machine of a replica hosted at runtime
/// (`HostShard`, moves). Implemented by the ingester role per backend.
pub trait ShardOpener<S: ShardData>: Send + Sync + 'static {
    /// A fresh or recovered state machine of `shard` on this node (blocking IO allowed).
    fn open(&self, shard: ShardId) -> Result<ShardStateMachine<S>, BoxError>;
    /// Deletes `shard`'s state on this node (its replica was dropped).
    fn remove(&self, shard: ShardId) -> Result<(), BoxError>;
}

/// A boxed error of a [`ShardOpener`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// [`ShardOpener`] of in-memory replicas (tests, benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemOpener;

impl ShardOpener<MemShardData> for MemOpener {
    fn open(&self, _: ShardId) -> Result<ShardStateMachine<MemShardData>, BoxError> {
        Ok(ShardStateMachine::new(Arc::new(MemShardData::new())))
    }

    fn remove(&self, _: ShardId) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Raft timing the host uses unless told otherwise: 100 ms heartbeats and
/// 500–1000 ms election timeouts (a lost leader is replaced in about 1 s).
pub fn default_raft_config() -> Config {
    Config {
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..Default::default()
    }
}

/// Raft timing of a cluster whose leaders heartbeat every `heartbeat`
/// (clamped to 10 ms – 60 s; `ClusterConfig::validate` rejects values
/// outside): election timeouts of 4–8 heartbeats, so a lost leader
/// is replaced after its lease (8 heartbeats) plus one election timeout.
/// Every heartbeat is an `AppendEntries` per shard and follower, so on a
/// node with many shards it is most of the idle CPU.
///
/// openraft's own per-shard heartbeat timer is off: each shard's timer runs
/// at its own phase, so the heartbeats of a node's shards to one peer went
/// out as separate gRPC calls. [`ShardHost::spawn_heartbeats`] must run on
/// every node using this timing; it fires the heartbeats of all the shards
/// the node leads at the same instant, so they share one `AppendBatch` call
/// per peer.
pub fn raft_timing(heartbeat: Duration) -> Config {
    let ms = (heartbeat.as_millis() as u64).clamp(10, 60_000);
    Config {
        heartbeat_interval: ms,
        election_timeout_min: ms * 4,
        election_timeout_max: ms * 8,
        enable_heartbeat: false,
        ..Default::default()
    }
}

/// The shard replicas of one ingester node.
pub struct ShardHost<S: ShardData + ShardQuery = HostData> {
    node_id: NodeId,
    addr: String,
    log_db: RaftLogDb,
    config: Arc<Config>,
    pool: ChannelPool,
    shards: RwLock<BTreeMap<ShardId, Arc<HostedShard<S>>>>,
    opener: Option<Arc<dyn ShardOpener<S>>>,
    /// Group-commit linger of the replicas opened from now on.
    write_linger: Duration,
    /// Push calls in progress on this node (see [`PushLoad`]).
    push_load: Arc<PushLoad>,
    /// Serialises host/drop/move and the hosted-set record.
    admin: tokio::sync::Mutex<()>,
}

impl<S: ShardData + ShardQuery> ShardHost<S> {
    /// A host with no shards yet. `addr` is this node's gRPC address
    /// (`host:port`, as peers reach it); `config` must be validated.
    pub fn new(
        node_id: NodeId,
        addr: impl Into<String>,
        log_db: RaftLogDb,
        config: Arc<Config>,
    ) -> Self {
        Self {
            node_id,
            addr: addr.into(),
            log_db,
            config,
            pool: ChannelPool::new(),
            shards: RwLock::new(BTreeMap::new()),
            opener: None,
            write_linger: Duration::ZERO,
            push_load: Arc::default(),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// This host, able to host and drop replicas at runtime with `opener`.
    pub fn with_opener(mut self, opener: Arc<dyn ShardOpener<S>>) -> Self {
        self.opener = Some(opener);
        self
    }

    /// This host, with writes to an idle shard replica it leads waiting
    /// `linger` for others to share their Raft entry (see [`GroupCommit`]).
    pub fn with_write_linger(mut self, linger: Duration) -> Self {
        self.write_linger = linger;
        self
    }

    /// Push calls in progress on this node; a push handler holds
    /// [`PushLoad::enter`] while it runs.
    pub fn push_load(&self) -> &PushLoad {
        &self.push_load
    }

    /// Starts the node's heartbeat ticker (for shards run with
    /// [`raft_timing`]): every `interval`, a heartbeat from each shard this
    /// node leads, all at once. Ends when the host is dropped.
    pub fn spawn_heartbeats(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()>
    where
        S: 'static,
    {
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { return };
                let shards: Vec<_> = host.shards.read().values().cloned().collect();
                for s in shards {
                    let leads = s.raft.metrics().borrow().state == openraft::ServerState::Leader;
                    if leads {
                        // Fails only once the shard's Raft has stopped.
                        let _ = s.raft.trigger().heartbeat().await;
                    }
                }
            }
        })
    }

    /// The node's Raft log DB.
    pub fn log_db(&self) -> &RaftLogDb {
        &self.log_db
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's gRPC address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The connection pool to peers (shared by every shard).
    pub fn pool(&self) -> &ChannelPool {
        &self.pool
    }

    /// Starts this node's replica of `shard` with the state machine `sm`
    /// (built by the caller: fresh with `ShardStateMachine::new`, or
    /// recovered from persisted state). Its log is read from the host's log
    /// DB, so a restart resumes where it stopped.
    pub async fn open_shard(
        &self,
        shard: ShardId,
        sm: ShardStateMachine<S>,
    ) -> Result<Arc<HostedShard<S>>, ShardHostError> {
        if self.shards.read().contains_key(&shard) {
            return Err(ShardHostError::DuplicateShard {
                shard,
                node: self.node_id,
            });
        }
        let network = GrpcNetworkFactory::new(shard, self.pool.clone());
        let data = Arc::clone(sm.data());
        let stats = Arc::clone(sm.stats());
        let raft = ShardRaft::new(
            self.node_id,
            Arc::clone(&self.config),
            network,
            self.log_db.shard(shard).with_stats(Arc::clone(&stats)),
            sm,
        )
        .await
        .map_err(|e| self.raft_err(shard, "start", e))?;
        stats.watch_leader_changes(&raft);
        let hosted = Arc::new(HostedShard {
            id: shard,
            raft,
            data,
            stats,
            writer: Arc::new(GroupCommit::new(self.write_linger, Arc::clone(&self.push_load))),
        });
        let mut shards = self.shards.write();
        if shards.contains_key(&shard) {
            return Err(ShardHostError::DuplicateShard {
                shard,
                node: self.node_id,
            });
        }
        shards.insert(shard, Arc::clone(&hosted));
        Ok(hosted)
    }

    /// The replica of `shard`, if hosted here.
    pub fn shard(&self, shard: ShardId) -> Option<Arc<HostedShard<S>>> {
        self.shards.read().get(&shard).cloned()
    }

    /// Ids of the hosted shards, ascending.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.shards.read().keys().copied().collect()
    }

    /// Initializes `shard`'s group with `members` (node id → gRPC address).
    /// Call on ONE member of a brand-new group.
    pub async fn initialize(
        &self,
        shard: ShardId,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<(), ShardHostError> {
        let hosted = self.shard(shard).ok_or(ShardHostError::UnknownShard {
            shard,
            node: self.node_id,
        })?;
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        hosted
            .raft
            .initialize(nodes)
            .await
            .map_err(|e| self.raft_err(shard, "initialize", e))
    }

    /// Raft state of every hosted shard, by shard id.
    pub fn status(&self) -> Vec<ShardStatus> {
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        shards
            .iter()
            .map(|s| shard_status(s))
            .collect()
    }

    /// Shards this node currently leads.
    pub fn led_shards(&self) -> Vec<ShardId> {
        self.status()
            .into_iter()
            .filter(|s| s.leader == Some(self.node_id))
            .map(|s| s.shard)
            .collect()
    }

    /// Stops every shard's Raft (the log DB is released when the host drops).
    pub async fn shutdown(&self) {
        let shards: Vec<_> = std::mem::take(&mut *self.shards.write())
            .into_values()
            .collect();
        for s in shards {
            if let Err(e) = s.raft.shutdown().await {
                tracing::warn!(shard = s.id, node = self.node_id, "raft shutdown: {e}");
            }
        }
    }

    pub(crate) fn raft_err(
        &self,
        shard: ShardId,
        op: &'static str,
        e: impl std::fmt::Display,
    ) -> ShardHostError {
        ShardHostError::Raft {
            shard,
            node: self.node_id,
            op,
            reason: e.to_string(),
        }
    }
}

/// The [`ShardStatus`] of one hosted replica, from its Raft metrics.
fn shard_status<S>(s: &HostedShard<S>) -> ShardStatus {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| (*id, (node.addr.clone(), voters.contains(id))))
        .collect();
    let learners = membership.learner_ids().collect();
    let replication = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, matched)| (*id, matched.map(|l| l.index))).collect());
    ShardStatus {
        members,
        voters,
        learners,
        replication,
        committed: s.stats.committed(),
        purged: m.purged.map(|l| l.index),
        snapshot: m.snapshot.map(|l| l.index),
        shard: s.id,
        leader: m.current_leader,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index),
        last_log: m.last_log_index,
    }
}

#[cfg(test)]
mod timing_tests {
    use super::raft_timing;
    use std::time::Duration;

    #[test]
    fn election_timeouts_are_four_to_eight_heartbeats_and_validate() {
        let c = raft_timing(Duration::from_millis(200));
        assert_eq!((c.heartbeat_interval, c.election_timeout_min, c.election_timeout_max), (200, 800, 1600));
        assert!(c.validate().is_ok());
        assert_eq!(raft_timing(Duration::ZERO).heartbeat_interval, 10, "floored at 10 ms");
    }
}
