//! [`ShardMap`]: what the client knows of every shard's members and leader,
//! merged from the `Shards` answers of many ingesters.
//!
//! Merge rule: for each shard, the answer with the highest term wins (its
//! membership is the newest this client saw); a leader is taken from any
//! answer of that term that names one. A redirect (`NotLeader`) overrides
//! the leader until the next refresh.

use crate::raft::{NodeId, ShardId};
use aion_proto::ingester as pb;
use std::collections::{BTreeMap, BTreeSet};

/// One member of a shard's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRoute {
    /// Node id.
    pub node: NodeId,
    /// gRPC address.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// What the client knows of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardRoute {
    /// Highest term seen.
    pub term: u64,
    /// The leader (id, address), when known.
    pub leader: Option<(NodeId, String)>,
    /// Members of the group, by node id.
    pub replicas: Vec<ReplicaRoute>,
}

impl ShardRoute {
    /// Addresses to try, leader first, then the other voters, then learners.
    pub fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.replicas.len() + 1);
        if let Some((_, addr)) = &self.leader {
            out.push(addr.clone());
        }
        let voters = self.replicas.iter().filter(|r| r.voter);
        let learners = self.replicas.iter().filter(|r| !r.voter);
        for r in voters.chain(learners) {
            if !out.contains(&r.addr) {
                out.push(r.addr.clone());
            }
        }
        out
    }
}

/// Every shard's route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    shards: BTreeMap<ShardId, ShardRoute>,
}

impl ShardMap {
    /// The route of `shard`.
    pub fn get(&self, shard: ShardId) -> Option<&ShardRoute> {
        self.shards.get(&shard)
    }

    /// Shards with a known route, ascending.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.shards.keys().copied().collect()
    }

    /// Every member address in the map.
    pub fn addresses(&self) -> BTreeSet<String> {
        self.shards
            .values()
            .flat_map(|r| r.replicas.iter().map(|m| m.addr.clone()))
            .collect()
    }

    /// Folds in the `Shards` answer of the ingester at `addr`.
    pub fn merge(&mut self, addr: &str, reply: pb::ShardsResponse) {
        for info in reply.shards {
            let replicas: Vec<ReplicaRoute> = info
                .replicas
                .iter()
                .map(|r| ReplicaRoute { node: r.node_id, addr: r.grpc_address.clone(), voter: r.voter })
                .collect();
            let leader = info.leader_id.map(|id| {
                let addr = if id == reply.node_id {
                    addr.to_string()
                } else {
                    replicas.iter().find(|r| r.node == id).map(|r| r.addr.clone()).unwrap_or_default()
                };
                (id, addr)
            });
            let leader = leader.filter(|(_, a)| !a.is_empty());
            let route = self.shards.entry(info.shard).or_default();
            if info.term > route.term || route.replicas.is_empty() {
                route.term = info.term;
                route.replicas = replicas;
                route.leader = leader;
            } else if info.term == route.term && route.leader.is_none() {
                route.leader = leader;
            }
        }
    }

    /// Records a leader learned from a redirect.
    pub fn set_leader(&mut self, shard: ShardId, leader: NodeId, addr: &str) {
        let route = self.shards.entry(shard).or_default();
        route.leader = Some((leader, addr.to_string()));
        if !route.replicas.iter().any(|r| r.node == leader) {
            route.replicas.push(ReplicaRoute { node: leader, addr: addr.to_string(), voter: true });
        }
    }

    /// Forgets `shard`'s leader.
    pub fn clear_leader(&mut self, shard: ShardId) {
        if let Some(r) = self.shards.get_mut(&shard) {
            r.leader = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(shard: u64, leader: Option<u64>, term: u64, members: &[(u64, bool)]) -> pb::ShardInfo {
        pb::ShardInfo {
            shard,
            leader_id: leader,
            term,
            replicas: members
                .iter()
                .map(|&(n, voter)| pb::ShardReplica { node_id: n, grpc_address: format!("h{n}:1"), voter })
                .collect(),
            last_applied: 0,
        }
    }

    #[test]
    fn highest_term_wins_and_leader_comes_first() {
        let mut m = ShardMap::default();
        m.merge("h1:1", pb::ShardsResponse { node_id: 1, shards: vec![info(0, Some(1), 3, &[(1, true), (2, true), (3, true)])] });
        m.merge("h2:1", pb::ShardsResponse { node_id: 2, shards: vec![info(0, Some(2), 4, &[(2, true), (3, true), (4, false)])] });
        let r = m.get(0).unwrap();
        assert_eq!(r.term, 4);
        assert_eq!(r.leader, Some((2, "h2:1".to_string())));
        assert_eq!(r.candidates(), vec!["h2:1", "h3:1", "h4:1"]);
        // An older answer arriving later changes nothing.
        m.merge("h1:1", pb::ShardsResponse { node_id: 1, shards: vec![info(0, Some(1), 3, &[(1, true)])] });
        assert_eq!(m.get(0).unwrap().term, 4);
    }

    #[test]
    fn leader_filled_from_same_term_and_redirects() {
        let mut m = ShardMap::default();
        m.merge("h3:1", pb::ShardsResponse { node_id: 3, shards: vec![info(5, None, 2, &[(1, true), (3, true)])] });
        assert_eq!(m.get(5).unwrap().leader, None);
        m.merge("h1:1", pb::ShardsResponse { node_id: 1, shards: vec![info(5, Some(1), 2, &[(1, true), (3, true)])] });
        assert_eq!(m.get(5).unwrap().leader, Some((1, "h1:1".to_string())));
        m.set_leader(5, 3, "h3:1");
        assert_eq!(m.get(5).unwrap().candidates()[0], "h3:1");
        m.clear_leader(5);
        assert_eq!(m.get(5).unwrap().leader, None);
        assert_eq!(m.addresses().len(), 2);
    }
}
