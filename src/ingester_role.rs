//! Process lifecycle for `--target=ingester`: one node of the Raft-replicated
//! ingester cluster. It opens one Raft log DB under the data dir, starts a
//! replica of every shard the topology places on it, serves the ingester
//! gRPC services (Push/Select/…, Raft transport) and an HTTP server with
//! `/ready`, `/health`, `/metrics` and `GET /admin/shards`.
//!
//! Bootstrapping: for each shard, one replica ([`bootstrapper`]: they rotate
//! over the replicas so first leaderships spread evenly) calls `initialize`;
//! on a restart that call is refused (the group already exists) and the
//! refusal is ignored.
//!
//! State machine backend (`ingester_cluster.state_machine`): `tsdb` (one
//! persistent TSDB per shard, restart re-applies only the log after its last
//! checkpoint) or `memory` (snapshots disabled, the Raft log is never purged
//! and a restart replays all of it). See [`backend`].

mod backend;
mod metrics;

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::grpc::{serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId, TsdbShardData};
use aion_ingester::shards::ShardHost;
use aion_ingester::topology::{bootstrapper, StateMachineKind};
use backend::Backend;
use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One row of `GET /admin/shards`.
#[derive(Debug, Serialize)]
struct ShardRow {
    shard: ShardId,
    replicas: Vec<NodeId>,
    leader: Option<NodeId>,
    term: u64,
    last_applied: Option<u64>,
    last_log: Option<u64>,
}

/// Body of `GET /admin/shards`.
#[derive(Debug, Serialize)]
struct ShardsReport {
    node_id: NodeId,
    shards: Vec<ShardRow>,
}

/// Runs one ingester node until SIGTERM/SIGINT; stops its Rafts and servers.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    match cfg.ingester_cluster.state_machine {
        StateMachineKind::Tsdb => run_with::<TsdbShardData>(cfg).await,
        StateMachineKind::Memory => run_with::<MemShardData>(cfg).await,
    }
}

async fn run_with<B: Backend>(cfg: Config) -> anyhow::Result<()> {
    let cluster = cfg.ingester_cluster.clone();
    let me = cluster.node_id;
    let addrs = cluster.grpc_addresses();
    let my_addr = addrs.get(&me).cloned().context("BUG: validated node id has no address")?;
    let placement = cluster.placement().context("placing shards")?;
    let mine: BTreeMap<ShardId, Vec<NodeId>> =
        placement.into_iter().filter(|(_, r)| r.contains(&me)).collect();
    tracing::info!(node = me, addr = %my_addr, shards = mine.len(), state_machine = B::NAME, data_dir = %cfg.data_dir.display(), "starting ingester");

    let host = open_host::<B>(&cfg, me, &my_addr, &mine).await?;
    let grpc_listener = tokio::net::TcpListener::bind(&cfg.server.grpc_listen_address)
        .await
        .with_context(|| format!("binding gRPC listener on {}", cfg.server.grpc_listen_address))?;
    let (grpc_stop, grpc_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grpc = tokio::spawn(serve(Arc::clone(&host), ServerConfig::default(), grpc_listener, async {
        let _ = grpc_stop_rx.await;
    }));
    bootstrap(&host, me, &mine, &addrs).await;

    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));
    registry.register_collector(Box::new(metrics::RaftCollector::new(host.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let app = crate::server::ops_router(Arc::new(registry), ready.clone()).merge(admin_router(host.clone(), mine));
    let http_listener = tokio::net::TcpListener::bind(&cfg.server.http_listen_address)
        .await
        .with_context(|| format!("binding HTTP listener on {}", cfg.server.http_listen_address))?;
    let (http_stop, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stop_rx.await;
            })
            .await
    });
    ready.store(true, Ordering::SeqCst);
    tracing::info!(node = me, grpc = %cfg.server.grpc_listen_address, http = %cfg.server.http_listen_address, "ingester ready");

    crate::server::shutdown_signal().await;
    ready.store(false, Ordering::SeqCst);
    let _ = http_stop.send(());
    tracing::info!(node = me, "shutting down: stopping shard rafts");
    let datas: Vec<_> = host.shard_ids().into_iter().filter_map(|s| host.shard(s)).map(|h| h.data.clone()).collect();
    host.shutdown().await;
    let flushed = tokio::task::spawn_blocking(move || datas.iter().try_for_each(|d| d.flush())).await;
    match flushed {
        Ok(Ok(())) => tracing::info!(node = me, "shard state flushed"),
        Ok(Err(e)) => tracing::error!(node = me, error = %format!("{e:#}"), "flushing shard state failed"),
        Err(e) => tracing::error!(node = me, error = %e, "flush task failed"),
    }
    let _ = grpc_stop.send(());
    let limit = cfg.server.graceful_shutdown_timeout;
    if tokio::time::timeout(limit, async {
        if let Ok(Err(e)) = grpc.await {
            tracing::warn!(error = %e, "gRPC server stopped with an error");
        }
        if let Ok(Err(e)) = http.await {
            tracing::warn!(error = %e, "HTTP server stopped with an error");
        }
    })
    .await
    .is_err()
    {
        tracing::warn!(timeout = ?limit, "servers did not stop within the graceful shutdown timeout; exiting");
    }
    tracing::info!(node = me, "ingester stopped; bye");
    Ok(())
}

