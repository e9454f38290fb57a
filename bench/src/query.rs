//! `aion-bench query`: dashboard-query latency of Aion vs Prometheus vs
//! VictoriaMetrics on the same data in the same run. Every target is started
//! fresh on loopback — Aion as one process (`aion`) and/or as the 3-ingester
//! RF 3 cluster behind a querier (`aion-cluster`), or given as URLs of a
//! running cluster —
//! receives identical remote-write bodies (24 h at 1 m of a service fleet,
//! step by step so no sender runs ahead of another), then each query of
//! [`queries::QUERIES`] is run `runs` times per target after one warm-up;
//! the median latency is reported with the ratio of Aion to the faster peer.
//! VictoriaMetrics is queried with `nocache=1` so its result cache does not
//! turn repeats into cache hits. Result series counts are compared so a
//! target that answers fast but wrong is caught.

mod data;
mod queries;

use crate::error::{BenchError, Result};
use crate::http::{self, Conn, Url};
use crate::target;
use crate::workload::Body;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options of the query benchmark.
#[derive(Debug, Clone)]
pub struct QueryBenchConfig {
    /// Scrape targets of the fleet (≈ 70 series each).
    pub fleet: usize,
    /// Hours of data (1 sample per minute).
    pub hours: usize,
    /// Timed runs per query and target (after one warm-up).
    pub runs: usize,
    /// Targets to start: `aion` (one process), `aion-cluster` (3 ingesters
    /// RF 3 + distributor + querier, `target/cluster.rs`), `prometheus`,
    /// `victoria-metrics`.
    pub targets: Vec<target::Kind>,
    /// Binaries per kind.
    pub aion_bin: PathBuf,
    /// Aion config file (limits off for old samples).
    pub aion_config: Option<PathBuf>,
    /// Shards of the Aion cluster target.
    pub aion_shards: u32,
    /// Prometheus binary.
    pub prometheus_bin: PathBuf,
    /// VictoriaMetrics binary.
    pub vm_bin: PathBuf,
    /// Instead of starting Aion: a running Aion's push URL and Prometheus API base.
    pub aion_external: Option<(Url, Url)>,
}

/// Where a target receives writes and answers queries.
struct Endpoint {
    name: String,
    write: Url,
    /// API base, e.g. `/prometheus/api/v1` or `/api/v1`.
    api: Url,
    extra_query: &'static str,
    _running: Option<target::Running>,
}

/// Runs the benchmark; prints a table and `QUERY` lines. Returns false if
/// a target failed to load or answered with a different number of series.
pub async fn run(cfg: QueryBenchConfig) -> Result<bool> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let interval_ms = 60_000;
    let steps = cfg.hours * 60;
    let end_ms = now_ms / interval_ms * interval_ms - interval_ms;
    let start_ms = end_ms - interval_ms * (steps as i64 - 1);
    let dcfg = data::DataConfig { targets: cfg.fleet, steps, interval_ms, start_ms, batch: 2000 };
    let t = Instant::now();
    let (bodies, series) = data::build(dcfg);
    eprintln!("query data: {series} series x {steps} steps = {} samples, built in {:.1}s", series * steps, t.elapsed().as_secs_f64());

    let mut endpoints = Vec::new();
    for kind in &cfg.targets {
        endpoints.push(start_endpoint(&cfg, *kind).await?);
    }
    for ep in &endpoints {
        let t = Instant::now();
        load(ep, &bodies).await?;
        wait_visible(ep, series, end_ms).await?;
        eprintln!("{}: loaded and visible in {:.1}s", ep.name, t.elapsed().as_secs_f64());
    }

    let mut ok = true;
    print_header(&endpoints);
    for q in queries::QUERIES {
        let mut medians = Vec::new();
        let mut counts = Vec::new();
        for ep in &endpoints {
            let path = query_path(ep, q, start_ms, end_ms);
            let (median, count) = time_query(ep, &path, cfg.runs).await?;
            println!("QUERY name={} target={} median_ms={:.2} series={}", q.name, ep.name, median, count);
            medians.push(median);
            counts.push(count);
        }
        if counts.windows(2).any(|w| w[0] != w[1]) {
            println!("MISMATCH {}: series counts {:?}", q.name, counts);
            ok = false;
        }
        print_row(q.name, &endpoints, &medians);
    }
    for ep in endpoints {
        if let Some(r) = ep._running {
            r.stop(Duration::from_secs(30)).await;
        }
    }
    Ok(ok)
}

async fn start_endpoint(cfg: &QueryBenchConfig, kind: target::Kind) -> Result<Endpoint> {
    if let (target::Kind::AionRf1, Some((write, api))) = (kind, &cfg.aion_external) {
        return Ok(Endpoint { name: "aion-external".into(), write: write.clone(), api: api.clone(), extra_query: "", _running: None });
    }
    let bin = match kind {
        target::Kind::AionRf1 | target::Kind::AionRf3 => cfg.aion_bin.clone(),
        target::Kind::Prometheus => cfg.prometheus_bin.clone(),
        target::Kind::VictoriaMetrics => cfg.vm_bin.clone(),
    };
    let spec = target::TargetSpec { kind, bin, config_file: cfg.aion_config.clone(), shards: cfg.aion_shards };
    let running = target::start(&spec).await?;
    let api_path = running.query_path.trim_end_matches("/query");
    let name = if kind == target::Kind::AionRf3 { "aion-cluster" } else { kind.name() };
    Ok(Endpoint {
        name: name.into(),
        write: running.write_url.clone(),
        api: running.base.with_path(api_path),
        extra_query: if kind == target::Kind::VictoriaMetrics { "&nocache=1" } else { "" },
        _running: Some(running),
    })
}

