//! The `Admin` service: host or drop a shard replica on this node, and move
//! a replica (run on the shard's leader). The HTTP admin API of the
//! ingester role calls it; see `ShardHost::move_replica`.

use super::convert::{LEADER_ADDR_KEY, LEADER_ID_KEY};
use super::server::IngesterService;
use crate::raft::ShardData;
use crate::shards::{ShardHostError, ShardQuery};
use aion_proto::ingester as pb;
use aion_proto::ingester::admin_server::Admin;
use tonic::{Request, Response, Status};

/// The gRPC status of a [`ShardHostError`]: NOT_FOUND (unknown shard, not
/// a voter), ALREADY_EXISTS (already a voter), FAILED_PRECONDITION with
/// leader metadata (not the leader), UNAVAILABLE (peer or Raft trouble,
/// catch-up timeout: retryable), INTERNAL (local storage).
pub fn host_error_status(e: ShardHostError) -> Status {
    let msg = e.to_string();
    match e {
        ShardHostError::UnknownShard { .. } | ShardHostError::NotAVoter { .. } => Status::not_found(msg),
        ShardHostError::AlreadyVoter { .. } | ShardHostError::DuplicateShard { .. } => Status::already_exists(msg),
        ShardHostError::NotLeader { leader, .. } => {
            let mut status = Status::failed_precondition(msg);
            if let Some((id, addr)) = leader {
                let md = status.metadata_mut();
                if let Ok(v) = id.to_string().parse() {
                    md.insert(LEADER_ID_KEY, v);
                }
                if let Ok(v) = addr.parse() {
                    md.insert(LEADER_ADDR_KEY, v);
                }
            }
            status
        }
        ShardHostError::Peer { .. } | ShardHostError::CatchUpTimeout { .. } | ShardHostError::Raft { .. } => {
            Status::unavailable(msg)
        }
        ShardHostError::Storage { .. } => Status::internal(msg),
    }
}

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> Admin for IngesterService<S> {
    async fn host_shard(&self, req: Request<pb::HostShardRequest>) -> Result<Response<pb::HostShardResponse>, Status> {
        let shard = req.into_inner().shard;
        let created = self.host.host_shard(shard).await.map_err(host_error_status)?;
        Ok(Response::new(pb::HostShardResponse { created }))
    }

    async fn drop_shard(&self, req: Request<pb::DropShardRequest>) -> Result<Response<pb::DropShardResponse>, Status> {
        let shard = req.into_inner().shard;
        let dropped = self.host.drop_shard(shard).await.map_err(host_error_status)?;
        Ok(Response::new(pb::DropShardResponse { dropped }))
    }

    async fn move_replica(
        &self,
        req: Request<pb::MoveReplicaRequest>,
    ) -> Result<Response<pb::MoveReplicaResponse>, Status> {
        let r = req.into_inner();
        if r.to_addr.is_empty() {
            return Err(Status::invalid_argument(format!("move of shard {}: to_addr is empty", r.shard)));
        }
        let voters = self
            .host
            .move_replica(r.shard, r.from_node, r.to_node, &r.to_addr)
            .await
            .map_err(host_error_status)?;
        Ok(Response::new(pb::MoveReplicaResponse { voters }))
    }
}
