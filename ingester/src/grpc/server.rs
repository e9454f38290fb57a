//! The `Ingester` service (Push, Select, LabelNames, LabelValues) over a
//! [`ShardHost`], and [`serve`], which runs it with the `Raft` service.

use super::convert::{self, LEADER_ADDR_KEY, LEADER_ID_KEY};
use super::read_index::ReadIndexState;
use crate::raft::ShardData;
use crate::raft::{NodeId, ShardId, ShardWrite};
use crate::shards::{HostedShard, ShardHost, ShardQuery};
use aion_model::storage::StorageError;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_server::{Ingester, IngesterServer};
use aion_proto::ingester::admin_server::AdminServer;
use aion_proto::ingester::raft_server::RaftServer;
use aion_proto::ingester::read_index_server::ReadIndexServer;
use openraft::error::{ForwardToLeader, RaftError};
use openraft::BasicNode;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Largest gRPC message accepted or sent (Raft batches and snapshots).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Series per `SelectResponse` message.
pub const SERIES_PER_MESSAGE: usize = 64;

/// Time limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Longest a Push waits for its entry to commit and apply.
    pub write_timeout: Duration,
    /// Longest a read waits to confirm leadership.
    pub read_timeout: Duration,
    /// Serve linearizable reads under a leader lease, skipping the
    /// `ReadIndex.Confirm` round while it runs (see `read_index`). Default on.
    pub read_lease: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            write_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(3),
            read_lease: true,
        }
    }
}

/// Both gRPC services of one ingester, over its [`ShardHost`].
pub struct IngesterService<S: ShardData + ShardQuery> {
    pub(super) host: Arc<ShardHost<S>>,
    pub(super) config: ServerConfig,
    /// Read-index leases, counters and the startup vote hold, shared by clones.
    pub(super) reads: Arc<ReadIndexState>,
}

impl<S: ShardData + ShardQuery> Clone for IngesterService<S> {
    fn clone(&self) -> Self {
        Self {
            host: Arc::clone(&self.host),
            config: self.config,
            reads: Arc::clone(&self.reads),
        }
    }
}

impl<S: ShardData + ShardQuery> IngesterService<S> {
    /// The services of `host`.
    pub fn new(host: Arc<ShardHost<S>>, config: ServerConfig) -> Self {
        Self { host, config, reads: Arc::new(ReadIndexState::new()) }
    }

    pub(super) fn shard(&self, shard: ShardId) -> Result<Arc<HostedShard<S>>, Status> {
        self.host.shard(shard).ok_or_else(|| {
            Status::not_found(format!(
                "shard {shard} is not hosted on node {}",
                self.host.node_id()
            ))
        })
    }

    /// The hosted replica of `shard` once this node has confirmed it leads
    /// it and applied everything committed (a linearizable read may follow):
    /// NOT_FOUND when not hosted, FAILED_PRECONDITION with the leader's id and
    /// address on a follower, UNAVAILABLE without a confirmed quorum.
    pub async fn leader_shard(&self, shard: ShardId) -> Result<Arc<HostedShard<S>>, Status> {
        // The batched read index for one shard: a lease or one Confirm per
        // peer, falling back to `ensure_linearizable` as it does.
        match self.leader_shards(&[shard]).await.pop() {
            Some(r) => r,
            None => Err(no_leader(shard)),
        }
    }

