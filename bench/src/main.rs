//! `aion-bench`: an end-to-end remote-write ingest benchmark. It pre-encodes a
//! realistic workload once, then for each target in turn (Aion, Prometheus,
//! VictoriaMetrics) starts a fresh server on loopback, sends it the same
//! bodies over K keep-alive connections, and reports samples/s, samples per
//! server CPU-second and peak RSS per active series, with ratios.
//!
//! Everything is bounded: targets are started on free 127.0.0.1 ports in temp
//! dirs and always stopped; the generator stops at its deadline.

mod error;
mod http;
mod load;
mod measure;
mod procstat;
mod query;
mod report;
mod target;
mod workload;

use clap::{Args, Parser, Subcommand};
use error::{BenchError, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "aion-bench",
    about = "End-to-end remote-write ingest benchmark: Aion vs Prometheus vs VictoriaMetrics"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start each target in turn, send it the workload, measure, compare.
    Ingest(IngestArgs),
    /// Send the workload to an already running remote-write endpoint and report.
    Send(SendArgs),
    /// Dashboard-query latency: Aion vs Prometheus vs VictoriaMetrics on the same data.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// Scrape targets in the generated fleet (about 70 series each).
    #[arg(long, default_value_t = 100)]
    fleet: usize,
    /// Hours of data at one sample per minute.
    #[arg(long, default_value_t = 24)]
    hours: usize,
    /// Timed runs per query (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Comma list of targets.
    #[arg(long, default_value = "aion,prometheus,victoria-metrics")]
    targets: String,
    /// The aion binary [default: `aion` next to this binary].
    #[arg(long)]
    aion_bin: Option<PathBuf>,
    /// Aion config file (should allow 24 h old samples, e.g. bench/aion-bench.yaml).
    #[arg(long)]
    aion_config: Option<PathBuf>,
    /// Shards of the `aion-cluster` target (3 ingesters, RF 3).
    #[arg(long, default_value_t = target::cluster::DEFAULT_SHARDS)]
    aion_shards: u32,
    /// Use a running Aion instead: its remote-write URL (e.g. a distributor's /api/v1/push).
    #[arg(long, requires = "aion_api")]
    aion_push: Option<String>,
    /// ... and its Prometheus API base (e.g. http://127.0.0.1:19110/prometheus/api/v1).
    #[arg(long)]
    aion_api: Option<String>,
    /// The Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// The VictoriaMetrics single-node binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    vm_bin: PathBuf,
}

async fn query_bench(a: QueryArgs) -> Result<bool> {
    if a.fleet == 0 || a.hours == 0 || a.runs == 0 {
        return Err(BenchError::InvalidArgument("--fleet, --hours and --runs must be > 0".into()));
    }
    let targets = a.targets.split(',').filter(|s| !s.trim().is_empty()).map(target::Kind::parse).collect::<Result<Vec<_>>>()?;
    let aion_external = match (&a.aion_push, &a.aion_api) {
        (Some(p), Some(q)) => Some((http::Url::parse(p)?, http::Url::parse(q)?)),
        _ => None,
    };
    query::run(query::QueryBenchConfig {
        fleet: a.fleet,
        hours: a.hours,
        runs: a.runs,
        targets,
        aion_bin: a.aion_bin.unwrap_or_else(default_aion_bin),
        aion_config: a.aion_config,
        aion_shards: a.aion_shards,
        prometheus_bin: a.prometheus_bin,
        vm_bin: a.vm_bin,
        aion_external,
    })
    .await
}

/// The workload and how it is sent.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Scrape steps (samples per series), 15 s apart, starting an hour ago.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Series per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The generator stops sending after this many seconds (per target).
    #[arg(long, default_value_t = 180)]
    deadline_secs: u64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
}

#[derive(Debug, Args)]
struct IngestArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Comma list of targets, measured in this order; ratios are of the first to the others.
    #[arg(long, default_value = "aion,aion-rf3,victoria-metrics,prometheus")]
    targets: String,
    /// The aion binary [default: `aion` next to this binary].
    #[arg(long)]
    aion_bin: Option<PathBuf>,
    /// Optional Aion config file.
    #[arg(long)]
    aion_config: Option<PathBuf>,
    /// Shards of the `aion-rf3` target (3 ingesters, RF 3).
    #[arg(long, default_value_t = target::cluster::DEFAULT_SHARDS)]
    aion_shards: u32,
    /// The Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// The VictoriaMetrics single-node binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    vm_bin: PathBuf,
    /// Seconds after the load whose server CPU still counts (deferred flushes and merges).
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Skip the `count(...)` query that checks every series was stored.
    #[arg(long)]
    no_verify: bool,
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Remote-write URL, e.g. http://127.0.0.1:9009/api/v1/push.
    #[arg(long)]
    url: String,
    /// Extra header `Name: value` (repeatable), e.g. `X-Scope-OrgID: bench`.
    #[arg(long = "header")]
    headers: Vec<String>,
}

