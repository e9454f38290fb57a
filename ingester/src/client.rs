//! `ingester::client`: how other roles (distributor, querier, ruler) reach
//! the ingester cluster over gRPC, without knowing its internals.
//!
//! [`ClusterClient`] keeps a [`ShardMap`] — for every shard, its known
//! members (node id, gRPC address, voter or learner) and current leader —
//! learned by asking every known ingester for the shards it hosts (the
//! `Shards` RPC) and merging the answers, highest term first. The map is
//! refreshed periodically ([`ClusterClient::spawn_refresher`]) and on demand
//! after a routing failure; `NotLeader` redirects update it in between.
//! Seeds are the configured ingesters; members learned from group
//! memberships (e.g. a replica moved to a new ingester) are asked too.
//!
//! The write path (shard push with leader cache and retries) and the read
//! path (streaming select with replica fail-over) live in sibling files.

mod metrics;
pub mod placement;
mod pre_encoded;
mod push;
mod pushdown;
mod metadata;
mod router;
mod select;
mod shard_map;

pub use select::{merge_series, union_sorted, FanOutConfig, FanOutMetrics, FanOutQueryable};
pub use metrics::RouterMetrics;
pub use placement::ShardRing;
pub use metadata::ClusterMetadata;
pub use pushdown::{aggregate_node, aggregate_shard, NodePartial, ShardPartial};
pub use push::{PushReport, RetryPolicy};
pub use router::ShardRouter;
pub use shard_map::{ReplicaRoute, ShardMap, ShardRoute};

use aion_proto::limit_status::LimitHit;
use crate::raft::network::ChannelPool;
use crate::raft::{NodeId, ShardId};
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// Largest gRPC message the client sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = crate::grpc::server::MAX_MESSAGE_BYTES;

/// Errors of the cluster client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// An ingester address could not be turned into a channel.
    #[error("ingester address {addr:?} is not usable: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No ingester is known to host the shard (or none answered).
    #[error("shard {shard}: no reachable replica (is the ingester cluster up?)")]
    NoReplica {
        /// The shard.
        shard: ShardId,
    },
    /// The shard has no leader right now (election in progress or no quorum).
    #[error("shard {shard}: no leader ({reason}); retry")]
    NoLeader {
        /// The shard.
        shard: ShardId,
        /// The last error seen.
        reason: String,
    },
    /// An RPC failed with a gRPC status.
    #[error("shard {shard} on {addr}: {status}")]
    Rpc {
        /// The shard.
        shard: ShardId,
        /// The ingester called.
        addr: String,
        /// The gRPC status message (code and text).
        status: String,
        /// Whether retrying may succeed.
        retryable: bool,
    },
    /// The request ran out of time.
    #[error("shard {shard}: deadline of {deadline:?} exceeded ({last})")]
    Deadline {
        /// The shard.
        shard: ShardId,
        /// The deadline.
        deadline: Duration,
        /// The last error seen before it.
        last: String,
    },
    /// The ingester refused the request as invalid (not retryable).
    #[error("shard {shard}: request rejected: {reason}")]
    Invalid {
        /// The shard.
        shard: ShardId,
        /// The ingester's message.
        reason: String,
    },
    /// The ingester stopped a read at one of the query's limits (not retryable).
    #[error("shard {shard}: query limit {} exceeded ({} > {})", .hit.limit, .hit.value, .hit.max)]
    Limit {
        /// The shard.
        shard: ShardId,
        /// Which limit, its maximum and what passed it.
        hit: LimitHit,
    },
}

impl ClientError {
    /// Whether a retry (later, or on another replica) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadAddress { .. } | Self::Invalid { .. } | Self::Limit { .. } => false,
            Self::Rpc { retryable, .. } => *retryable,
            Self::NoReplica { .. } | Self::NoLeader { .. } | Self::Deadline { .. } => true,
        }
    }

    /// The error for gRPC `status` from `addr` about `shard`.
    pub fn from_status(shard: ShardId, addr: &str, status: &tonic::Status) -> Self {
        use tonic::Code;
        if let Some(hit) = LimitHit::from_status(status) {
            return Self::Limit { shard, hit };
        }
        match status.code() {
            Code::InvalidArgument => Self::Invalid { shard, reason: status.message().to_string() },
            code => Self::Rpc {
                shard,
                addr: addr.to_string(),
                status: format!("{code:?}: {}", status.message()),
                retryable: matches!(
                    code,
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::NotFound
                        | Code::FailedPrecondition
                        | Code::Aborted
                        | Code::Unknown
                        | Code::Cancelled
                ),
            },
        }
    }
}

