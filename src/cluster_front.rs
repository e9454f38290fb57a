//! What the cluster's front-end roles (`distributor`, `querier`) share:
//! readiness once the shard map routes every shard, and the HTTP server's
//! life from bind to graceful shutdown on SIGTERM/SIGINT.

use crate::config::Config;
use aion_ingester::client::ClusterClient;
use anyhow::Context;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sets `ready` once the shard map routes every shard (refreshing until then).
pub async fn mark_ready_when_routed(client: ClusterClient, ready: Arc<AtomicBool>, role: &'static str) {
    let mut logged = false;
    loop {
        let map = client.shard_map();
        let routed = (0..client.shard_count()).filter(|s| map.get(*s).is_some_and(|r| !r.replicas.is_empty())).count();
        if routed as u64 == client.shard_count() {
            ready.store(true, Ordering::SeqCst);
            tracing::info!(role, shards = routed, "ready: every shard has a route");
            return;
        }
        if !logged {
            tracing::info!(role, routed, shards = client.shard_count(), "waiting for the ingesters to report every shard");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.refresh().await;
    }
}

/// Serves `app` on the configured HTTP address until a shutdown signal,
/// then marks the process unready, drains in-flight requests (up to the
/// graceful shutdown timeout) and returns.
pub async fn serve_until_signal(cfg: &Config, role: &'static str, app: Router, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let addr = &cfg.server.http_listen_address;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding HTTP listener on {addr}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(role, addr = %addr, "HTTP server listening");
    crate::server::shutdown_signal().await;
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(());
    match tokio::time::timeout(cfg.server.graceful_shutdown_timeout, server).await {
        Ok(Ok(r)) => r.context("HTTP server")?,
        Ok(Err(e)) => tracing::error!(role, error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!(
            role,
            timeout = ?cfg.server.graceful_shutdown_timeout,
            "in-flight requests did not finish within the graceful shutdown timeout; closing"
        ),
    }
    Ok(())
}
