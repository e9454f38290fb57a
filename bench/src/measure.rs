//! One measured run: start a target, send the workload, account the server's
//! CPU and memory, check the data is queryable, stop it.

use crate::error::Result;
use crate::http;
use crate::load::{self, LoadConfig, LoadReport};
use crate::procstat::{self, RssPoller};
use crate::target::{self, Running, TargetSpec};
use crate::workload::Workload;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How to measure.
#[derive(Debug, Clone)]
pub struct MeasureConfig {
    /// Connections.
    pub concurrency: usize,
    /// The generator stops after this long.
    pub deadline: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Idle time after the load whose CPU still counts (deferred work: flushes, merges).
    pub settle: Duration,
    /// Run a `count(...)` query afterwards to check every series is stored.
    pub verify: bool,
}

/// What one target did with the workload.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Target name.
    pub name: String,
    /// The generator's view.
    pub load: LoadReport,
    /// Active series in the workload.
    pub series: usize,
    /// Server CPU seconds while the load ran.
    pub cpu_load_s: f64,
    /// Server CPU seconds from the first request to the end of the settle period.
    pub cpu_total_s: f64,
    /// The generator's own CPU seconds during the load (it shares the machine).
    pub generator_cpu_s: f64,
    /// Server RSS just before the load, bytes.
    pub idle_rss: u64,
    /// Largest server RSS seen (max of polled VmRSS and, for one process, VmHWM), bytes.
    pub peak_rss: u64,
    /// Series the target's query API counted afterwards, when verified.
    pub series_seen: Option<u64>,
    /// Where the server's CPU went, by thread name, seconds, largest first.
    pub threads: Vec<(String, f64)>,
    /// The ingesters alone, for cluster targets (their CPU and summed RSS).
    pub ingesters: Option<GroupUsage>,
}

/// CPU and memory of a group of processes over one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupUsage {
    /// Processes in the group.
    pub processes: usize,
    /// CPU seconds while the load ran.
    pub cpu_load_s: f64,
    /// CPU seconds from the first request to the end of the settle period.
    pub cpu_total_s: f64,
    /// Summed RSS just before the load, bytes.
    pub idle_rss: u64,
    /// Largest summed RSS seen, bytes.
    pub peak_rss: u64,
}

impl Measurement {
    /// Accepted samples per server CPU-second (settle period included).
    pub fn samples_per_cpu_s(&self) -> f64 {
        self.load.ok_samples as f64 / self.cpu_total_s.max(1e-9)
    }

    /// Server CPU seconds per million accepted samples (settle period included).
    pub fn cpu_s_per_msample(&self) -> f64 {
        self.cpu_total_s / (self.load.ok_samples as f64 / 1e6).max(1e-9)
    }

    /// Peak RSS per active series, bytes.
    pub fn rss_per_series(&self) -> f64 {
        self.peak_rss as f64 / self.series.max(1) as f64
    }

    /// Peak RSS growth over idle, per active series, bytes.
    pub fn rss_growth_per_series(&self) -> f64 {
        self.peak_rss.saturating_sub(self.idle_rss) as f64 / self.series.max(1) as f64
    }

    /// The same run seen from the ingesters alone (named `<target> ingesters`),
    /// for cluster targets: their CPU and summed RSS instead of the whole set's.
    pub fn ingesters_view(&self) -> Option<Measurement> {
        let g = self.ingesters?;
        Some(Measurement {
            name: format!("{} ingesters", self.name),
            cpu_load_s: g.cpu_load_s,
            cpu_total_s: g.cpu_total_s,
            idle_rss: g.idle_rss,
            peak_rss: g.peak_rss,
            threads: Vec::new(),
            ingesters: None,
            ..self.clone()
        })
    }
}

/// Accounts one group of processes: idle RSS, polled peak RSS, CPU at the
/// start of the load, at its end and after the settle period.
struct GroupProbe {
    pids: Vec<u32>,
    idle_rss: u64,
    poller: RssPoller,
    cpu_start: u64,
    cpu_load_end: u64,
}

impl GroupProbe {
    fn start(pids: Vec<u32>) -> GroupProbe {
        let idle_rss = pids
            .iter()
            .filter_map(|&p| procstat::rss(p).ok())
            .map(|r| r.0)
            .sum();
        let poller = RssPoller::start(pids.clone(), Duration::from_millis(100));
        let cpu_start = sum_cpu(&pids);
        GroupProbe {
            pids,
            idle_rss,
            poller,
            cpu_start,
            cpu_load_end: cpu_start,
        }
    }

    fn load_ended(&mut self) {
        self.cpu_load_end = sum_cpu(&self.pids);
    }