    /// Confirms this node leads `shard` and has applied everything committed.
    pub(super) async fn linearize(&self, shard: &HostedShard<S>) -> Result<(), Status> {
        let wait = tokio::time::timeout(self.config.read_timeout, shard.raft.ensure_linearizable());
        match wait.await {
            Err(_) => Err(Status::unavailable(format!(
                "shard {}: leadership not confirmed within {:?} (no quorum reachable?); retry",
                shard.id, self.config.read_timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
                Some(f) => Err(self.read_not_leader(shard.id, f)),
                None => Err(Status::unavailable(format!("shard {}: {e}", shard.id))),
            },
        }
    }

    fn read_not_leader(&self, shard: ShardId, f: &ForwardToLeader<NodeId, BasicNode>) -> Status {
        let Some((id, addr)) = leader_of(f) else {
            return no_leader(shard);
        };
        let mut status = Status::failed_precondition(format!(
            "node {} is not the leader of shard {shard}; leader is node {id} at {addr}",
            self.host.node_id()
        ));
        let md = status.metadata_mut();
        if let Ok(v) = id.to_string().parse() {
            md.insert(LEADER_ID_KEY, v);
        }
        if let Ok(v) = addr.parse() {
            md.insert(LEADER_ADDR_KEY, v);
        }
        status
    }

    /// Runs a read of the shard's data on a blocking thread, after confirming leadership.
    async fn read<T, F>(&self, shard: ShardId, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn aion_model::storage::Queryable) -> Result<T, StorageError> + Send + 'static,
    {
        self.read_with(shard, false, f).await
    }

    /// Commits `write` through the shard's Raft (leader only) and answers
    /// like Push: the apply summary, NotLeader, or UNAVAILABLE on timeout.
    async fn commit_write(
        &self,
        shard: Arc<HostedShard<S>>,
        write: ShardWrite,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let write = tokio::time::timeout(self.config.write_timeout, shard.writer.write(&shard.raft, write));
        let started = std::time::Instant::now();
        let written = write.await;
        if matches!(written, Ok(Ok(_))) {
            shard.stats.observe_commit(started.elapsed());
        }
        let outcome = match written {
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "shard {}: write not committed within {:?} (no quorum of replicas reachable?); \
                     it may still commit, retrying is safe",
                    shard.id, self.config.write_timeout
                )))
            }
            Ok(Ok(r)) => pb::push_response::Outcome::Ok(pb::PushResult {
                appended: r.appended,
                duplicates_ignored: r.duplicates_ignored,
                rejected: r.rejected,
                messages: r.messages,
            }),
            Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
                Some(f) => {
                    let (leader_id, leader_addr) =
                        leader_of(f).ok_or_else(|| no_leader(shard.id))?;
                    pb::push_response::Outcome::NotLeader(pb::NotLeader {
                        leader_id,
                        leader_addr,
                    })
                }
                None => return Err(write_error(shard.id, e)),
            },
        };
        Ok(Response::new(pb::PushResponse {
            outcome: Some(outcome),
        }))
    }

    /// One shard's `PushEncoded`: validated, named by ref, committed.
    async fn push_encoded_one(&self, req: pb::PushEncodedRequest) -> Result<Response<pb::PushResponse>, Status> {
        let shard = self.shard(req.shard)?;
        let write = encoded_write(req, |t, p| shard.data.known_series(t, p))?;
        self.commit_write(shard, write).await
    }

    /// Like [`Self::read`]; with `follower_ok` a follower serves its applied
    /// state without confirming leadership (possibly stale).
    pub(super) async fn read_with<T, F>(&self, shard: ShardId, follower_ok: bool, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn aion_model::storage::Queryable) -> Result<T, StorageError> + Send + 'static,
    {
        let hosted = if follower_ok { self.shard(shard)? } else { self.leader_shard(shard).await? };
        read_hosted(hosted, f).await
    }
}

/// Runs a read of `hosted`'s data on a blocking thread (leadership, if
/// wanted, already confirmed).
pub(super) async fn read_hosted<S, T, F>(hosted: Arc<HostedShard<S>>, f: F) -> Result<T, Status>
where
    S: ShardData + ShardQuery,
    T: Send + 'static,
    F: FnOnce(&dyn aion_model::storage::Queryable) -> Result<T, StorageError> + Send + 'static,
{
    let shard = hosted.id;
    tokio::task::spawn_blocking(move || f(hosted.data.queryable()))
        .await
        .map_err(|e| Status::internal(format!("shard {shard}: read task failed: {e}")))?
        .map_err(|e| storage_status(shard, e))
}

