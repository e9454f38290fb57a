//! Process lifecycle for `--target=ingester`: one node of the Raft-replicated
//! ingester cluster. It opens one Raft log DB under the data dir, starts a
//! replica of every shard the topology places on it, serves the ingester
//! gRPC services (Push/Select/…, Raft transport, Admin) and an HTTP server
//! with `/ready`, `/health`, `/metrics` and the admin API ([`admin`]).
//!
//! Hosted shards: on a node's first start the static placement
//! (`topology::place`) decides which replicas it hosts, and for each shard
//! one replica ([`bootstrapper`]: they rotate over the replicas so first
//! leaderships spread evenly) calls `initialize`. The hosted set is then
//! recorded in the Raft log DB and changes only through the admin API
//! (moves); every later start hosts the recorded set and bootstraps
//! nothing. With `ingester_cluster.join` (`--ingester.join`) a node without
//! a recorded set starts with no shards: a node added to a running cluster,
//! or one whose data dir was wiped — it must not rejoin groups as a voter
//! that forgot its vote, so it gets its replicas back through
//! `POST /admin/shards/{shard}/move?from=N&to=N` (removed from the voters,
//! re-added as learner, caught up by snapshot, promoted).
//!
//! State machine backend (`ingester_cluster.state_machine`): `tsdb` (one
//! persistent TSDB per shard, restart re-applies only the log after its last
//! checkpoint) or `memory` (snapshots disabled, the Raft log is never purged
//! and a restart replays all of it). See [`backend`].

mod admin;
mod backend;
mod metrics;
mod pushdown;

use crate::config::Config;
use crate::process_metrics::ProcessCollector;
use aion_ingester::grpc::metadata_service::MetadataService;
use aion_ingester::grpc::{serve_with, ServerConfig};
use aion_model::metadata::MetadataStore;
use aion_querier::pushdown::service::PushdownService;
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId, TsdbShardData};
use aion_ingester::shards::ShardHost;
use aion_ingester::topology::{bootstrapper, StateMachineKind};
use anyhow::Context;
use backend::{Backend, BackendOpener};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    let placed: BTreeMap<ShardId, Vec<NodeId>> =
        placement.into_iter().filter(|(_, r)| r.contains(&me)).collect();

    let host = open_host::<B>(&cfg, me, &my_addr).await?;
    let recorded = host.recorded_shards().context("reading the hosted shard set")?;
    let first_start = recorded.is_none();
    let hosted: BTreeSet<ShardId> = match recorded {
        Some(set) => set,
        None if cluster.join => BTreeSet::new(),
        None => placed.keys().copied().collect(),
    };
    tracing::info!(node = me, addr = %my_addr, shards = hosted.len(), first_start, join = cluster.join, state_machine = B::NAME, data_dir = %cfg.data_dir.display(), "starting ingester");
    // Both ports are bound before any replica dials a peer: a port is never lost to
    // an outgoing connection, and a taken port fails the start at once.
    let grpc_listener = tokio::net::TcpListener::bind(&cfg.server.grpc_listen_address)
        .await
        .with_context(|| format!("binding gRPC listener on {}", cfg.server.grpc_listen_address))?;
    let http_listener = tokio::net::TcpListener::bind(&cfg.server.http_listen_address)
        .await
        .with_context(|| format!("binding HTTP listener on {}", cfg.server.http_listen_address))?;
    host.open_all(&hosted).await.context("starting shard replicas")?;
    host.spawn_heartbeats(cluster.heartbeat_interval);
    let (grpc_stop, grpc_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metadata = Arc::new(MetadataStore::new(crate::server::METADATA_RETAIN, crate::server::METADATA_PER_TENANT));
    crate::server::spawn_metadata_purger(Arc::downgrade(&metadata));
    let server_cfg = ServerConfig { read_lease: cluster.read_lease, ..ServerConfig::default() };
    let pushdown_timeout = cfg.querier.timeout;
    let extra = move |r: tonic::transport::server::Router, svc: &aion_ingester::grpc::IngesterService<B>| {
        let pushdown = PushdownService::new(Arc::new(pushdown::HostSource::new(svc.clone())), pushdown_timeout);
        r.add_service(MetadataService::new(metadata).into_server()).add_service(pushdown.into_server())
    };
    let grpc = tokio::spawn(serve_with(Arc::clone(&host), server_cfg, grpc_listener, async {
        let _ = grpc_stop_rx.await;
    }, extra));
    if first_start && !cluster.join {
        bootstrap(&host, me, &placed, &addrs).await;
    }

    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));
    registry.register_collector(Box::new(metrics::RaftCollector::new(host.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let app = crate::server::ops_router(Arc::new(registry), ready.clone()).merge(admin::router(host.clone(), addrs.clone()));
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

/// Opens the log DB and a host (no replicas started yet).
async fn open_host<B: Backend>(cfg: &Config, me: NodeId, my_addr: &str) -> anyhow::Result<Arc<ShardHost<B>>> {
    let dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let open_dir = dir.clone();
    let db = tokio::task::spawn_blocking(move || RaftLogDb::open(&open_dir))
        .await
        .context("opening the raft log DB")?
        .with_context(|| format!("opening the raft log DB in {}", dir.display()))?;
    let raft_cfg = B::raft_config(cfg.ingester_cluster.snapshot_after_entries, cfg.ingester_cluster.heartbeat_interval);
    let raft_cfg = Arc::new(raft_cfg.validate().context("raft config")?);
    let opener = Arc::new(BackendOpener::<B>::new(&cfg.data_dir, &cfg.ingester));
    let host = ShardHost::<B>::new(me, my_addr, db, raft_cfg)
        .with_opener(opener)
        .with_write_linger(cfg.ingester_cluster.write_linger);
    Ok(Arc::new(host))
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
