//! The Prometheus HTTP query API (`query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, `status/buildinfo`, `format_query`, `parse_query`), served
//! under `/api/v1/` and `/prometheus/api/v1/`, GET and POST form bodies alike.

mod float;
pub mod metadata;
pub mod metric_metadata;
pub mod params;
pub mod query;
pub mod response;

use crate::engine::Engine;
use crate::limits::{QueryLimits, TenantQueryLimits};
use aion_model::storage::Queryable;
use aion_model::TenantId;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use response::ApiError;
use std::sync::Arc;

/// Most points a range query may return per series (as Prometheus).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Shared state of the query API.
pub struct QueryApi {
    /// The one PromQL engine.
    pub engine: Engine,
    /// Where series are read from (the local TSDB, or the cluster fan-out).
    pub storage: Arc<dyn Queryable>,
    /// When true, `X-Scope-OrgID` is required.
    pub multitenancy_enabled: bool,
    /// Where `/api/v1/metadata` reads metric metadata (none: always empty).
    pub metadata: Option<Arc<dyn aion_model::metadata::MetadataReader>>,
    /// Per-tenant query limits (defaults plus runtime overrides).
    pub limits: Arc<TenantQueryLimits>,
    requests: Family<Vec<(String, String)>, Counter>,
    limit_rejections: Family<Vec<(String, String)>, Counter>,
}

impl QueryApi {
    /// Builds the API state and registers its metrics.
    pub fn new(engine: Engine, storage: Arc<dyn Queryable>, multitenancy_enabled: bool, registry: &mut Registry) -> Self {
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("aion_query_api_requests", "Query API requests by endpoint and outcome", requests.clone());
        let limit_rejections = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "aion_query_limit_rejections",
            "Queries rejected by a per-tenant query limit, by tenant and reason (the limit's name)",
            limit_rejections.clone(),
        );
        let limits = Arc::new(TenantQueryLimits::default());
        Self { engine, storage, multitenancy_enabled, metadata: None, limits, requests, limit_rejections }
    }

    /// Applies per-tenant query `limits` (keep the value returned by
    /// `QuerierConfig::tenant_limits` here: it keeps its reloader running).
    pub fn with_limits(mut self, limits: Arc<TenantQueryLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// The engine for a tenant with `limits` (its samples limit and timeout).
    pub fn engine_for(&self, limits: &QueryLimits) -> Engine {
        Engine::new(limits.engine_options(self.engine.options()))
    }

    /// Counts one query of `tenant` rejected by the limit named `reason`.
    pub fn count_limit_rejection(&self, tenant: &TenantId, reason: &str) {
        self.limit_rejections
            .get_or_create(&vec![("tenant".into(), tenant.as_str().into()), ("reason".into(), reason.into())])
            .inc();
    }

    /// Serves `/api/v1/metadata` from `reader`.
    pub fn with_metadata(mut self, reader: Arc<dyn aion_model::metadata::MetadataReader>) -> Self {
        self.metadata = Some(reader);
        self
    }

    /// The tenant of a request.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        let v = headers.get("X-Scope-OrgID").and_then(|v| v.to_str().ok());
        TenantId::from_header(v, self.multitenancy_enabled).map_err(|e| match e {
            aion_model::ModelError::MissingTenant => ApiError::unauthorized(e.to_string()),
            _ => ApiError::bad_data(e.to_string()),
        })
    }

    /// Counts one request to `endpoint` with `outcome` (`success` or an error type).
    pub fn count(&self, endpoint: &str, outcome: &str) {
        self.requests
            .get_or_create(&vec![("endpoint".into(), endpoint.into()), ("outcome".into(), outcome.into())])
            .inc();
    }
}

/// The API routes under both path prefixes.
pub fn router(api: Arc<QueryApi>) -> Router {
    let v1 = Router::new()
        .route("/query", get(query::instant).post(query::instant))
        .route("/query_range", get(query::range).post(query::range))
        .route("/series", get(metadata::series).post(metadata::series))
        .route("/labels", get(metadata::labels).post(metadata::labels))
        .route("/label/{name}/values", get(metadata::label_values))
        .route("/status/buildinfo", get(metadata::buildinfo))
        .route("/metadata", get(metric_metadata::metadata).post(metric_metadata::metadata))
        .route("/format_query", get(query::format_query).post(query::format_query))
        .route("/parse_query", get(query::parse_query).post(query::parse_query))
        .with_state(api);
    Router::new().nest("/api/v1", v1.clone()).nest("/prometheus/api/v1", v1)
}