/// Sends every step's bodies (up to 4 at a time), step after step.
async fn load(ep: &Endpoint, steps: &[Vec<Body>]) -> Result<()> {
    let mut conns: Vec<Conn> = Vec::new();
    for _ in 0..4 {
        conns.push(Conn::connect(&ep.write.authority).await?);
    }
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let timeout = Duration::from_secs(30);
    for step in steps {
        for group in step.chunks(conns.len()) {
            let sends = conns.iter_mut().zip(group).map(|(c, b)| c.request("POST", &ep.write.path, &headers, &b.data, timeout));
            for r in futures::future::join_all(sends).await {
                let r = r?;
                if !(200..300).contains(&r.status) {
                    return Err(BenchError::Target {
                        target: ep.name.clone(),
                        why: format!("remote write answered {}: {}", r.status, String::from_utf8_lossy(&r.body)),
                    });
                }
            }
        }
        for c in conns.iter_mut() {
            if c.is_broken() {
                *c = Conn::connect(&ep.write.authority).await?;
            }
        }
    }
    Ok(())
}

/// Polls `count({__name__=~"bench_.+"})` until every series is visible (60 s max).
async fn wait_visible(ep: &Endpoint, series: usize, end_ms: i64) -> Result<()> {
    let path = format!(
        "{}/query?query={}&time={}{}",
        ep.api.path,
        urlencode(r#"count({__name__=~"bench_.+"})"#),
        end_ms as f64 / 1000.0,
        ep.extra_query
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = http::get(&ep.api.with_path(&path), Duration::from_secs(30)).await {
            last = String::from_utf8_lossy(&r.body).into_owned();
            if last.contains(&format!("\"{series}\"")) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BenchError::Target { target: ep.name.clone(), why: format!("not all {series} series visible after 60 s; last answer: {last}") })
}

/// Table header: one column per target, then Aion's ratio to the faster peer.
fn print_header(endpoints: &[Endpoint]) {
    let mut line = format!("{:<24}", "query");
    for ep in endpoints {
        line.push_str(&format!(" {:>16}", format!("{} ms", ep.name)));
    }
    line.push_str(&format!(" {:>24}", "aion/fastest peer"));
    println!("{line}");
}

/// One table row; the ratio column lists every Aion target's median over the
/// faster of Prometheus and VictoriaMetrics.
fn print_row(name: &str, endpoints: &[Endpoint], medians: &[f64]) {
    let is_aion = |ep: &Endpoint| ep.name.starts_with("aion");
    let fastest = endpoints.iter().zip(medians).filter(|(ep, _)| !is_aion(ep)).map(|(_, m)| *m).reduce(f64::min);
    let mut line = format!("{name:<24}");
    for m in medians {
        line.push_str(&format!(" {:>16}", format!("{m:.2}")));
    }
    let ratios: Vec<String> = endpoints
        .iter()
        .zip(medians)
        .filter(|(ep, _)| is_aion(ep))
        .filter_map(|(_, a)| fastest.filter(|f| *f > 0.0).map(|f| format!("{:.2}x", a / f)))
        .collect();
    line.push_str(&format!(" {:>24}", if ratios.is_empty() { "-".to_string() } else { ratios.join(" ") }));
    println!("{line}");
}

fn query_path(ep: &Endpoint, q: &queries::BenchQuery, start_ms: i64, end_ms: i64) -> String {
    let (s, e) = (start_ms as f64 / 1000.0, end_ms as f64 / 1000.0);
    if q.range {
        format!("{}/query_range?query={}&start={s}&end={e}&step=60{}", ep.api.path, urlencode(q.expr), ep.extra_query)
    } else {
        format!("{}/query?query={}&time={e}{}", ep.api.path, urlencode(q.expr), ep.extra_query)
    }
}

/// One warm-up, then `runs` timed runs on a keep-alive connection: (median ms, series in the answer).
async fn time_query(ep: &Endpoint, path: &str, runs: usize) -> Result<(f64, usize)> {
    let mut conn = Conn::connect(&ep.api.authority).await?;
    let timeout = Duration::from_secs(120);
    let mut times = Vec::with_capacity(runs);
    let mut series = 0;
    for i in 0..=runs.max(1) {
        if conn.is_broken() {
            conn = Conn::connect(&ep.api.authority).await?;
        }
        let t = Instant::now();
        let r = conn.request("GET", path, &[], &[], timeout).await?;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        if r.status != 200 {
            return Err(BenchError::Target { target: ep.name.clone(), why: format!("query {path} answered {}: {}", r.status, String::from_utf8_lossy(&r.body)) });
        }
        if i == 0 {
            series = count_series(&r.body);
        } else {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], series))
}

fn count_series(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("data")?.get("result")?.as_array().map(Vec::len))
        .unwrap_or(0)
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
