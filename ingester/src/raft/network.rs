//! openraft's network over tonic gRPC: every shard's Raft RPCs to a peer go
//! through ONE cached [`Channel`] per peer address (HTTP/2 multiplexes the
//! calls), tagged with the shard id (`proto/aion/ingester.proto`, service
//! `Raft`). `AppendEntries` requests use the binary form of
//! [`wire`](super::wire); every other request and all responses are
//! openraft's serde types as JSON.
//!
//! Error mapping, so elections proceed when a peer is down: a connect
//! failure or gRPC `UNAVAILABLE` is [`Unreachable`] (openraft backs off), a
//! call exceeding its TTL is a [`Timeout`], anything else on the wire is a
//! [`NetworkError`], and an error the peer's Raft returned is a
//! [`RemoteError`].
//!
//! `AppendEntries` of all shards to one peer are coalesced
//! ([`append_batch`]): one `Raft.AppendBatch` call in flight per peer, the
//! requests that queue behind it go together as the next call, each caller
//! getting its own reply within its own TTL. Setting the environment
//! variable `AION_RAFT_APPEND_BATCH=off` sends every `AppendEntries` unary
//! (diagnostics; a peer without `AppendBatch` is detected by itself).

mod append_batch;
mod coalesce;

use super::metrics::TransportStats;
use super::{wire, NodeId, ShardId, TypeConfig};
use append_batch::{AppendItem, AppendPeer, AppendResult};
use aion_proto::ingester::raft_client::RaftClient;
use aion_proto::ingester::{raft_reply, RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// How long to wait for a TCP connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A transport failure, before it is mapped to an openraft error.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer address is not a valid URI.
    #[error("invalid peer address {addr:?}: {reason}")]
    BadAddress {
        /// The address as configured in the node.
        addr: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The peer could not be reached (refused, reset, unavailable).
    #[error("peer {addr} unreachable: {status}")]
    Unreachable {
        /// Peer address.
        addr: String,
        /// gRPC status the call ended with.
        status: String,
    },
    /// The call failed on the wire or the peer refused it.
    #[error("raft RPC to {addr} for shard {shard} failed: {status}")]
    Call {
        /// Peer address.
        addr: String,
        /// Shard of the call.
        shard: ShardId,
        /// gRPC status the call ended with.
        status: String,
    },
    /// A payload failed to (de)serialise.
    #[error("raft RPC payload for shard {shard}: {reason}")]
    Codec {
        /// Shard of the call.
        shard: ShardId,
        /// serde's message.
        reason: String,
    },
}

/// One lazily connected [`Channel`] per peer address, shared by every shard
/// of a host (cloning is cheap: the pool is reference counted), and the
/// per-peer `AppendEntries` coalescers.
#[derive(Clone)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    appends: Arc<Mutex<HashMap<String, AppendPeer>>>,
    stats: Arc<TransportStats>,
    batching: bool,
}

impl Default for ChannelPool {
    fn default() -> Self {
        let off = std::env::var("AION_RAFT_APPEND_BATCH").is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false"));
        Self::with_batching(!off)
    }
}

impl ChannelPool {
    /// An empty pool (append batching on unless `AION_RAFT_APPEND_BATCH=off`).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool; `batching` false sends every `AppendEntries` unary.
    pub fn with_batching(batching: bool) -> Self {
        Self {
            channels: Arc::default(),
            appends: Arc::default(),
            stats: Arc::default(),
            batching,
        }
    }

