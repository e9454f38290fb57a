//! Metric metadata over the cluster: [`ClusterMetadata`] is the
//! distributor's [`MetadataWriter`] (each family's entries go to every
//! member of the shard its `(tenant, family)` hashes to, best effort) and
//! the query API's [`MetadataReader`] (every known ingester is asked, the
//! answers are unioned). Calls block on the runtime given at construction:
//! use them from blocking threads.

use super::ClusterClient;
use crate::grpc::metadata_service::{entry_from_pb, entry_to_pb};
use aion_model::metadata::{limit, MetadataByMetric, MetadataQuery, MetadataReader, MetadataWriter, MetricMetadata};
use aion_model::storage::StorageError;
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::metadata_client::MetadataClient;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

/// Time limit of one metadata call to one ingester.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Metadata reads and writes over the ingester cluster.
pub struct ClusterMetadata {
    client: ClusterClient,
    runtime: tokio::runtime::Handle,
}

impl ClusterMetadata {
    /// Over `client`'s cluster, running calls on `runtime`.
    pub fn new(client: ClusterClient, runtime: tokio::runtime::Handle) -> Self {
        Self { client, runtime }
    }

    /// The shard a family's metadata lives on.
    fn shard_of(&self, tenant: &TenantId, metric: &str) -> u64 {
        let mut key = Vec::with_capacity(tenant.as_str().len() + metric.len() + 1);
        key.extend_from_slice(tenant.as_str().as_bytes());
        key.push(0xff);
        key.extend_from_slice(metric.as_bytes());
        xxh3_64(&key) % self.client.shard_count().max(1)
    }

    async fn write_async(&self, tenant: &TenantId, items: Vec<MetricMetadata>) -> Result<(), StorageError> {
        if self.client.shard_map().shard_ids().is_empty() {
            self.client.refresh().await;
        }
        // Group entries by destination ingester.
        let mut by_addr: BTreeMap<String, Vec<pb::MetricMetadataEntry>> = BTreeMap::new();
        for m in &items {
            let shard = self.shard_of(tenant, &m.metric);
            for addr in self.client.route(shard).map(|r| r.candidates()).unwrap_or_default() {
                by_addr.entry(addr).or_default().push(entry_to_pb(m));
            }
        }
        if by_addr.is_empty() {
            return Err(StorageError::Unavailable("metadata: no ingester known (shard map empty)".into()));
        }
        let calls = by_addr.into_iter().map(|(addr, metadata)| {
            let req = pb::WriteMetadataRequest { tenant: tenant.to_string(), metadata };
            async move {
                let channel = self.client.channel(&addr).map_err(|e| e.to_string())?;
                let mut client = MetadataClient::new(channel);
                match tokio::time::timeout(CALL_TIMEOUT, client.write(req)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) => Err(format!("{addr}: {}", s.message())),
                    Err(_) => Err(format!("{addr}: timed out")),
                }
            }
        });
        let results = futures::future::join_all(calls).await;
        // Best effort: one replica holding it is enough.
        if results.iter().any(Result::is_ok) {
            return Ok(());
        }
        let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        Err(StorageError::Unavailable(format!("metadata write failed on every replica: {}", why.join("; "))))
    }

    async fn read_async(&self, tenant: &TenantId, query: &MetadataQuery) -> Result<MetadataByMetric, StorageError> {
        if self.client.shard_map().shard_ids().is_empty() {
            self.client.refresh().await;
        }
        let addrs: BTreeSet<String> = self.client.shard_map().addresses();
        // Limits apply after the union; per-ingester answers are cut only per metric.
        let req = pb::ReadMetadataRequest {
            tenant: tenant.to_string(),
            metric: query.metric.clone().unwrap_or_default(),
            limit: -1,
            limit_per_metric: -1,
        };
        let calls = addrs.into_iter().map(|addr| {
            let req = req.clone();
            async move {
                let channel = self.client.channel(&addr).map_err(|e| e.to_string())?;
                let mut client = MetadataClient::new(channel);
                match tokio::time::timeout(CALL_TIMEOUT, client.read(req)).await {
                    Ok(Ok(r)) => Ok(r.into_inner().metadata),
                    Ok(Err(s)) => Err(format!("{addr}: {}", s.message())),
                    Err(_) => Err(format!("{addr}: timed out")),
                }
            }
        });
        let mut all = MetadataByMetric::new();
        let mut answered = 0;
        let mut errors = Vec::new();
        for r in futures::future::join_all(calls).await {
            match r {
                Ok(entries) => {
                    answered += 1;
                    for e in entries {
                        let m = entry_from_pb(e);
                        all.entry(m.metric.clone()).or_default().push(m);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if answered == 0 && !errors.is_empty() {
            return Err(StorageError::Unavailable(format!("metadata: no ingester answered: {}", errors.join("; "))));
        }
        Ok(limit(all, query))
    }
}

impl MetadataWriter for ClusterMetadata {
    fn write_metadata(&self, tenant: &TenantId, items: Vec<MetricMetadata>) -> Result<(), StorageError> {
        self.runtime.block_on(self.write_async(tenant, items))
    }
}

impl MetadataReader for ClusterMetadata {
    fn read_metadata(&self, tenant: &TenantId, query: &MetadataQuery) -> Result<MetadataByMetric, StorageError> {
        self.runtime.block_on(self.read_async(tenant, query))
    }
}
