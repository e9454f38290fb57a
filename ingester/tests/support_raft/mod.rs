//! Shared Raft test helpers: an in-process network (direct calls between
//! `ShardRaft` instances registered in a [`Router`]; a missing node is
//! unreachable) and cluster config.

#![allow(dead_code, clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use aion_ingester::raft::{ShardRaft, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Which Raft instances are up; a missing node is unreachable.
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, ShardRaft>>>,
}

impl Router {
    fn get(&self, id: u64) -> Option<ShardRaft> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }

    /// Registers (`Some`) or unplugs (`None`) node `id`.
    pub fn set(&self, id: u64, raft: Option<ShardRaft>) {
        let mut nodes = self.nodes.lock().unwrap();
        match raft {
            Some(r) => nodes.insert(id, r),
            None => nodes.remove(&id),
        };
    }
}

/// A client of one target node.
pub struct Conn {
    router: Router,
    target: u64,
}

impl Conn {
    fn raft(&self) -> Result<ShardRaft, Unreachable> {
        self.router.get(self.target).ok_or_else(|| {
            let e = std::io::Error::other(format!("node {} is down", self.target));
            Unreachable::new(&e)
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Conn {
        Conn {
            router: self.clone(),
            target,
        }
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Fast timeouts; a snapshot every `snapshot_every` entries, log purged right behind it.
pub fn config(snapshot_every: u64) -> Arc<Config> {
    let c = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Arc::new(c.validate().unwrap())
}

/// Voters `ids` with their (unused) addresses.
pub fn members(ids: impl IntoIterator<Item = u64>) -> BTreeMap<u64, BasicNode> {
    ids.into_iter()
        .map(|i| (i, BasicNode::new(format!("node-{i}"))))
        .collect()
}
