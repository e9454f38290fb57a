//! The ingester side of aggregation pushdown: the querier crate's
//! `Pushdown` service reads a shard's applied data through this
//! [`ShardSource`], after the same leadership check `Select` makes, so a
//! pushed-down aggregation is as linearizable as a plain read (a node's
//! shards confirmed in one round per peer, like a multi-shard `Select`).

use aion_ingester::grpc::IngesterService;
use aion_ingester::raft::ShardData;
use aion_ingester::shards::ShardQuery;
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::storage::{Queryable, SelectHints, SelectedSeries, Series, StorageError};
use aion_model::tenant::TenantId;
use aion_querier::pushdown::service::ShardSource;
use std::sync::Arc;
use tonic::Status;

/// A host's shards as pushdown data sources.
pub struct HostSource<S: ShardData + ShardQuery> {
    service: IngesterService<S>,
}

impl<S: ShardData + ShardQuery> HostSource<S> {
    /// Over the shards of the node's `service`, read through its read index
    /// (sharing its leader leases).
    pub fn new(service: IngesterService<S>) -> Self {
        Self { service }
    }
}

/// A shard's data as an owned [`Queryable`].
struct OwnedShardData<S>(Arc<S>);

impl<S: ShardQuery> Queryable for OwnedShardData<S> {
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.0.queryable().select(tenant, hints, matchers)
    }

    // Forwarded so the shard's engine decodes chunks lazily in its workers,
    // as in a single process (the default would decode every series first).
    fn select_chunks(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<SelectedSeries>, StorageError> {
        self.0.queryable().select_chunks(tenant, hints, matchers)
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
        let hosted = self.service.leader_shard(shard).await?;
        Ok(Arc::new(OwnedShardData(Arc::clone(&hosted.data))))
    }

    async fn leader_data_many(&self, shards: &[u64]) -> Vec<Result<Arc<dyn Queryable>, Status>> {
        let hosted = self.service.leader_shards(shards).await;
        hosted.into_iter().map(|h| h.map(|h| Arc::new(OwnedShardData(Arc::clone(&h.data))) as Arc<dyn Queryable>)).collect()
    }
}
