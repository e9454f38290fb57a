//! Aion's distributor: the remote-write front door.
//!
//! It serves `POST /api/v1/push` (Mimir's path) and `POST /api/v1/write`
//! (Prometheus's path), decodes a snappy-block protobuf `WriteRequest`,
//! resolves the tenant, validates every series against the Prometheus label
//! rules and the configured limits, and hands the valid series as one
//! [`aion_model::storage::WriteBatch`] to an [`Appender`] (for now the local
//! TSDB; later the shard leaders over Raft). Invariants: bad input never
//! panics and never touches stored data — it gets a 4xx with a plain-text
//! reason; valid series of a request are stored even when another series is
//! invalid (the answer is then 400 naming the first invalid series); the
//! blocking [`Appender`] runs on tokio's blocking pool, never on a reactor
//! thread. Success is `204 No Content`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod error;
pub mod metrics;
mod push;
pub mod remote_write;
pub mod validation;

pub use config::{DistributorConfig, Limits};
pub use error::{DistributorError, Result};
pub use push::TENANT_HEADER;

use aion_model::storage::Appender;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use metrics::Metrics;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The remote-write front door: config, the appender writes go to, metrics.
pub struct Distributor {
    cfg: DistributorConfig,
    appender: Arc<dyn Appender>,
    metrics: Metrics,
}

impl std::fmt::Debug for Distributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributor").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Distributor {
    /// Validates `cfg` and registers the distributor's metrics into `registry`.
    pub fn new(cfg: DistributorConfig, appender: Arc<dyn Appender>, registry: &mut Registry) -> Result<Self> {
        cfg.validate()?;
        let metrics = Metrics::register(registry);
        Ok(Self { cfg, appender, metrics })
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
mod push_test;