    /// Counters of this node's outgoing `AppendEntries` traffic.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.stats
    }

    /// The `AppendEntries` coalescer of `addr`, started on first use (on
    /// the current tokio runtime); `None` when batching is off.
    fn append_peer(&self, addr: &str) -> Result<Option<AppendPeer>, TransportError> {
        if !self.batching {
            return Ok(None);
        }
        let channel = self.channel(addr)?;
        let mut peers = self.appends.lock();
        if let Some(p) = peers.get(addr).filter(|p| p.is_running()) {
            return Ok(Some(p.clone()));
        }
        let peer = AppendPeer::spawn(channel, Arc::clone(&self.stats));
        peers.insert(addr.to_string(), peer.clone());
        Ok(Some(peer))
    }

    /// The channel to `addr` (`host:port`), created on first use. The
    /// channel reconnects by itself after the peer comes back.
    pub fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let bad = |reason: String| TransportError::BadAddress {
            addr: addr.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Number of distinct peers with a channel.
    pub fn len(&self) -> usize {
        self.channels.lock().len()
    }

    /// True when no channel was created yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The [`RaftNetworkFactory`] of one shard: clients to its peers over the
/// host's shared [`ChannelPool`].
#[derive(Clone)]
pub struct GrpcNetworkFactory {
    shard: ShardId,
    pool: ChannelPool,
}

impl GrpcNetworkFactory {
    /// The network of `shard`, over `pool`.
    pub fn new(shard: ShardId, pool: ChannelPool) -> Self {
        Self { shard, pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcNetwork {
        GrpcNetwork {
            shard: self.shard,
            target,
            addr: node.addr.clone(),
            client: self.pool.channel(&node.addr).map(RaftClient::new),
            appends: self.pool.append_peer(&node.addr).ok().flatten(),
            pool: self.pool.clone(),
        }
    }
}

/// A shard's client to one peer.
pub struct GrpcNetwork {
    shard: ShardId,
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, TransportError>,
    appends: Option<AppendPeer>,
    pool: ChannelPool,
}

/// Which RPC of the `Raft` service to call.
#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

// The error type is openraft's `RPCError`, fixed by the `RaftNetwork` trait.
#[allow(clippy::result_large_err)]
impl GrpcNetwork {
    fn codec_err<E: std::error::Error>(
        &self,
        e: serde_json::Error,
    ) -> RPCError<NodeId, BasicNode, E> {
        let err = TransportError::Codec {
            shard: self.shard,
            reason: e.to_string(),
        };
        RPCError::Network(NetworkError::new(&err))
    }

    /// Sends `req` as `rpc`, waiting at most `ttl`; decodes the reply.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = serde_json::to_vec(req).map_err(|e| self.codec_err(e))?;
        self.call_raw(rpc, payload, ttl).await
    }

    /// Sends an already encoded request `payload` as `rpc`; decodes the reply.
    async fn call_raw<Resp, E>(
        &mut self,
        rpc: Rpc,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let mut request = tonic::Request::new(RaftRequest {
            shard_id: self.shard,
            payload,
        });
        request.set_timeout(ttl);
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => return Err(self.timeout(rpc, ttl)),
            Ok(Err(status)) => return Err(self.status_err(rpc, ttl, status)),
            Ok(Ok(r)) => r.into_inner(),
        };
        self.decode(rpc, ttl, reply)
    }

    /// Sends an encoded `AppendEntries` through the peer's coalescer,
    /// waiting at most `ttl` (queueing included).
    async fn call_batched<Resp, E>(
        &self,
        peer: &AppendPeer,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let deadline = tokio::time::Instant::now() + ttl;
        let item = AppendItem { shard: self.shard, payload, deadline };
        let result: AppendResult = match tokio::time::timeout(ttl, peer.call(item)).await {
            Err(_) => return Err(self.timeout(Rpc::Append, ttl)),
            Ok(None) => Err(tonic::Status::unavailable("append coalescer stopped")),
            Ok(Some(r)) => r,
        };
        match result {
            Ok(reply) => self.decode(Rpc::Append, ttl, reply),
            Err(status) => Err(self.status_err(Rpc::Append, ttl, status)),
        }
    }

    /// Decodes a reply to `rpc` (a batch item's `failed` status maps as the
    /// same status of a unary call would).
    fn decode<Resp, E>(&self, rpc: Rpc, ttl: Duration, reply: RaftReply) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        match reply.result {
            Some(raft_reply::Result::Ok(b)) => {
                serde_json::from_slice(&b).map_err(|e| self.codec_err(e))
            }
            Some(raft_reply::Result::Error(b)) => {
                let e: RaftError<NodeId, E> =
                    serde_json::from_slice(&b).map_err(|e| self.codec_err(e))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Some(raft_reply::Result::Failed(f)) => {
                let status = tonic::Status::new(tonic::Code::from_i32(f.code), f.message);
                Err(self.status_err(rpc, ttl, status))
            }
            None => {
                let err = TransportError::Call {
                    addr: self.addr.clone(),
                    shard: self.shard,
                    status: "empty reply".into(),
                };
                Err(RPCError::Network(NetworkError::new(&err)))
            }
        }
    }

    fn timeout<E: std::error::Error>(
        &self,
        rpc: Rpc,
        ttl: Duration,
    ) -> RPCError<NodeId, BasicNode, E> {
        let action = match rpc {
            Rpc::Append => RPCTypes::AppendEntries,
            Rpc::Vote => RPCTypes::Vote,
            Rpc::Snapshot => RPCTypes::InstallSnapshot,
        };
        RPCError::Timeout(Timeout {
            action,
            id: 0,
            target: self.target,
            timeout: ttl,
        })
    }

    fn status_err<E: std::error::Error>(
        &self,
        rpc: Rpc,
        ttl: Duration,
        status: tonic::Status,
    ) -> RPCError<NodeId, BasicNode, E> {
        match status.code() {
            tonic::Code::Unavailable => {
                RPCError::Unreachable(Unreachable::new(&TransportError::Unreachable {
                    addr: self.addr.clone(),
                    status: status.to_string(),
                }))
            }
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => self.timeout(rpc, ttl),
            _ => RPCError::Network(NetworkError::new(&TransportError::Call {
                addr: self.addr.clone(),
                shard: self.shard,
                status: status.to_string(),
            })),
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.pool.stats.request(rpc.entries.len());
        let mut payload = Vec::with_capacity(256);
        wire::encode_append(&rpc, &mut payload);
        let ttl = option.hard_ttl();
        if self.appends.as_ref().is_some_and(|p| !p.is_running()) {
            // Its driver stopped (a runtime shut down): a fresh one.
            self.appends = self.pool.append_peer(&self.addr).ok().flatten();
        }
        match &self.appends {
            Some(peer) if !peer.is_legacy() => self.call_batched(peer, payload, ttl).await,
            _ => {
                self.pool.stats.rpc(false);
                self.call_raw(Rpc::Append, payload, ttl).await
            }
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod batch_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};
    use std::time::Instant;

    #[test]
    fn shards_share_one_channel_per_peer() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = ChannelPool::new();
            for shard in 0..8 {
                let mut f = GrpcNetworkFactory::new(shard, pool.clone());
                f.new_client(2, &BasicNode::new("127.0.0.1:1")).await;
                f.new_client(3, &BasicNode::new("127.0.0.1:2")).await;
            }
            assert_eq!(pool.len(), 2);
            let mut f = GrpcNetworkFactory::new(0, pool.clone());
            let bad = f.new_client(4, &BasicNode::new("not an address")).await;
            assert!(matches!(bad.client, Err(TransportError::BadAddress { .. })));
        });
    }

    /// A peer with nothing listening is Unreachable, quickly: openraft then
    /// backs off and the election proceeds with the other peers.
    #[test]
    fn a_down_peer_is_unreachable_not_a_hang() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut f = GrpcNetworkFactory::new(7, ChannelPool::new());
            let mut net = f.new_client(2, &BasicNode::new(format!("127.0.0.1:{port}"))).await;
            let vote = VoteRequest::new(Vote::new(1, 1), Some(LogId::new(CommittedLeaderId::new(1, 1), 3)));
            let t = Instant::now();
            let err = net
                .vote(vote, RPCOption::new(Duration::from_secs(5)))
                .await
                .unwrap_err();
            assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        });
    }
}