fn build_workload(a: &LoadArgs) -> Result<Arc<workload::Workload>> {
    if a.series == 0 || a.steps == 0 || a.batch == 0 || a.concurrency == 0 {
        return Err(BenchError::InvalidArgument(
            "--series, --steps, --batch and --concurrency must be > 0".into(),
        ));
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let interval_ms = 15_000;
    let start_ms = (now_ms - 3_600_000) / interval_ms * interval_ms;
    let cfg = workload::WorkloadConfig {
        series: a.series,
        steps: a.steps,
        batch: a.batch,
        interval_ms,
        start_ms,
    };
    let t = Instant::now();
    let w = workload::build(cfg);
    eprintln!(
        "workload: {} series x {} steps = {} samples in {} requests of {} series; {:.1} MiB snappy ({:.1} MiB raw), built in {:.1}s",
        cfg.series,
        cfg.steps,
        cfg.samples(),
        cfg.batches() * cfg.steps,
        cfg.batch,
        w.compressed_bytes as f64 / 1048576.0,
        w.raw_bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    Ok(Arc::new(w))
}

fn default_aion_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("aion")))
        .unwrap_or_else(|| PathBuf::from("aion"))
}

async fn ingest(a: IngestArgs) -> Result<bool> {
    let mut specs = Vec::new();
    for name in a.targets.split(',').filter(|s| !s.trim().is_empty()) {
        let kind = target::Kind::parse(name)?;
        let bin = match kind {
            target::Kind::AionRf1 | target::Kind::AionRf3 => {
                a.aion_bin.clone().unwrap_or_else(default_aion_bin)
            }
            target::Kind::Prometheus => a.prometheus_bin.clone(),
            target::Kind::VictoriaMetrics => a.vm_bin.clone(),
        };
        specs.push(target::TargetSpec {
            kind,
            bin,
            config_file: a.aion_config.clone(),
            shards: a.aion_shards,
        });
    }
    let workload = build_workload(&a.load)?;
    let mcfg = measure::MeasureConfig {
        concurrency: a.load.concurrency,
        deadline: Duration::from_secs(a.load.deadline_secs),
        request_timeout: Duration::from_secs(a.load.request_timeout_secs),
        settle: Duration::from_secs(a.settle_secs),
        verify: !a.no_verify,
    };
    let (mut results, mut all_ran) = (Vec::new(), true);
    for spec in &specs {
        eprintln!("== {} ({})", spec.kind.name(), spec.bin.display());
        // A target that cannot run is reported and skipped; the others still run.
        match measure::measure(spec, workload.clone(), &mcfg).await {
            Ok(m) => {
                println!("{}", report::machine_line(&m));
                results.push(m);
            }
            Err(e) => {
                println!("SKIPPED {}: {e}", spec.kind.name());
                all_ran = false;
            }
        }
    }
    println!("\n{}", report::table(&results));
    print!("{}", report::ratios(&results));
    print!("{}", report::goals(&results));
    print!("{}", report::threads(&results, 8));
    print!("{}", report::errors(&results));
    Ok(all_ran
        && results
            .iter()
            .all(|m| m.load.failed_requests == 0 && m.load.unsent_samples == 0))
}

async fn send(a: SendArgs) -> Result<bool> {
    let url = http::Url::parse(&a.url)?;
    let mut extra = Vec::new();
    for h in &a.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| {
            BenchError::InvalidArgument(format!("header {h:?} is not `Name: value`"))
        })?;
        extra.push((k.trim().to_string(), v.trim().to_string()));
    }
    let workload = build_workload(&a.load)?;
    let cfg = load::LoadConfig {
        url,
        concurrency: a.load.concurrency,
        deadline: Duration::from_secs(a.load.deadline_secs),
        request_timeout: Duration::from_secs(a.load.request_timeout_secs),
        extra_headers: extra,
    };
    let r = load::run(workload, cfg).await;
    println!(
        "SEND ok_samples={} ok_requests={} failed_requests={} unsent_samples={} wall_s={:.3} samples_per_s={:.0}",
        r.ok_samples,
        r.ok_requests,
        r.failed_requests,
        r.unsent_samples,
        r.wall.as_secs_f64(),
        r.samples_per_sec()
    );
    if let Some(e) = &r.first_error {
        println!("FIRST ERROR: {e}");
    }
    Ok(r.failed_requests == 0 && r.unsent_samples == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aion-bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = rt.block_on(async {
        match cli.cmd {
            Cmd::Ingest(a) => ingest(a).await,
            Cmd::Send(a) => send(a).await,
            Cmd::Query(a) => query_bench(a).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("aion-bench: some requests failed or were not sent (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("aion-bench: {e}");
            ExitCode::from(2)
        }
    }
}
