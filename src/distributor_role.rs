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
use std::sync::atomic::AtomicBool;
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
    let readiness = tokio::spawn(crate::cluster_front::mark_ready_when_routed(client.clone(), ready.clone(), "distributor"));

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

    let served = crate::cluster_front::serve_until_signal(&cfg, "distributor", app, ready).await;
    readiness.abort();
    refresher.abort();
    served?;
    tracing::info!("distributor stopped; bye");
    Ok(())
}