/// A shard's Select answer as protobuf series, built on the read's blocking
/// thread: still-encoded series go out as stored chunks when the caller
/// clips them itself (`unclipped`), see [`convert::selected_to_pb`].
pub(super) fn select_pb(
    q: &dyn aion_model::storage::Queryable,
    tenant: &aion_model::tenant::TenantId,
    hints: &aion_model::storage::SelectHints,
    matchers: &[aion_model::matcher::Matcher],
    unclipped: bool,
) -> Result<Vec<pb::ChunkedSeries>, StorageError> {
    q.select_chunks(tenant, hints, matchers)?
        .iter()
        .map(|s| convert::selected_to_pb(s, hints, unclipped).map_err(|e| StorageError::Corruption(e.to_string())))
        .collect()
}

fn leader_of(f: &ForwardToLeader<NodeId, BasicNode>) -> Option<(NodeId, String)> {
    Some((f.leader_id?, f.leader_node.as_ref()?.addr.clone()))
}

fn no_leader(shard: ShardId) -> Status {
    Status::unavailable(format!(
        "shard {shard} has no leader (election in progress); retry"
    ))
}

pub(super) fn storage_status(shard: ShardId, e: StorageError) -> Status {
    match e {
        StorageError::Unavailable(_) => Status::unavailable(format!("shard {shard}: {e}")),
        StorageError::LimitExceeded { .. } => {
            Status::resource_exhausted(format!("shard {shard}: {e}"))
        }
        _ => Status::internal(format!("shard {shard}: {e}")),
    }
}

/// The log entry payload of a `PushEncoded`: its batch, validated, with the
/// series `known` finds (this replica's applied state) named by ref.
fn encoded_write(
    req: pb::PushEncodedRequest,
    known: impl FnOnce(&str, &[&[u8]]) -> Option<Vec<Option<u64>>>,
) -> Result<ShardWrite, Status> {
    let bad = |what: String| Status::invalid_argument(format!("shard {}: {what}", req.shard));
    if req.codec_version != u32::from(crate::raft::codec::FORMAT_VERSION) {
        return Err(bad(format!(
            "batch codec version {}, this ingester reads {}",
            req.codec_version,
            crate::raft::codec::FORMAT_VERSION
        )));
    }
    ShardWrite::from_client_named(bytes::Bytes::from(req.batch), known)
        .map_err(|e| bad(format!("invalid encoded batch: {e}")))
}

