//! The `Raft` transport service: decodes a shard's openraft RPC (binary
//! `AppendEntries` per `raft/wire.rs`, or serde JSON), hands it to that
//! shard's Raft on this node and encodes the outcome (JSON). `AppendBatch`
//! carries several shards' `AppendEntries` in one call, answered in order.

use super::read_index::lease::VOTE_HOLD_MARGIN;
use super::read_index::LeaseTiming;
use super::server::IngesterService;
use crate::raft::{wire, ShardData};
use crate::shards::{HostedShard, ShardQuery};
use aion_proto::ingester::raft_server::Raft;
use aion_proto::ingester::{
    raft_reply, RaftBatchReply, RaftBatchRequest, RaftFailure, RaftReply, RaftRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Instant;
use tonic::{Request, Response, Status};

fn decode<T: DeserializeOwned>(req: &RaftRequest, what: &str) -> Result<T, Status> {
    serde_json::from_slice(&req.payload).map_err(|e| {
        Status::invalid_argument(format!(
            "shard {}: undecodable {what} request: {e}",
            req.shard_id
        ))
    })
}

fn encode_reply<T: Serialize, E: Serialize>(shard: u64, r: Result<T, E>) -> Result<RaftReply, Status> {
    let result = match r {
        Ok(v) => serde_json::to_vec(&v).map(raft_reply::Result::Ok),
        Err(e) => serde_json::to_vec(&e).map(raft_reply::Result::Error),
    }
    .map_err(|e| Status::internal(format!("shard {shard}: cannot encode raft reply: {e}")))?;
    Ok(RaftReply { result: Some(result) })
}

fn reply<T: Serialize, E: Serialize>(
    shard: u64,
    r: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    encode_reply(shard, r).map(Response::new)
}

impl<S: ShardData + ShardQuery> IngesterService<S> {
    /// One shard's `AppendEntries` (binary or JSON payload) on this node.
    async fn append_one(&self, req: RaftRequest) -> Result<RaftReply, Status> {
        let shard = self.shard(req.shard_id)?;
        let shard_id = req.shard_id;
        let rpc = if wire::is_binary_append(&req.payload) {
            wire::decode_append(bytes::Bytes::from(req.payload)).map_err(|e| {
                Status::invalid_argument(format!(
                    "shard {shard_id}: undecodable append-entries request: {e}"
                ))
            })?
        } else {
            decode(&req, "append-entries")?
        };
        encode_reply(shard_id, shard.raft.append_entries(rpc).await)
    }

    /// UNAVAILABLE while this service is younger than the shard's leader
    /// lease plus a margin and the shard's vote has a term: a node that
    /// restarted has lost when it last heard from its leader, which may
    /// still hold a read lease that counted on this node refusing other
    /// candidates (`read_index::lease`). A shard that never voted (term 0,
    /// a cluster's bootstrap) is not held.
    pub(super) async fn refuse_vote_in_hold(&self, shard: &HostedShard<S>) -> Result<(), Status> {
        let timing = LeaseTiming::of(shard.raft.config());
        if !self.reads.vote_hold.holds(&timing, Instant::now()) {
            return Ok(());
        }
        let term = shard.raft.with_raft_state(|st| st.vote_ref().leader_id.term).await;
        if matches!(term, Ok(0)) {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "shard {}: node {} started less than {:?} ago and grants no vote yet \
             (a leader's read lease may still count on it); retry",
            shard.id,
            self.host.node_id(),
            timing.leader_lease + VOTE_HOLD_MARGIN
        )))
    }
}

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> Raft for IngesterService<S> {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.append_one(req.into_inner()).await.map(Response::new)
    }

    /// Every request goes to its shard's Raft concurrently; a request that
    /// fails before reaching it is answered with its status as `failed`.
    async fn append_batch(
        &self,
        req: Request<RaftBatchRequest>,
    ) -> Result<Response<RaftBatchReply>, Status> {
        let calls = req.into_inner().requests.into_iter().map(|r| self.append_one(r));
        let replies = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|status| RaftReply {
                    result: Some(raft_reply::Result::Failed(RaftFailure {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    })),
                })
            })
            .collect();
        Ok(Response::new(RaftBatchReply { replies }))
    }

    /// Refused with UNAVAILABLE during the startup vote hold (see
    /// [`IngesterService::refuse_vote_in_hold`]); the candidate's round fails
    /// as if this node were unreachable and it retries after its timeout.
    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = req.into_inner();
        let shard = self.shard(req.shard_id)?;
        self.refuse_vote_in_hold(&shard).await?;
        let rpc = decode(&req, "vote")?;
        reply(req.shard_id, shard.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = req.into_inner();
        let shard = self.shard(req.shard_id)?;
        let rpc = decode(&req, "install-snapshot")?;
        reply(req.shard_id, shard.raft.install_snapshot(rpc).await)
    }
}
