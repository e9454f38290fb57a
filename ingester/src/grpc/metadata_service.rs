//! The `Metadata` gRPC service: an ingester's in-memory store of metric
//! metadata ([`MetadataStore`]), written by distributors and read by
//! queriers. Advisory data: not replicated through Raft (see
//! `aion_model::metadata`).

use aion_model::metadata::{MetadataQuery, MetadataReader, MetadataStore, MetadataWriter, MetricMetadata, MetricType};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::metadata_server::{Metadata, MetadataServer};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The service over one node's store.
#[derive(Clone)]
pub struct MetadataService {
    store: Arc<MetadataStore>,
}

impl MetadataService {
    /// The service over `store`.
    pub fn new(store: Arc<MetadataStore>) -> Self {
        Self { store }
    }

    /// As a tonic server.
    pub fn into_server(self) -> MetadataServer<Self> {
        MetadataServer::new(self)
    }
}

/// A protobuf entry as the model's.
pub fn entry_from_pb(e: pb::MetricMetadataEntry) -> MetricMetadata {
    MetricMetadata { metric: e.metric, kind: MetricType::from_remote_write(e.r#type), help: e.help, unit: e.unit }
}

/// The model's entry as protobuf.
pub fn entry_to_pb(m: &MetricMetadata) -> pb::MetricMetadataEntry {
    pb::MetricMetadataEntry { metric: m.metric.clone(), r#type: m.kind.to_remote_write(), help: m.help.clone(), unit: m.unit.clone() }
}

fn tenant(s: &str) -> Result<TenantId, Status> {
    TenantId::new(s).map_err(|e| Status::invalid_argument(format!("invalid tenant {s:?}: {e}")))
}

fn limit(v: i64) -> Option<usize> {
    (v >= 0).then_some(v as usize)
}

#[tonic::async_trait]
impl Metadata for MetadataService {
    async fn write(&self, req: Request<pb::WriteMetadataRequest>) -> Result<Response<pb::WriteMetadataResponse>, Status> {
        let r = req.into_inner();
        let t = tenant(&r.tenant)?;
        self.store
            .write_metadata(&t, r.metadata.into_iter().map(entry_from_pb).collect())
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::WriteMetadataResponse {}))
    }

    async fn read(&self, req: Request<pb::ReadMetadataRequest>) -> Result<Response<pb::ReadMetadataResponse>, Status> {
        let r = req.into_inner();
        let t = tenant(&r.tenant)?;
        let q = MetadataQuery {
            metric: (!r.metric.is_empty()).then_some(r.metric),
            limit: limit(r.limit),
            limit_per_metric: limit(r.limit_per_metric),
        };
        let all = self.store.read_metadata(&t, &q).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ReadMetadataResponse { metadata: all.values().flatten().map(entry_to_pb).collect() }))
    }
}
