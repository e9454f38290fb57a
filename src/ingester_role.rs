//! Process lifecycle for `--target=ingester`: one node of the Raft-replicated
//! ingester cluster. It opens one Raft log DB under the data dir, starts a
//! replica of every shard the topology places on it, serves the ingester
//! gRPC services (Push/Select/…, Raft transport) and an HTTP server with
//! `/ready`, `/health`, `/metrics` and `GET /admin/shards`.
//!
//! Bootstrapping: for each shard, the lowest node id among its replicas calls
//! `initialize` once; on a restart that call is refused (the group already
//! exists) and the refusal is ignored.
//!
//! State machine backend: [`MemShardData`]. Snapshots are disabled, so the
//! Raft log in RocksDB is never purged and a restarted node rebuilds its
//! shards by replaying it (restart time grows with the log).

mod metrics;

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::grpc::{serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId, ShardStateMachine};
use aion_ingester::shards::{default_raft_config, ShardHost};
use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

type Host = ShardHost<MemShardData>;

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
    let cluster = cfg.ingester_cluster.clone();
    let me = cluster.node_id;
    let addrs = cluster.grpc_addresses();
    let my_addr = addrs.get(&me).cloned().context("BUG: validated node id has no address")?;
    let placement = cluster.placement().context("placing shards")?;
    let mine: BTreeMap<ShardId, Vec<NodeId>> =
        placement.into_iter().filter(|(_, r)| r.contains(&me)).collect();
    tracing::info!(node = me, addr = %my_addr, shards = mine.len(), data_dir = %cfg.data_dir.display(), "starting ingester");

    let host = open_host(&cfg, me, &my_addr, &mine).await?;
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
    host.shutdown().await;
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
async fn open_host(
    cfg: &Config,
    me: NodeId,
    my_addr: &str,
    mine: &BTreeMap<ShardId, Vec<NodeId>>,
) -> anyhow::Result<Arc<Host>> {
    let dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let open_dir = dir.clone();
    let db = tokio::task::spawn_blocking(move || RaftLogDb::open(&open_dir))
        .await
        .context("opening the raft log DB")?
        .with_context(|| format!("opening the raft log DB in {}", dir.display()))?;
    // Never snapshot: the in-memory state machine is rebuilt from the full log.
    let raft_cfg = openraft::Config { snapshot_policy: openraft::SnapshotPolicy::Never, ..default_raft_config() };
    let raft_cfg = Arc::new(raft_cfg.validate().context("raft config")?);
    let host = Arc::new(Host::new(me, my_addr, db, raft_cfg));
    for &shard in mine.keys() {
        let sm = ShardStateMachine::new(Arc::new(MemShardData::new()));
        host.open_shard(shard, sm).await.with_context(|| format!("starting shard {shard}"))?;
    }
    Ok(host)
}

/// Initializes every shard whose lowest replica id is this node; a group
/// that already exists (restart) refuses, which is expected and only logged.
async fn bootstrap(
    host: &Host,
    me: NodeId,
    mine: &BTreeMap<ShardId, Vec<NodeId>>,
    addrs: &BTreeMap<NodeId, String>,
) {
    for (&shard, replicas) in mine {
        if replicas.iter().min() != Some(&me) {
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

fn admin_router(host: Arc<Host>, mine: BTreeMap<ShardId, Vec<NodeId>>) -> Router {
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
