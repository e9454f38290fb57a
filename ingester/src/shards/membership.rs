//! Moving a shard replica between ingesters, run on the shard's leader:
//! ask the target to host an empty replica → add it as learner → wait until
//! it caught up (log or snapshot) → replace the old voter by it (joint
//! consensus) → tell the old node to drop its replica. With `from == to` the
//! replica is re-added instead (a wiped node): it is first removed from the
//! voters, so it never votes with a forgotten vote, then added back.

use super::{ShardHost, ShardHostError, ShardQuery};
use crate::raft::{NodeId, ShardData, ShardId};
use aion_proto::ingester::admin_client::AdminClient;
use aion_proto::ingester::{DropShardRequest, HostShardRequest};
use openraft::BasicNode;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Longest a new learner may take to catch up before a move gives up.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of one admin call to a peer.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(20);

impl<S: ShardData + ShardQuery> ShardHost<S> {
    /// Moves `shard`'s voter `from` to `to` (gRPC address `to_addr`); see the
    /// module doc. Returns the voters afterwards. Must run on the leader.
    pub async fn move_replica(
        &self,
        shard: ShardId,
        from: NodeId,
        to: NodeId,
        to_addr: &str,
    ) -> Result<Vec<NodeId>, ShardHostError> {
        let (voters, old) = {
            let _guard = self.admin.lock().await;
            self.move_under_lock(shard, from, to, to_addr).await?
        };
        if let Some((old, old_addr)) = old {
            if old == self.node_id {
                self.drop_shard(shard).await?;
            } else {
                self.peer_drop(shard, old, &old_addr).await?;
            }
        }
        Ok(voters)
    }

    /// The move up to the membership change; returns the voters and the
    /// replica (id, address) left to drop.
    async fn move_under_lock(
        &self,
        shard: ShardId,
        from: NodeId,
        to: NodeId,
        to_addr: &str,
    ) -> Result<(Vec<NodeId>, Option<(NodeId, String)>), ShardHostError> {
        let status = super::shard_status(&*self.hosted(shard)?);
        if status.leader != Some(self.node_id) {
            let leader = status
                .leader
                .and_then(|l| status.members.get(&l).map(|(a, _)| (l, a.clone())));
            return Err(ShardHostError::NotLeader { shard, node: self.node_id, leader });
        }
        let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
        if !voters.contains(&from) {
            return Err(ShardHostError::NotAVoter { shard, node: from, voters: status.voters });
        }
        if from != to && voters.contains(&to) {
            return Err(ShardHostError::AlreadyVoter { shard, node: to });
        }
        if from == to {
            let without: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != from).collect();
            self.change_voters(shard, without).await?;
            tracing::info!(shard, node = from, "removed replica from voters before re-adding it");
        }
        self.peer_host(shard, to, to_addr).await?;
        let raft = &self.hosted(shard)?.raft;
        let added = raft
            .add_learner(to, BasicNode::new(to_addr), false)
            .await
            .map_err(|e| self.raft_err(shard, "add_learner", e))?;
        tracing::info!(shard, learner = to, "added learner; waiting for it to catch up");
        self.wait_caught_up(shard, to, added.log_id.index).await?;
        let mut new_voters: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != from).collect();
        new_voters.insert(to);
        self.change_voters(shard, new_voters.clone()).await?;
        tracing::info!(shard, from, to, voters = ?new_voters, "replica moved");
        let old = (from != to).then(|| {
            let addr = status.members.get(&from).map(|(a, _)| a.clone()).unwrap_or_default();
            (from, addr)
        });
        Ok((new_voters.into_iter().collect(), old))
    }

    /// Replaces the voters (removed voters leave the group entirely).
    async fn change_voters(&self, shard: ShardId, voters: BTreeSet<NodeId>) -> Result<(), ShardHostError> {
        let raft = &self.hosted(shard)?.raft;
        raft.change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| self.raft_err(shard, "change_membership", e))
    }

    /// Waits until the leader has replicated up to `index` to `learner`.
    async fn wait_caught_up(&self, shard: ShardId, learner: NodeId, index: u64) -> Result<(), ShardHostError> {
        let started = Instant::now();
        loop {
            let status = super::shard_status(&*self.hosted(shard)?);
            let matched = status.replication.as_ref().and_then(|r| r.get(&learner).copied().flatten());
            if matched.is_some_and(|m| m >= index) {
                return Ok(());
            }
            if status.leader != Some(self.node_id) {
                return Err(ShardHostError::NotLeader { shard, node: self.node_id, leader: None });
            }
            if started.elapsed() > CATCH_UP_TIMEOUT {
                return Err(ShardHostError::CatchUpTimeout { shard, node: learner, waited: CATCH_UP_TIMEOUT });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn admin_client(&self, shard: ShardId, peer: NodeId, addr: &str, op: &'static str) -> Result<AdminClient<tonic::transport::Channel>, ShardHostError> {
        let ch = self.pool.channel(addr).map_err(|e| ShardHostError::Peer {
            shard,
            peer,
            addr: addr.to_string(),
            op,
            reason: e.to_string(),
        })?;
        Ok(AdminClient::new(ch))
    }

    fn peer_err(shard: ShardId, peer: NodeId, addr: &str, op: &'static str, e: impl std::fmt::Display) -> ShardHostError {
        ShardHostError::Peer { shard, peer, addr: addr.to_string(), op, reason: e.to_string() }
    }

    async fn peer_host(&self, shard: ShardId, peer: NodeId, addr: &str) -> Result<(), ShardHostError> {
        let mut c = self.admin_client(shard, peer, addr, "HostShard")?;
        let mut req = tonic::Request::new(HostShardRequest { shard });
        req.set_timeout(PEER_CALL_TIMEOUT);
        c.host_shard(req).await.map_err(|e| Self::peer_err(shard, peer, addr, "HostShard", e))?;
        Ok(())
    }

    async fn peer_drop(&self, shard: ShardId, peer: NodeId, addr: &str) -> Result<(), ShardHostError> {
        let mut c = self.admin_client(shard, peer, addr, "DropShard")?;
        let mut req = tonic::Request::new(DropShardRequest { shard });
        req.set_timeout(PEER_CALL_TIMEOUT);
        c.drop_shard(req).await.map_err(|e| Self::peer_err(shard, peer, addr, "DropShard", e))?;
        Ok(())
    }
}
