//! The ingester's HTTP admin API (every ingester serves it):
//!
//! - `GET /admin/shards`: this node's shard replicas — leader, term,
//!   voters, learners, commit/apply/log positions and, on the leader, each
//!   replica's lag in entries (`null` on followers or before a first match).
//! - `POST /admin/shards/{shard}/move?from=A&to=B[&to_addr=host:port]`:
//!   moves the replica of `shard` on node A to node B (host → add learner →
//!   catch up → replace voter → drop on A); `from == to` re-adds a wiped
//!   replica. Runs on the shard's leader, found through any node's `Shards`
//!   RPC, via the `Admin` gRPC service. `to_addr` defaults to B's address in
//!   the configured ingester list. 404: unknown shard / node or A not a
//!   voter; 409: B already a voter; 503: no leader or a peer unreachable.

use super::backend::Backend;
use aion_ingester::raft::{NodeId, ShardId};
use aion_ingester::shards::ShardHost;
use aion_proto::ingester as pb;
use aion_proto::ingester::admin_client::AdminClient;
use aion_proto::ingester::ingester_client::IngesterClient;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest a whole move may take (catch-up included).
const MOVE_TIMEOUT: Duration = Duration::from_secs(90);

/// One row of `GET /admin/shards`.
#[derive(Debug, Serialize)]
struct ShardRow {
    shard: ShardId,
    /// Voters (kept under the historic name `replicas` too).
    replicas: Vec<NodeId>,
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
    leader: Option<NodeId>,
    term: u64,
    committed: u64,
    last_applied: Option<u64>,
    last_log: Option<u64>,
    purged: Option<u64>,
    snapshot: Option<u64>,
    /// Entries each member is behind this leader's log; `null` off the leader.
    lag: Option<BTreeMap<NodeId, Option<u64>>>,
}

/// Body of `GET /admin/shards`.
#[derive(Debug, Serialize)]
struct ShardsReport {
    node_id: NodeId,
    shards: Vec<ShardRow>,
}

/// Query of the move endpoint.
#[derive(Debug, Deserialize)]
struct MoveQuery {
    from: NodeId,
    to: NodeId,
    to_addr: Option<String>,
}

struct AdminState<B: Backend> {
    host: Arc<ShardHost<B>>,
    /// gRPC address of every configured ingester.
    addrs: BTreeMap<NodeId, String>,
}

type ApiError = (StatusCode, Json<serde_json::Value>);

fn api_error(code: StatusCode, msg: impl Into<String>) -> ApiError {
    (code, Json(serde_json::json!({ "status": "error", "error": msg.into() })))
}

/// The admin routes over `host`; `addrs` are the configured ingesters.
pub fn router<B: Backend>(host: Arc<ShardHost<B>>, addrs: BTreeMap<NodeId, String>) -> Router {
    let state = Arc::new(AdminState { host, addrs });
    Router::new()
        .route("/admin/shards", get(list::<B>))
        .route("/admin/shards/{shard}/move", post(move_replica::<B>))
        .with_state(state)
}

async fn list<B: Backend>(State(st): State<Arc<AdminState<B>>>) -> Json<ShardsReport> {
    let shards = st
        .host
        .status()
        .into_iter()
        .map(|s| {
            let last = s.last_log.unwrap_or(0);
            let lag = s.replication.as_ref().map(|r| {
                r.iter().map(|(id, m)| (*id, m.map(|m| last.saturating_sub(m)))).collect()
            });
            ShardRow {
                shard: s.shard,
                replicas: s.voters.clone(),
                voters: s.voters,
                learners: s.learners,
                leader: s.leader,
                term: s.term,
                committed: s.committed,
                last_applied: s.last_applied,
                last_log: s.last_log,
                purged: s.purged,
                snapshot: s.snapshot,
                lag,
            }
        })
        .collect();
    Json(ShardsReport { node_id: st.host.node_id(), shards })
}

async fn move_replica<B: Backend>(
    State(st): State<Arc<AdminState<B>>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<MoveQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let to_addr = match q.to_addr.clone().or_else(|| st.addrs.get(&q.to).cloned()) {
        Some(a) => a,
        None => {
            return Err(api_error(
                StatusCode::NOT_FOUND,
                format!("unknown node {}: not in the configured ingesters; pass to_addr=host:port", q.to),
            ))
        }
    };
    let mut last = api_error(StatusCode::SERVICE_UNAVAILABLE, "no attempt made");
    for _attempt in 0..5 {
        let (leader, leader_addr) = find_leader(&st, shard).await?;
        let req = pb::MoveReplicaRequest { shard, from_node: q.from, to_node: q.to, to_addr: to_addr.clone() };
        let channel = st
            .host
            .pool()
            .channel(&leader_addr)
            .map_err(|e| api_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut request = tonic::Request::new(req);
        request.set_timeout(MOVE_TIMEOUT);
        match AdminClient::new(channel).move_replica(request).await {
            Ok(r) => {
                let voters = r.into_inner().voters;
                tracing::info!(shard, from = q.from, to = q.to, leader, ?voters, "moved shard replica");
                return Ok(Json(serde_json::json!({ "status": "success", "shard": shard, "leader": leader, "voters": voters })));
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                last = api_error(StatusCode::SERVICE_UNAVAILABLE, s.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(status_to_http(&s)),
        }
    }
    Err(last)
}

fn status_to_http(s: &tonic::Status) -> ApiError {
    let code = match s.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists => StatusCode::CONFLICT,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::FailedPrecondition => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(code, s.message())
}

/// The shard's leader (id, gRPC address): from this node's replica if it
/// knows one, else from the `Shards` RPC of every configured ingester.
async fn find_leader<B: Backend>(st: &AdminState<B>, shard: ShardId) -> Result<(NodeId, String), ApiError> {
    let local = st.host.status().into_iter().find(|s| s.shard == shard);
    if let Some(s) = &local {
        if let Some((l, (addr, _))) = s.leader.and_then(|l| s.members.get(&l).map(|m| (l, m.clone()))) {
            return Ok((l, addr));
        }
    }
    let mut hosted_somewhere = local.is_some();
    for (id, addr) in &st.addrs {
        if *id == st.host.node_id() {
            continue;
        }
        let Ok(channel) = st.host.pool().channel(addr) else { continue };
        let mut req = tonic::Request::new(pb::ShardsRequest {});
        req.set_timeout(Duration::from_secs(2));
        let Ok(resp) = IngesterClient::new(channel).shards(req).await else { continue };
        for info in resp.into_inner().shards.into_iter().filter(|i| i.shard == shard) {
            hosted_somewhere = true;
            let leader = info
                .leader_id
                .and_then(|l| info.replicas.iter().find(|r| r.node_id == l).map(|r| (l, r.grpc_address.clone())));
            if let Some(found) = leader {
                return Ok(found);
            }
        }
    }
    if hosted_somewhere {
        Err(api_error(StatusCode::SERVICE_UNAVAILABLE, format!("shard {shard} has no leader right now; retry")))
    } else {
        Err(api_error(StatusCode::NOT_FOUND, format!("unknown shard {shard}: no reachable ingester hosts it")))
    }
}
