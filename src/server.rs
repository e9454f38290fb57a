//! Process lifecycle for `--target=all`: open storage, wire the distributor and
//! the query API onto one HTTP server, serve `/metrics`, `/ready`, `/health`,
//! and on SIGTERM/SIGINT drain requests, flush storage and exit 0.

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::Tsdb;
use aion_model::metadata::MetadataStore;
use aion_model::storage::{Appender, Queryable};
use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How long metric metadata is kept without a sender refreshing it
/// (Prometheus resends it every minute).
pub const METADATA_RETAIN: std::time::Duration = std::time::Duration::from_secs(600);
/// Most metadata entries kept per tenant.
pub const METADATA_PER_TENANT: usize = 20_000;

/// Drops expired metadata every minute until the store is gone.
pub fn spawn_metadata_purger(store: std::sync::Weak<MetadataStore>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            let Some(s) = store.upgrade() else { return };
            s.purge(std::time::Instant::now());
        }
    });
}

/// Runs Aion until a shutdown signal; returns after storage is flushed.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    if cfg.target.trim() == "ingester" {
        return crate::ingester_role::run(cfg).await;
    }
    if cfg.target.trim() == "distributor" {
        return crate::distributor_role::run(cfg).await;
    }
    if cfg.target.trim() == "querier" {
        return crate::querier_role::run(cfg).await;
    }
    tracing::info!(target = %cfg.target, data_dir = %cfg.data_dir.display(), http = %cfg.server.http_listen_address, "starting aion");
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));

    let (dir, tsdb_cfg) = (cfg.data_dir.join("tsdb"), cfg.ingester.clone());
    let tsdb = tokio::task::spawn_blocking(move || Tsdb::open(&dir, tsdb_cfg))
        .await
        .context("opening storage")?
        .context("opening storage")?;
    let tsdb = Arc::new(tsdb);
    tsdb.register_metrics(&mut registry);

    let appender: Arc<dyn Appender> = tsdb.clone();
    let queryable: Arc<dyn Queryable> = tsdb.clone();
    let mut dist_cfg = cfg.distributor.clone();
    dist_cfg.multitenancy_enabled |= cfg.multitenancy_enabled;
    let multitenancy_enabled = dist_cfg.multitenancy_enabled;
    let metadata = Arc::new(MetadataStore::new(METADATA_RETAIN, METADATA_PER_TENANT));
    spawn_metadata_purger(Arc::downgrade(&metadata));
    let distributor = aion_distributor::Distributor::new(dist_cfg, appender, &mut registry)
        .context("starting distributor")?
        .with_metadata(metadata.clone())
        .with_ha_store(queryable.clone());
    let engine = aion_querier::engine::Engine::new(cfg.querier.engine_options());
    let query_limits = cfg.querier.tenant_limits().context("reading querier.overrides_file")?;
    let query_api = aion_querier::api::QueryApi::new(engine, queryable, multitenancy_enabled, &mut registry)
        .with_metadata(metadata)
        .with_limits(query_limits);

    let ready = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(registry);
    let app = Router::new()
        .merge(aion_distributor::router(Arc::new(distributor)))
        .merge(aion_querier::api::router(Arc::new(query_api)))
        .merge(ops_router(registry, ready.clone()))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(&cfg.server.http_listen_address)
        .await
        .with_context(|| format!("binding HTTP listener on {}", cfg.server.http_listen_address))?;
    tracing::info!(addr = %cfg.server.http_listen_address, "HTTP server listening");
    ready.store(true, Ordering::SeqCst);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown_signal().await;
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(());
    match tokio::time::timeout(cfg.server.graceful_shutdown_timeout, server).await {
        Ok(Ok(r)) => r.context("HTTP server")?,
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!(
            timeout = ?cfg.server.graceful_shutdown_timeout,
            "in-flight requests did not finish within the graceful shutdown timeout; closing"
        ),
    }
    tracing::info!("shutting down: flushing storage");
    let t = tsdb.clone();
    tokio::task::spawn_blocking(move || t.flush()).await.context("flushing storage")?.context("flushing storage")?;
    tracing::info!("storage flushed; bye");
    Ok(())
}

/// `/metrics`, `/ready`, `/health`.
pub(crate) fn ops_router(registry: Arc<Registry>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut out = String::new();
                    match prometheus_client::encoding::text::encode(&mut out, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                            out,
                        )
                            .into_response(),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
                    }
                }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
