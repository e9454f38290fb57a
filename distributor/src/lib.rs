//! Aion's distributor: the remote-write front door.
//!
//! It serves `POST /api/v1/push` (Mimir's path) and `POST /api/v1/write`
//! (Prometheus's path), decodes a snappy-block protobuf `WriteRequest`
//! (remote write 1.0) or, when `Content-Type` says
//! `proto=io.prometheus.write.v2.Request`, a 2.0 `Request` whose symbol
//! references are resolved into the same form (see [`remote_write::v2`]; 2.0
//! answers carry `X-Prometheus-Remote-Write-*-Written` headers),
//! resolves the tenant, validates every series against the Prometheus label
//! rules and the tenant's limits (defaults from the config, per-tenant
//! overrides from a runtime file re-read without restart: ingestion rate as a
//! token bucket → 429, active series per tenant and per metric → 400, sample
//! age and future skew → 400), and hands the admitted series as one
//! [`aion_model::storage::WriteBatch`] to an [`Appender`] (for now the local
//! TSDB; later the shard leaders over Raft). Invariants: bad input never
//! panics and never touches stored data — it gets a 4xx with a plain-text
//! reason; valid series of a request are stored even when another series is
//! invalid (the answer is then 400 naming the first invalid series); the
//! blocking [`Appender`] runs on tokio's blocking pool, never on a reactor
//! thread. Success is `204 No Content`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod active_series;
pub mod config;
pub mod error;
pub mod ha_tracker;
pub mod metrics;
pub mod overrides;
mod push;
pub mod rate_limit;
pub mod remote_write;
pub mod validation;

pub use config::{DistributorConfig, Limits};
pub use error::{DistributorError, Result};
pub use push::TENANT_HEADER;

use active_series::ActiveSeries;
use aion_model::storage::Appender;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use metrics::Metrics;
use overrides::TenantLimits;
use prometheus_client::registry::Registry;
use rate_limit::RateLimiter;
use std::sync::Arc;

/// The remote-write front door: config, the appender writes go to, metrics,
/// and the per-tenant limit state (limits with overrides, token buckets,
/// active series).
pub struct Distributor {
    cfg: DistributorConfig,
    appender: Arc<dyn Appender>,
    metrics: Metrics,
    limits: Arc<TenantLimits>,
    rate: RateLimiter,
    active: ActiveSeries,
    /// Where metric metadata from senders goes (none: counted only).
    metadata: Option<Arc<dyn aion_model::metadata::MetadataWriter>>,
    /// HA-pair deduplication, when enabled.
    ha: Option<Arc<ha_tracker::HaTracker>>,
}

impl std::fmt::Debug for Distributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributor").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Distributor {
    /// Shares HA elections with every distributor: reads them back from
    /// `store` (the cluster the appender writes to). Without it (or when HA
    /// dedupe is off) elections are local to this process.
    pub fn with_ha_store(mut self, store: Arc<dyn aion_model::storage::Queryable>) -> Self {
        if let Some(tracker) = self.ha.as_mut().and_then(Arc::get_mut) {
            tracker.set_store(store);
        }
        self
    }

    /// Stores the metric metadata senders report in `writer` (served by `/api/v1/metadata`).
    pub fn with_metadata(mut self, writer: Arc<dyn aion_model::metadata::MetadataWriter>) -> Self {
        self.metadata = Some(writer);
        self
    }

    /// Validates `cfg`, reads the overrides file (if any; an unreadable or
    /// invalid file is an error here), starts the task re-reading it every
    /// `overrides_period` (when called on a tokio runtime), and registers the
    /// distributor's metrics into `registry`.
    pub fn new(cfg: DistributorConfig, appender: Arc<dyn Appender>, registry: &mut Registry) -> Result<Self> {
        cfg.validate()?;
        let limits = Arc::new(TenantLimits::new(cfg.limits.clone()));
        if let Some(path) = &cfg.overrides_file {
            let n = limits.load_file(path)?;
            tracing::info!(path = %path.display(), tenants = n, "runtime overrides loaded");
            overrides::spawn_reloader(Arc::downgrade(&limits), path.clone(), cfg.overrides_period);
        }
        let metrics = Metrics::register(registry);
        let active = ActiveSeries::new(cfg.active_series_idle_timeout);
        let ha = cfg
            .ha_tracker
            .enabled
            .then(|| Arc::new(ha_tracker::HaTracker::new(cfg.ha_tracker.clone(), Arc::clone(&appender), registry)));
        Ok(Self { cfg, appender, metrics, limits, rate: RateLimiter::default(), active, metadata: None, ha })
    }

    /// The limits in force for `tenant` (its runtime override, else the defaults).
    pub fn limits_for(&self, tenant: &str) -> Arc<Limits> {
        self.limits.get(tenant)
    }

    /// Active series this distributor counts for `tenant` (see [`active_series`]).
    pub fn active_series(&self, tenant: &str) -> usize {
        self.active.count(tenant)
    }

    /// The configuration in force.
    pub fn config(&self) -> &DistributorConfig {
        &self.cfg
    }
}

/// The distributor's HTTP routes (`POST /api/v1/push`, `POST /api/v1/write`)
/// with state applied and the body limit layer installed; merge it into the
/// process's app.
pub fn router(d: Arc<Distributor>) -> Router {
    let limit = d.cfg.max_request_body_size;
    Router::new()
        .route("/api/v1/push", post(push::handle))
        .route("/api/v1/write", post(push::handle))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(d)
}

#[cfg(test)]
mod limits_test;
#[cfg(test)]
mod push_test;
#[cfg(test)]
mod push_v2_test;