fn invalid(e: convert::ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The stream a `Select` answers with.
pub(super) type SelectStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> Ingester for IngesterService<S> {
    async fn shards(
        &self,
        _req: Request<pb::ShardsRequest>,
    ) -> Result<Response<pb::ShardsResponse>, Status> {
        let shards = self
            .host
            .status()
            .into_iter()
            .map(|s| pb::ShardInfo {
                shard: s.shard,
                leader_id: s.leader,
                term: s.term,
                replicas: s
                    .members
                    .into_iter()
                    .map(|(node_id, (grpc_address, voter))| pb::ShardReplica {
                        node_id,
                        grpc_address,
                        voter,
                    })
                    .collect(),
                last_applied: s.last_applied.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ShardsResponse {
            node_id: self.host.node_id(),
            shards,
        }))
    }

    async fn push(
        &self,
        req: Request<pb::PushRequest>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let _load = self.host.push_load().enter();
        let req = req.into_inner();
        let shard = self.shard(req.shard)?;
        let batch = convert::write_batch_from_pb(&req.tenant, req.series).map_err(invalid)?;
        // Series this replica's applied state holds go into the log by ref.
        let write = ShardWrite::from_batch(&batch).name_by_ref(|t, p| shard.data.known_series(t, p));
        self.commit_write(shard, write).await
    }

    async fn push_encoded(
        &self,
        req: Request<pb::PushEncodedRequest>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let _load = self.host.push_load().enter();
        self.push_encoded_one(req.into_inner()).await
    }

    /// Every shard batch committed concurrently, each answered as its own
    /// `PushEncoded` would be.
    async fn push_encoded_multi(
        &self,
        req: Request<pb::PushEncodedMultiRequest>,
    ) -> Result<Response<pb::PushEncodedMultiResponse>, Status> {
        let _load = self.host.push_load().enter();
        let calls = req.into_inner().shards.into_iter().map(|r| async move {
            let shard = r.shard;
            convert::shard_push_answer(shard, self.push_encoded_one(r).await)
        });
        let shards = futures::future::join_all(calls).await;
        Ok(Response::new(pb::PushEncodedMultiResponse { shards }))
    }


    type SelectStream = SelectStream;

    async fn select(
        &self,
        req: Request<pb::SelectRequest>,
    ) -> Result<Response<SelectStream>, Status> {
        let req = req.into_inner();
        if !req.shards.is_empty() {
            return self.select_shards(req).await;
        }
        let tenant = convert::tenant(&req.tenant).map_err(invalid)?;
        let matchers = convert::matchers_from_pb(&req.matchers).map_err(invalid)?;
        let hints = convert::hints(req.start_ms, req.end_ms).map_err(invalid)?;
        let unclipped = req.unclipped_chunks;
        let series = self
            .read_with(req.shard, req.allow_follower_read, move |q| {
                select_pb(q, &tenant, &hints, &matchers, unclipped)
            })
            .await?;
        let mut series = series.into_iter();
        let mut messages: Vec<Result<pb::SelectResponse, Status>> = Vec::new();
        loop {
            let batch: Vec<pb::ChunkedSeries> = series.by_ref().take(SERIES_PER_MESSAGE).collect();
            if batch.is_empty() {
                break;
            }
            messages.push(Ok(pb::SelectResponse { series: batch, ..Default::default() }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn label_names(
        &self,
        req: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        let req = req.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(invalid)?;
        let matchers = convert::matchers_from_pb(&req.matchers).map_err(invalid)?;
        let hints = convert::hints(req.start_ms, req.end_ms).map_err(invalid)?;
        let names = self
            .read(req.shard, move |q| {
                q.label_names(&tenant, &hints, &matchers)
            })
            .await?;
        Ok(Response::new(pb::LabelNamesResponse { names }))
    }

    async fn label_values(
        &self,
        req: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        let req = req.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(invalid)?;
        let matchers = convert::matchers_from_pb(&req.matchers).map_err(invalid)?;
        let hints = convert::hints(req.start_ms, req.end_ms).map_err(invalid)?;
        let name = req.name;
        let values = self
            .read(req.shard, move |q| {
                q.label_values(&tenant, &name, &hints, &matchers)
            })
            .await?;
        Ok(Response::new(pb::LabelValuesResponse { values }))
    }
}

fn write_error<E: std::error::Error>(shard: ShardId, e: RaftError<NodeId, E>) -> Status {
    match e {
        RaftError::Fatal(f) => Status::unavailable(format!(
            "shard {shard}: raft stopped: {f}; retry on another replica"
        )),
        RaftError::APIError(a) => Status::failed_precondition(format!("shard {shard}: {a}")),
    }
}

/// Serves both services of `host` on `listener` until `shutdown` resolves.
pub async fn serve<S: ShardData + ShardQuery>(
    host: Arc<ShardHost<S>>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(host, config, listener, shutdown, |r, _| r).await
}

/// [`serve`], plus the services `extend` adds to the router (the binary
/// adds ones implemented by other crates: metric metadata, aggregation
/// pushdown); `extend` gets the node's service, so an added service reads
/// shards through the same read index (one lease table per node).
pub async fn serve_with<S: ShardData + ShardQuery>(
    host: Arc<ShardHost<S>>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    extend: impl FnOnce(tonic::transport::server::Router, &IngesterService<S>) -> tonic::transport::server::Router,
) -> Result<(), tonic::transport::Error> {
    let svc = IngesterService::new(host, config);
    let extra = svc.clone();
    let ingester = IngesterServer::new(svc.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(svc.clone());
    let read_index = ReadIndexServer::new(svc.clone());
    let raft = RaftServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder()
        .add_service(ingester)
        .add_service(raft)
        .add_service(admin)
        .add_service(read_index);
    extend(router, &extra)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
