//! Process lifecycle for `--target=querier`: the Prometheus query API over
//! the whole sharded ingester cluster. It keeps a shard map of the
//! ingesters (`ingester_cluster.ingesters` / `--ingester.peers` are the
//! seeds, `ingester_cluster.shards` the shard count), evaluates PromQL with
//! the one engine over [`FanOutQueryable`], and serves `/api/v1/…` and
//! `/prometheus/api/v1/…`, `/metrics`, `/health` and `/ready` (ready once a
//! shard-map refresh has found a route for every shard). Stateless: SIGTERM
//! drains in-flight requests and exits.

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::client::{ClientConfig, ClusterClient, FanOutConfig, FanOutMetrics, FanOutQueryable};
use aion_model::storage::Queryable;
use anyhow::Context;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The fan-out settings a configuration implies.
pub fn fan_out_config(cfg: &Config) -> FanOutConfig {
    FanOutConfig {
        call_timeout: cfg.querier.timeout,
        partial_response: cfg.querier.partial_response,
        max_fetched_series: cfg.querier.max_fetched_series_per_query,
        max_fetched_chunk_bytes: cfg.querier.max_fetched_chunk_bytes_per_query,
        aggregation_pushdown: cfg.querier.aggregation_pushdown,
        adaptive_pushdown: cfg.querier.adaptive_pushdown,
        ..FanOutConfig::default()
    }
}

/// Runs a querier until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let seeds: Vec<String> = cfg.ingester_cluster.grpc_addresses().into_values().collect();
    let shard_count = cfg.ingester_cluster.shards;
    tracing::info!(http = %cfg.server.http_listen_address, ingesters = ?seeds, shards = shard_count, partial_response = cfg.querier.partial_response, "starting querier");
    let client = ClusterClient::new(seeds, shard_count, ClientConfig::default());
    let refresher = client.spawn_refresher();
    let ready = Arc::new(AtomicBool::new(false));
    let readiness = tokio::spawn(crate::cluster_front::mark_ready_when_routed(client.clone(), ready.clone(), "querier"));

    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));
    let metadata = Arc::new(aion_ingester::client::ClusterMetadata::new(client.clone(), tokio::runtime::Handle::current()));
    let fan_out = FanOutQueryable::new(client, tokio::runtime::Handle::current(), fan_out_config(&cfg))
        .with_metrics(FanOutMetrics::register(&mut registry));
    let storage: Arc<dyn Queryable> = Arc::new(fan_out);
    let engine = aion_querier::engine::Engine::new(cfg.querier.engine_options());
    let query_limits = cfg.querier.tenant_limits().context("reading querier.overrides_file")?;
    let query_api = aion_querier::api::QueryApi::new(engine, storage, cfg.multitenancy_enabled, &mut registry)
        .with_metadata(metadata)
        .with_limits(query_limits);
    let app = Router::new()
        .merge(aion_querier::api::router(Arc::new(query_api)))
        .merge(crate::server::ops_router(Arc::new(registry), ready.clone()))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let served = crate::cluster_front::serve_until_signal(&cfg, "querier", app, ready).await;
    readiness.abort();
    refresher.abort();
    served?;
    tracing::info!("querier stopped; bye");
    Ok(())
}
