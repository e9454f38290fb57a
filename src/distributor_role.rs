//! Process lifecycle for `--target=distributor`: the remote-write front door
//! of a cluster. The same [`aion_distributor::Distributor`] as `--target=all`
//! (decode, tenant, validation, limits), with a [`ShardRouter`] as its
//! appender: every series goes to the shard owning it (hash of tenant and
//! labels on the shard ring), shard batches are pushed in parallel to their
//! Raft leaders, and a request succeeds only when every shard batch
//! committed (retryable failures answer 503).
//!
//! Ingesters come from `ingester_cluster.ingesters` / `--ingester.peers`
//! (seeds of the shard map), the shard count from `ingester_cluster.shards`,
//! retry timing from `shard_router`. Serves `/api/v1/push`, `/api/v1/write`,
//! `/metrics`, `/health` and `/ready` (ready once a shard-map refresh has
//! found a route for every shard). Stateless: run any number behind a
//! balancer (HA-pair elections, when `distributor.ha_tracker.enabled`, are
//! written to and read back from the cluster, so all distributors agree);
//! SIGTERM drains in-flight requests and exits.

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::client::{ClientConfig, ClusterClient, FanOutConfig, FanOutQueryable, RouterMetrics, ShardRouter};
use aion_model::storage::{Appender, Queryable};
use anyhow::Context;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs a distributor until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let seeds: Vec<String> = cfg.ingester_cluster.grpc_addresses().into_values().collect();
    let shard_count = cfg.ingester_cluster.shards;
    tracing::info!(http = %cfg.server.http_listen_address, ingesters = ?seeds, shards = shard_count, policy = ?cfg.shard_router, "starting distributor");
    let client = ClusterClient::new(seeds, shard_count, ClientConfig::default());
    let refresher = client.spawn_refresher();
    let ready = Arc::new(AtomicBool::new(false));
    let readiness = tokio::spawn(mark_ready_when_routed(client.clone(), ready.clone()));

    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));
    let metrics = RouterMetrics::register(&mut registry);
    let runtime = tokio::runtime::Handle::current();
    let ha_reads = FanOutConfig { call_timeout: Duration::from_secs(5), ..FanOutConfig::default() };
    let ha_store: Arc<dyn Queryable> = Arc::new(FanOutQueryable::new(client.clone(), runtime.clone(), ha_reads));
    let metadata = Arc::new(aion_ingester::client::ClusterMetadata::new(client.clone(), runtime.clone()));
    let router = ShardRouter::new(client, cfg.shard_router, runtime, metrics);
    let appender: Arc<dyn Appender> = Arc::new(router);
    let mut dist_cfg = cfg.distributor.clone();
    dist_cfg.multitenancy_enabled |= cfg.multitenancy_enabled;
    let distributor = aion_distributor::Distributor::new(dist_cfg, appender, &mut registry)
        .context("starting distributor")?
        .with_ha_store(ha_store)
        .with_metadata(metadata);
    let app = Router::new()
        .merge(aion_distributor::router(Arc::new(distributor)))
        .merge(crate::server::ops_router(Arc::new(registry), ready.clone()))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(&cfg.server.http_listen_address)
        .await
        .with_context(|| format!("binding HTTP listener on {}", cfg.server.http_listen_address))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(addr = %cfg.server.http_listen_address, "distributor HTTP server listening");
    crate::server::shutdown_signal().await;
    ready.store(false, Ordering::SeqCst);
    readiness.abort();
    let _ = stop_tx.send(());
    match tokio::time::timeout(cfg.server.graceful_shutdown_timeout, server).await {
        Ok(Ok(r)) => r.context("HTTP server")?,
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!(
            timeout = ?cfg.server.graceful_shutdown_timeout,
            "in-flight pushes did not finish within the graceful shutdown timeout; closing"
        ),
    }
    refresher.abort();
    tracing::info!("distributor stopped; bye");
    Ok(())
}

/// Sets `ready` once a refresh has found a route for every shard.
async fn mark_ready_when_routed(client: ClusterClient, ready: Arc<AtomicBool>) {
    let mut logged = false;
    loop {
        let map = client.shard_map();
        let routed = (0..client.shard_count()).filter(|s| map.get(*s).is_some_and(|r| !r.replicas.is_empty())).count();
        if routed as u64 == client.shard_count() {
            ready.store(true, Ordering::SeqCst);
            tracing::info!(shards = routed, "distributor ready: every shard has a route");
            return;
        }
        if !logged {
            tracing::info!(routed, shards = client.shard_count(), "waiting for the ingesters to report every shard");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.refresh().await;
    }
}