    /// After the settle period: stops polling and returns the group's usage.
    fn finish(self, ticks_per_s: f64) -> Result<GroupUsage> {
        let cpu_end = sum_cpu(&self.pids);
        let mut peak_rss = self.poller.stop();
        if let [pid] = self.pids.as_slice() {
            peak_rss = peak_rss.max(procstat::rss(*pid)?.1);
        }
        Ok(GroupUsage {
            processes: self.pids.len(),
            cpu_load_s: self.cpu_load_end.saturating_sub(self.cpu_start) as f64 / ticks_per_s,
            cpu_total_s: cpu_end.saturating_sub(self.cpu_start) as f64 / ticks_per_s,
            idle_rss: self.idle_rss,
            peak_rss,
        })
    }
}

fn sum_cpu(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| procstat::cpu_ticks(p).ok())
        .sum()
}

fn sum_threads(pids: &[u32]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for &p in pids {
        for (k, v) in procstat::threads(p) {
            *out.entry(k).or_insert(0) += v;
        }
    }
    out
}

/// Starts `spec`, measures it under `workload`, stops it.
pub async fn measure(
    spec: &TargetSpec,
    workload: Arc<Workload>,
    cfg: &MeasureConfig,
) -> Result<Measurement> {
    let running = target::start(spec).await?;
    let result = measure_running(&running, workload, cfg).await;
    if let Err(e) = &result {
        eprintln!(
            "{}: measurement failed: {e}; server log tail:\n{}",
            running.name,
            running.log_tail(2000)
        );
    }
    running.stop(Duration::from_secs(60)).await;
    result
}

async fn measure_running(
    running: &Running,
    workload: Arc<Workload>,
    cfg: &MeasureConfig,
) -> Result<Measurement> {
    let tck = procstat::clock_ticks_per_sec() as f64;
    let pids = running.pids();
    let ingester_pids = running.ingester_pids();
    let me = std::process::id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let threads_before = sum_threads(&pids);
    let mut ingesters = (!ingester_pids.is_empty()).then(|| GroupProbe::start(ingester_pids));
    let mut all = GroupProbe::start(pids.clone());
    let gen0 = procstat::cpu_ticks(me)?;
    let lcfg = LoadConfig {
        url: running.write_url.clone(),
        concurrency: cfg.concurrency,
        deadline: cfg.deadline,
        request_timeout: cfg.request_timeout,
        extra_headers: Vec::new(),
    };
    let report = load::run(workload.clone(), lcfg).await;
    all.load_ended();
    if let Some(g) = ingesters.as_mut() {
        g.load_ended();
    }
    let gen1 = procstat::cpu_ticks(me)?;
    tokio::time::sleep(cfg.settle).await;
    let total = all.finish(tck)?;
    let ingesters = ingesters.map(|g| g.finish(tck)).transpose()?;
    let threads_after = sum_threads(&pids);
    let series_seen = if cfg.verify {
        count_series(running, workload.last_ms()).await
    } else {
        None
    };
    Ok(Measurement {
        name: running.name.to_string(),
        load: report,
        series: workload.config.series,
        cpu_load_s: total.cpu_load_s,
        cpu_total_s: total.cpu_total_s,
        generator_cpu_s: gen1.saturating_sub(gen0) as f64 / tck,
        idle_rss: total.idle_rss,
        peak_rss: total.peak_rss,
        series_seen,
        threads: procstat::thread_delta(&threads_before, &threads_after)
            .into_iter()
            .map(|(k, t)| (k, t as f64 / tck))
            .collect(),
        ingesters,
    })
}

/// `count({__name__=~"bench_.+"})` at the last sample's time, or None (with a message) if the query fails.
async fn count_series(running: &Running, last_ms: i64) -> Option<u64> {
    let q = "count(%7B__name__%3D~%22bench_.%2B%22%7D)";
    let path = format!(
        "{}?query={q}&time={}.{:03}",
        running.query_path,
        last_ms / 1000,
        last_ms % 1000
    );
    let r = match http::get(&running.base.with_path(&path), Duration::from_secs(120)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: verification query failed: {e}", running.name);
            return None;
        }
    };
    let parsed = parse_count(&r.body);
    if r.status != 200 || parsed.is_none() {
        eprintln!(
            "{}: verification query answered {}: {}",
            running.name,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    parsed
}

/// The value of the single sample of a Prometheus instant-query vector result.
fn parse_count(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = v.pointer("/data/result/0/value/1")?.as_str()?;
    s.parse::<f64>().ok().map(|f| f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_count_result() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"100000"]}]}}"#;
        assert_eq!(parse_count(body), Some(100_000));
        assert_eq!(
            parse_count(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            None
        );
    }
}
