//! The ingester side of aggregation pushdown: the querier crate's
//! `Pushdown` service reads a shard's applied data through this
//! [`ShardSource`], after the same leadership check `Select` makes, so a
//! pushed-down aggregation is as linearizable as a plain read.

use aion_ingester::grpc::convert::{LEADER_ADDR_KEY, LEADER_ID_KEY};
use aion_ingester::raft::ShardData;
use aion_ingester::shards::{ShardHost, ShardQuery};
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::storage::{Queryable, SelectHints, Series, StorageError};
use aion_model::tenant::TenantId;
use aion_querier::pushdown::service::ShardSource;
use openraft::BasicNode;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// How long a pushdown waits to confirm leadership.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A host's shards as pushdown data sources.
pub struct HostSource<S: ShardData + ShardQuery> {
    host: Arc<ShardHost<S>>,
}

impl<S: ShardData + ShardQuery> HostSource<S> {
    /// Over `host`'s shards.
    pub fn new(host: Arc<ShardHost<S>>) -> Self {
        Self { host }
    }
}

/// A shard's data as an owned [`Queryable`].
struct ShardData2<S>(Arc<S>);

impl<S: ShardQuery> Queryable for ShardData2<S> {
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.0.queryable().select(tenant, hints, matchers)
    }

    fn series(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        self.0.queryable().series(tenant, hints, matchers)
    }

    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.0.queryable().label_names(tenant, hints, matchers)
    }

    fn label_values(&self, tenant: &TenantId, name: &str, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.0.queryable().label_values(tenant, name, hints, matchers)
    }
}

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> ShardSource for HostSource<S> {
    async fn leader_data(&self, shard: u64) -> Result<Arc<dyn Queryable>, Status> {
        let me = self.host.node_id();
        let hosted = self
            .host
            .shard(shard)
            .ok_or_else(|| Status::not_found(format!("shard {shard} is not hosted on node {me}")))?;
        match tokio::time::timeout(READ_TIMEOUT, hosted.raft.ensure_linearizable()).await {
            Err(_) => Err(Status::unavailable(format!(
                "shard {shard}: leadership not confirmed within {READ_TIMEOUT:?} (no quorum reachable?); retry"
            ))),
            Ok(Ok(_)) => Ok(Arc::new(ShardData2(Arc::clone(&hosted.data)))),
            Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
                Some(f) => {
                    let (Some(id), Some(node)) = (f.leader_id, f.leader_node.as_ref()) else {
                        return Err(Status::unavailable(format!("shard {shard} has no leader (election in progress); retry")));
                    };
                    let mut status = Status::failed_precondition(format!(
                        "node {me} is not the leader of shard {shard}; leader is node {id} at {}",
                        node.addr
                    ));
                    if let Ok(v) = id.to_string().parse() {
                        status.metadata_mut().insert(LEADER_ID_KEY, v);
                    }
                    if let Ok(v) = node.addr.parse() {
                        status.metadata_mut().insert(LEADER_ADDR_KEY, v);
                    }
                    Err(status)
                }
                None => Err(Status::unavailable(format!("shard {shard}: {e}"))),
            },
        }
    }
}
