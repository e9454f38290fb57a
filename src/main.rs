//! `aion`: one binary for every role of the Aion cluster. With `--target=all`
//! (the default) it runs a complete single-process Aion: remote-write ingest,
//! RocksDB storage and the Prometheus query API, data in `./data`.

mod cluster_front;
mod config;
mod distributor_role;
mod ingester_role;
mod process_metrics;
mod querier_role;
mod server;

use clap::Parser;
use config::Config;

/// mimalloc instead of glibc malloc: the ingest path allocates and frees
/// many small strings per sample, and glibc's free/consolidate cost ~35% of
/// the server's CPU in `bench/` (mimalloc: a few percent).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line flags; each overrides the config file.
#[derive(Debug, Parser)]
#[command(name = "aion", version, about = "Aion: a sharded, Raft-replicated, Prometheus-compatible time-series database")]
struct Cli {
    /// YAML configuration file.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Roles to run: all, distributor, ingester, querier.
    #[arg(long = "target")]
    target: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:9009].
    #[arg(long = "http.listen-address")]
    http_listen_address: Option<String>,
    /// gRPC listen address [default: 127.0.0.1:9095].
    #[arg(long = "grpc.listen-address")]
    grpc_listen_address: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long = "data.dir")]
    data_dir: Option<PathBuf>,
    /// Require X-Scope-OrgID on every request.
    #[arg(long = "auth.multitenancy-enabled")]
    multitenancy_enabled: Option<bool>,
    /// This ingester's node id (`--target=ingester`).
    #[arg(long = "ingester.node-id")]
    ingester_node_id: Option<u64>,
    /// Every ingester as `id=host:port` (gRPC), comma-separated; replaces `ingester_cluster.ingesters`.
    #[arg(long = "ingester.peers")]
    ingester_peers: Option<String>,
    /// Number of shards [default: 16].
    #[arg(long = "ingester.shards")]
    ingester_shards: Option<u64>,
    /// Replicas per shard [default: 3].
    #[arg(long = "ingester.replication-factor")]
    ingester_replication_factor: Option<usize>,
    /// Shard state machine: `tsdb` (default) or `memory`.
    #[arg(long = "ingester.state-machine")]
    ingester_state_machine: Option<aion_ingester::topology::StateMachineKind>,
    /// Start this ingester with no shards (added to a running cluster, or its data dir was wiped).
    #[arg(long = "ingester.join")]
    ingester_join: bool,
    /// Raft snapshot after this many entries (and keep at most this many behind it) [default: 5000].
    #[arg(long = "ingester.snapshot-after-entries")]
    ingester_snapshot_after_entries: Option<u64>,
    /// Serve linearizable reads under a leader lease (skip the Confirm round while it runs) [default: true].
    #[arg(long = "ingester.read-lease")]
    ingester_read_lease: Option<bool>,
    /// How long a write to an idle shard waits for others to share its Raft entry, e.g. `10ms`, `0s` [default: 10ms].
    #[arg(long = "ingester.write-linger", value_parser = humantime::parse_duration)]
    ingester_write_linger: Option<std::time::Duration>,
    /// Raft heartbeat interval; election timeouts are 4–8× it, e.g. `200ms` [default: 200ms].
    #[arg(long = "ingester.heartbeat-interval", value_parser = humantime::parse_duration)]
    ingester_heartbeat_interval: Option<std::time::Duration>,
    /// Querier: answer from reachable shards with a warning instead of failing (partial responses).
    #[arg(long = "querier.partial-response")]
    querier_partial_response: Option<bool>,
    /// Log format: `json` (default) or `text`.
    #[arg(long = "log.format", default_value = "json")]
    log_format: String,
    /// Log filter, e.g. `info` or `aion=debug,info` [default: info, or RUST_LOG].
    #[arg(long = "log.level")]
    log_level: Option<String>,
}

fn load_config(cli: &Cli) -> Result<Config, config::ConfigError> {
    let mut cfg = match &cli.config_file {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(t) = &cli.target {
        cfg.target = t.clone();
    }
    if let Some(a) = &cli.http_listen_address {
        cfg.server.http_listen_address = a.clone();
    }
    if let Some(a) = &cli.grpc_listen_address {
        cfg.server.grpc_listen_address = a.clone();
    }
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(m) = cli.multitenancy_enabled {
        cfg.multitenancy_enabled = m;
    }
    let cluster = &mut cfg.ingester_cluster;
    if let Some(n) = cli.ingester_node_id {
        cluster.node_id = n;
    }
    if let Some(p) = &cli.ingester_peers {
        cluster.set_peers(p).map_err(|e| config::ConfigError::Invalid(format!("--ingester.peers: {e}")))?;
    }
    if let Some(n) = cli.ingester_shards {
        cluster.shards = n;
    }
    if let Some(n) = cli.ingester_replication_factor {
        cluster.replication_factor = n;
    }
    if let Some(k) = cli.ingester_state_machine {
        cluster.state_machine = k;
    }
    if cli.ingester_join {
        cluster.join = true;
    }
    if let Some(n) = cli.ingester_snapshot_after_entries {
        cluster.snapshot_after_entries = n.max(1);
    }
    if let Some(on) = cli.ingester_read_lease {
        cluster.read_lease = on;
    }
    if let Some(d) = cli.ingester_write_linger {
        cluster.write_linger = d;
    }
    if let Some(d) = cli.ingester_heartbeat_interval {
        cluster.heartbeat_interval = d;
    }
    if let Some(p) = cli.querier_partial_response {
        cfg.querier.partial_response = p;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log_level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "text" {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let cfg = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration error");
            eprintln!("aion: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aion: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "aion stopped with an error");
            eprintln!("aion: {e:#}");
            ExitCode::from(1)
        }
    }
}