/// Timing of the cluster client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// How often the shard map is refreshed in the background.
    pub refresh_interval: Duration,
    /// Timeout of one `Shards` call during a refresh.
    pub refresh_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self { refresh_interval: Duration::from_secs(5), refresh_timeout: Duration::from_secs(2) }
    }
}

/// A client of the whole ingester cluster; cheap to clone.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

struct Inner {
    seeds: Vec<String>,
    shard_count: u64,
    pool: ChannelPool,
    map: RwLock<ShardMap>,
    config: ClientConfig,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl ClusterClient {
    /// A client that discovers shards from the ingesters at `seeds`
    /// (gRPC `host:port`). `shard_count` is the cluster's number of shards
    /// (what series are hashed onto and queries fan out over).
    pub fn new(seeds: Vec<String>, shard_count: u64, config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                seeds,
                shard_count,
                pool: ChannelPool::new(),
                map: RwLock::new(ShardMap::default()),
                config,
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The cluster's number of shards (shard ids are `0..shard_count`).
    pub fn shard_count(&self) -> u64 {
        self.inner.shard_count
    }

    /// The client's configuration.
    pub fn config(&self) -> ClientConfig {
        self.inner.config
    }

    /// A copy of the current shard map.
    pub fn shard_map(&self) -> ShardMap {
        self.inner.map.read().clone()
    }

    /// The route of `shard` as currently known.
    pub fn route(&self, shard: ShardId) -> Option<ShardRoute> {
        self.inner.map.read().get(shard).cloned()
    }

    /// Records that `leader` at `addr` leads `shard` (from a NotLeader redirect).
    pub fn note_leader(&self, shard: ShardId, leader: NodeId, addr: &str) {
        self.inner.map.write().set_leader(shard, leader, addr);
    }

    /// Forgets `shard`'s leader (it failed or stepped down).
    pub fn forget_leader(&self, shard: ShardId) {
        self.inner.map.write().clear_leader(shard);
    }

    /// The shared channel to the ingester at `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        self.inner
            .pool
            .channel(addr)
            .map_err(|e| ClientError::BadAddress { addr: addr.to_string(), reason: e.to_string() })
    }

    /// An `Ingester` service client for `addr`, over the shared pool.
    pub fn ingester(&self, addr: &str) -> Result<IngesterClient<Channel>, ClientError> {
        let channel = self.channel(addr)?;
        Ok(IngesterClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Asks every known ingester for its shards and rebuilds the map.
    /// Concurrent callers share one refresh. Returns how many ingesters answered.
    pub async fn refresh(&self) -> usize {
        let _guard = self.inner.refresh_lock.lock().await;
        let mut addrs: BTreeSet<String> = self.inner.seeds.iter().cloned().collect();
        addrs.extend(self.inner.map.read().addresses());
        let calls = addrs.into_iter().map(|addr| {
            let this = self.clone();
            async move {
                let reply = this.shards_of(&addr).await;
                (addr, reply)
            }
        });
        let replies = futures::future::join_all(calls).await;
        let mut map = ShardMap::default();
        let mut answered = 0;
        for (addr, reply) in replies {
            match reply {
                Ok(r) => {
                    answered += 1;
                    map.merge(&addr, r);
                }
                Err(e) => tracing::debug!(addr = %addr, error = %e, "ingester did not answer Shards"),
            }
        }
        if answered > 0 {
            *self.inner.map.write() = map;
        }
        answered
    }

    async fn shards_of(&self, addr: &str) -> Result<pb::ShardsResponse, ClientError> {
        let mut client = self.ingester(addr)?;
        let call = client.shards(pb::ShardsRequest {});
        match tokio::time::timeout(self.inner.config.refresh_timeout, call).await {
            Err(_) => Err(ClientError::Rpc {
                shard: 0,
                addr: addr.to_string(),
                status: "Shards timed out".into(),
                retryable: true,
            }),
            Ok(Err(s)) => Err(ClientError::from_status(0, addr, &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Refreshes now, then every `refresh_interval` until the client's last
    /// clone is dropped. Call from within a tokio runtime.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let client = ClusterClient { inner };
                client.refresh().await;
                let every = client.inner.config.refresh_interval;
                drop(client);
                tokio::time::sleep(every).await;
            }
        })
    }
}

#[cfg(test)]
mod push_test;
