//! `AppendEntries` of every shard to one peer through a [`Coalescer`]: one
//! `Raft.AppendBatch` call in flight per peer, the requests queued meanwhile
//! (any shards) go together as the next call. A peer that answers
//! `UNIMPLEMENTED` (a build before `AppendBatch`) is sent unary
//! `AppendEntries` for [`LEGACY_RETRY`], then probed again.

use super::coalesce::{BatchSend, Coalescer, Limits};
use crate::raft::metrics::TransportStats;
use crate::raft::ShardId;
use aion_proto::ingester::raft_client::RaftClient;
use aion_proto::ingester::{RaftBatchRequest, RaftReply, RaftRequest};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long a peer that lacks `AppendBatch` is sent unary calls before it
/// is asked again (it may have been upgraded).
pub const LEGACY_RETRY: Duration = Duration::from_secs(30);

/// Bounds of one `AppendBatch`: far below the server's message limit, so a
/// catch-up of several shards at 300 entries each splits into calls.
const LIMITS: Limits = Limits { max_requests: 256, max_bytes: 64 << 20 };

/// One shard's encoded `AppendEntries` request and its deadline (openraft's
/// TTL for it).
pub struct AppendItem {
    /// Shard of the request.
    pub shard: ShardId,
    /// `wire::encode_append` bytes.
    pub payload: Vec<u8>,
    /// When the caller stops waiting.
    pub deadline: Instant,
}

/// A request's outcome: the peer's reply, or the gRPC status of the call
/// (a transport failure is every request's status).
pub type AppendResult = Result<RaftReply, Status>;

/// Whether the peer serves `AppendBatch`.
#[derive(Debug, Clone, Copy)]
enum Support {
    /// Not known yet: the next batch keeps copies for a unary resend.
    Unknown,
    /// It answered an `AppendBatch`.
    Yes,
    /// It answered `UNIMPLEMENTED`; unary until then.
    LegacyUntil(Instant),
}

/// The batched `AppendEntries` path to one peer (cheap to clone).
#[derive(Clone)]
pub struct AppendPeer {
    coalescer: Coalescer<AppendItem, AppendResult>,
    support: Arc<Mutex<Support>>,
}

impl AppendPeer {
    /// Starts the peer's coalescer on the current tokio runtime.
    pub fn spawn(channel: Channel, stats: Arc<TransportStats>) -> Self {
        let support = Arc::new(Mutex::new(Support::Unknown));
        let sender = AppendSender { client: RaftClient::new(channel), support: Arc::clone(&support), stats };
        Self { coalescer: Coalescer::spawn(sender, LIMITS), support }
    }

    /// True while the peer is known to lack `AppendBatch`: send unary.
    pub fn is_legacy(&self) -> bool {
        let mut s = self.support.lock();
        match *s {
            Support::LegacyUntil(t) if Instant::now() < t => true,
            Support::LegacyUntil(_) => {
                *s = Support::Unknown;
                false
            }
            _ => false,
        }
    }

    /// False once the coalescer stopped (its runtime shut down).
    pub fn is_running(&self) -> bool {
        self.coalescer.is_running()
    }

    /// Queues `item` for the next batch to the peer; `None` when the
    /// coalescer is gone.
    pub async fn call(&self, item: AppendItem) -> Option<AppendResult> {
        self.coalescer.call(item).await
    }
}

struct AppendSender {
    client: RaftClient<Channel>,
    support: Arc<Mutex<Support>>,
    stats: Arc<TransportStats>,
}

fn status_for_all(n: usize, status: &Status) -> Vec<AppendResult> {
    (0..n).map(|_| Err(Status::new(status.code(), status.message()))).collect()
}

impl AppendSender {
    /// Each item as its own unary `AppendEntries`, concurrently.
    async fn unary_all(&self, batch: Vec<AppendItem>) -> Vec<AppendResult> {
        let calls = batch.into_iter().map(|item| {
            let mut client = self.client.clone();
            let stats = Arc::clone(&self.stats);
            async move {
                let ttl = item.deadline.saturating_duration_since(Instant::now());
                let mut req = tonic::Request::new(RaftRequest { shard_id: item.shard, payload: item.payload });
                req.set_timeout(ttl);
                stats.rpc(false);
                match tokio::time::timeout(ttl, client.append_entries(req)).await {
                    Ok(r) => r.map(tonic::Response::into_inner),
                    Err(_) => Err(Status::deadline_exceeded("append-entries TTL elapsed")),
                }
            }
        });
        futures::future::join_all(calls).await
    }
}

impl BatchSend<AppendItem, AppendResult> for AppendSender {
    async fn send(&mut self, batch: Vec<AppendItem>) -> Vec<AppendResult> {
        let support = *self.support.lock();
        if matches!(support, Support::LegacyUntil(t) if Instant::now() < t) {
            return self.unary_all(batch).await;
        }
        let n = batch.len();
        // The call may run until the latest caller's deadline.
        let deadline = batch.iter().map(|i| i.deadline).max().unwrap_or_else(Instant::now);
        let ttl = deadline.saturating_duration_since(Instant::now());
        let copies: Option<Vec<AppendItem>> = matches!(support, Support::Unknown).then(|| {
            batch.iter().map(|i| AppendItem { shard: i.shard, payload: i.payload.clone(), deadline: i.deadline }).collect()
        });
        let requests = batch.into_iter().map(|i| RaftRequest { shard_id: i.shard, payload: i.payload }).collect();
        let mut req = tonic::Request::new(RaftBatchRequest { requests });
        req.set_timeout(ttl);
        self.stats.rpc(true);
        let outcome = match tokio::time::timeout(ttl, self.client.append_batch(req)).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("append-batch TTL elapsed")),
        };
        match outcome {
            Ok(reply) if reply.replies.len() == n => {
                *self.support.lock() = Support::Yes;
                reply.replies.into_iter().map(Ok).collect()
            }
            Ok(reply) => status_for_all(
                n,
                &Status::internal(format!("append-batch: {} replies to {n} requests", reply.replies.len())),
            ),
            Err(status) if status.code() == Code::Unimplemented => {
                *self.support.lock() = Support::LegacyUntil(Instant::now() + LEGACY_RETRY);
                match copies {
                    Some(items) => self.unary_all(items).await,
                    // Known to serve it until now (downgraded?): openraft retries, unary.
                    None => status_for_all(n, &status),
                }
            }
            Err(status) => status_for_all(n, &status),
        }
    }

    fn size(&self, item: &AppendItem) -> usize {
        item.payload.len() + 16
    }
}