/// Opens the log DB and starts this node's replica of each shard in `mine`.
async fn open_host<B: Backend>(
    cfg: &Config,
    me: NodeId,
    my_addr: &str,
    mine: &BTreeMap<ShardId, Vec<NodeId>>,
) -> anyhow::Result<Arc<ShardHost<B>>> {
    let dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let open_dir = dir.clone();
    let db = tokio::task::spawn_blocking(move || RaftLogDb::open(&open_dir))
        .await
        .context("opening the raft log DB")?
        .with_context(|| format!("opening the raft log DB in {}", dir.display()))?;
    let raft_cfg = Arc::new(B::raft_config().validate().context("raft config")?);
    let host = Arc::new(ShardHost::<B>::new(me, my_addr, db, raft_cfg));
    for &shard in mine.keys() {
        let (data_dir, tsdb_cfg) = (cfg.data_dir.clone(), cfg.ingester.clone());
        let sm = tokio::task::spawn_blocking(move || B::open(&data_dir, shard, &tsdb_cfg))
            .await
            .context("opening a shard state machine")??;
        host.open_shard(shard, sm).await.with_context(|| format!("starting shard {shard}"))?;
    }
    Ok(host)
}

/// Initializes every shard whose bootstrapper is this node; a group
/// that already exists (restart) refuses, which is expected and only logged.
async fn bootstrap<B: Backend>(
    host: &ShardHost<B>,
    me: NodeId,
    mine: &BTreeMap<ShardId, Vec<NodeId>>,
    addrs: &BTreeMap<NodeId, String>,
) {
    for (&shard, replicas) in mine {
        if bootstrapper(shard, replicas) != Some(me) {
            continue;
        }
        let members: BTreeMap<NodeId, String> =
            replicas.iter().filter_map(|r| addrs.get(r).map(|a| (*r, a.clone()))).collect();
        match host.initialize(shard, &members).await {
            Ok(()) => tracing::info!(shard, ?replicas, "initialized shard group"),
            Err(e) => tracing::info!(shard, error = %e, "shard group not initialized (already exists?)"),
        }
    }
}

fn admin_router<B: Backend>(host: Arc<ShardHost<B>>, mine: BTreeMap<ShardId, Vec<NodeId>>) -> Router {
    let mine = Arc::new(mine);
    Router::new().route(
        "/admin/shards",
        get(move || {
            let (host, mine) = (host.clone(), mine.clone());
            async move {
                let shards = host
                    .status()
                    .into_iter()
                    .map(|s| ShardRow {
                        shard: s.shard,
                        replicas: mine.get(&s.shard).cloned().unwrap_or_default(),
                        leader: s.leader,
                        term: s.term,
                        last_applied: s.last_applied,
                        last_log: s.last_log,
                    })
                    .collect();
                Json(ShardsReport { node_id: host.node_id(), shards })
            }
        }),
    )
}
