//! `aion --target=distributor` in front of three `aion --target=ingester`
//! processes (16 shards, RF 3), multi-tenancy on:
//!
//! 1. Routing: series pushed through the distributor land on the shard the
//!    ring names for (tenant, labels), every acknowledged sample is readable
//!    with a Select on that shard's leader, tenants stay apart, and a sample
//!    the shard rejects comes back as a 400 naming its series.
//! 2. Real senders for over 60 s at once: Debian's Prometheus (tenant
//!    `team-a`, scraping itself and node_exporter) and vmagent (tenant
//!    `team-b`, scraping itself and node_exporter); their own failure
//!    counters stay 0 and each tenant sees only its own series (per-shard
//!    gRPC reads, and PromQL through `aion --target=querier`).
//! 3. The leader of the most shards is SIGKILLed during pushes: the client
//!    only ever sees 2xx or 5xx, pushes succeed again, and no acknowledged
//!    sample is lost.
//!
//! The tests share the machine's two cores, so they run one at a time.
//! Run: `cargo test --test distributor_cluster -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use aion_ingester::client::ShardRing;
use aion_model::labels::Labels;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::cluster::Cluster;
use support::distributor::{eq, DistributorProc, ShardReader, TenantProxy};
use support::local_cluster::QuerierProc;
use support::peers::{require, Peer, Prometheus};
use support::{push, series, ureq_get};

const SHARDS: u64 = 16;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A 3-ingester RF 3 cluster and a multi-tenant distributor in front of it.
fn start(tmp: &tempfile::TempDir) -> (Cluster, DistributorProc) {
    let cluster = Cluster::start(3, SHARDS, 3, &[]);
    let dist = DistributorProc::start(
        &cluster.addrs(),
        SHARDS,
        tmp.path().join("distributor.log"),
        &["--auth.multitenancy-enabled=true"],
    );
    (cluster, dist)
}

#[test]
fn pushes_land_on_the_ring_shard_and_are_readable_on_its_leader() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, dist) = start(&tmp);
    let t0 = now_ms() - 10_000;
    let n = 300;
    let team_a: Vec<_> = (0..n)
        .map(|i| series(&[("__name__", "routed"), ("i", &i.to_string())], &[(t0, i as f64), (t0 + 1000, i as f64 + 0.5)]))
        .collect();
    let (code, body) = push(&dist.http, Some("team-a"), team_a);
    assert_eq!(code, 204, "push failed: {body}\n{}", dist.log());
    let team_b: Vec<_> = (0..20).map(|i| series(&[("__name__", "routed"), ("b", &i.to_string())], &[(t0, 1.0)])).collect();
    assert_eq!(push(&dist.http, Some("team-b"), team_b).0, 204);
    assert_eq!(push(&dist.http, None, vec![series(&[("__name__", "x")], &[(t0, 1.0)])]).0, 401);

    let rt = runtime();
    let reader = rt.block_on(async { ShardReader::new(&cluster.addrs()) });
    let ring = ShardRing::new(SHARDS);
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for shard in 0..SHARDS {
        for s in rt.block_on(reader.select(shard, "team-a", vec![eq("__name__", "routed")])) {
            assert_eq!(ring.shard_of("team-a", &s.labels), shard, "{} is on shard {shard}", s.labels);
            let i: f64 = s.labels.get("i").unwrap().parse().unwrap();
            let got: Vec<(i64, f64)> = s.samples.iter().map(|x| (x.t, x.v)).collect();
            assert_eq!(got, vec![(t0, i), (t0 + 1000, i + 0.5)], "samples of {}", s.labels);
            assert!(found.insert(s.labels.to_string(), shard).is_none(), "{} on two shards", s.labels);
            used.insert(shard);
        }
        for s in rt.block_on(reader.select(shard, "team-b", vec![eq("__name__", "routed")])) {
            assert!(s.labels.get("b").is_some(), "team-a's {} visible to team-b", s.labels);
            assert_eq!(ring.shard_of("team-b", &s.labels), shard);
            found.insert(format!("b/{}", s.labels), shard);
        }
    }
    assert_eq!(found.len(), n + 20, "every acknowledged series is on its shard's leader");
    assert_eq!(used.len() as u64, SHARDS, "300 series use every shard");

    // A sample older than its series' newest is rejected by the shard: 400 naming the series.
    let (code, body) = push(&dist.http, Some("team-a"), vec![series(&[("__name__", "routed"), ("i", "7")], &[(t0 - 60_000, 1.0)])]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("out of order") && body.contains("routed{i=\"7\"}"), "{body}");
    let m = dist.metrics();
    assert!(m.contains("aion_distributor_shard_push_duration_seconds_bucket"), "{m}");
    assert!(m.contains("aion_distributor_shard_push_retries_total"), "{m}");
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sum of every sample of metric `name` (any labels) in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *found.get_or_insert(0.0) += v;
    }
    found
}

fn metrics_of(url: &str) -> String {
    ureq_get(url).map(|(_, b)| b).unwrap_or_default()
}

#[test]
fn prometheus_and_vmagent_write_for_a_minute_as_separate_tenants() {
    let (Some(prom_bin), Some(vmagent_bin), Some(node_bin)) =
        (require("prometheus"), require("vmagent"), require("prometheus-node-exporter"))
    else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, dist) = start(&tmp);
    let node = Peer::start(
        &node_bin,
        &["--web.listen-address={{ADDR}}", "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.loadavg"],
        "/metrics",
    );
    // Debian's Prometheus 2.42 drops `remote_write.headers` (prometheus/prometheus#13030):
    // it writes through a proxy that adds the header when missing, as nginx does for Cortex.
    let proxy = TenantProxy::start(&dist.http, "team-a");
    let prom_config = format!(
        "global:\n  scrape_interval: 2s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['{{{{SELF}}}}']}}]\n\
         \x20 - job_name: node\n    static_configs: [{{targets: ['{}']}}]\n\
         remote_write:\n  - url: {}/api/v1/push\n    headers: {{X-Scope-OrgID: team-a}}\n\
         \x20   queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}\n\
         \x20   metadata_config: {{send_interval: 5s}}\n",
        node.addr, proxy.url
    );
    let vm_dir = tmp.path().join("vmagent");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let vm_scrape = vm_dir.join("scrape.yml");
    let vm_port = support::free_port();
    std::fs::write(
        &vm_scrape,
        format!(
            "global:\n  scrape_interval: 2s\nscrape_configs:\n\
             \x20 - job_name: vmagent\n    static_configs: [{{targets: ['127.0.0.1:{vm_port}']}}]\n\
             \x20 - job_name: node-b\n    static_configs: [{{targets: ['{}']}}]\n",
            node.addr
        ),
    )
    .unwrap();
    let started = Instant::now();
    let prom = Prometheus::start(&prom_bin, &tmp.path().join("prom"), &prom_config, &[]);
    let vm_args = [
        format!("-httpListenAddr=127.0.0.1:{vm_port}"),
        format!("-promscrape.config={}", vm_scrape.display()),
        format!("-remoteWrite.url={}/api/v1/push", dist.http),
        "-remoteWrite.headers=X-Scope-OrgID:team-b".to_string(),
        format!("-remoteWrite.tmpDataPath={}", vm_dir.join("data").display()),
        "-remoteWrite.flushInterval=1s".to_string(),
    ];
    let _vmagent = KillOnDrop(
        std::process::Command::new(&vmagent_bin)
            .args(&vm_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(vm_dir.join("vmagent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let vm_metrics_url = format!("http://127.0.0.1:{vm_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(ureq_get(&format!("http://127.0.0.1:{vm_port}/health")), Ok((200, _))) {
        assert!(Instant::now() < deadline, "vmagent not ready in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Both send for more than 60 s; check their failure counters every 10 s on the way.
    let prom_metrics_url = format!("{}/metrics", prom.url);
    while started.elapsed() < Duration::from_secs(63) {
        std::thread::sleep(Duration::from_secs(10));
        let pm = metrics_of(&prom_metrics_url);
        assert_eq!(metric_sum(&pm, "prometheus_remote_storage_samples_failed_total"), Some(0.0), "prometheus failures; its log:\n{}", prom.log());
        let vm = metrics_of(&vm_metrics_url);
        assert_eq!(metric_sum(&vm, "vmagent_remotewrite_errors_total").unwrap_or(0.0), 0.0, "vmagent errors:\n{}", dist.log());
    }
    let pm = metrics_of(&prom_metrics_url);
    let vm = metrics_of(&vm_metrics_url);
    let sent = metric_sum(&pm, "prometheus_remote_storage_samples_total").unwrap_or(0.0);
    let (p_failed, p_retried) = (
        metric_sum(&pm, "prometheus_remote_storage_samples_failed_total"),
        metric_sum(&pm, "prometheus_remote_storage_samples_retried_total").unwrap_or(0.0),
    );
    let vm_rows = metric_sum(&vm, "vmagent_remotewrite_rows_pushed_after_relabel_total").unwrap_or(0.0);
    let vm_errors = metric_sum(&vm, "vmagent_remotewrite_errors_total").unwrap_or(0.0);
    let vm_retries = metric_sum(&vm, "vmagent_remotewrite_retries_count_total").unwrap_or(0.0);
    let vm_dropped = metric_sum(&vm, "vmagent_remotewrite_packets_dropped_total").unwrap_or(0.0);
    let vm_non_2xx: f64 = vm
        .lines()
        .filter(|l| l.starts_with("vmagent_remotewrite_requests_total{") && !l.contains("status_code=\"2"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b);
    let (added, forwarded) = (proxy.added.load(Ordering::SeqCst), proxy.forwarded.load(Ordering::SeqCst));
    eprintln!("tenant proxy: {forwarded} Prometheus requests forwarded, header added to {added}");
    assert!(forwarded > 20, "Prometheus sent only {forwarded} requests");
    eprintln!(
        "after {:?}: prometheus sent {sent} samples (failed {p_failed:?}, retried {p_retried}); \
         vmagent pushed {vm_rows} rows (errors {vm_errors}, retries {vm_retries}, dropped {vm_dropped}, non-2xx {vm_non_2xx})",
        started.elapsed()
    );
    assert!(sent > 1000.0, "Prometheus sent too few samples: {sent}");
    assert_eq!(p_failed, Some(0.0));
    assert!(vm_rows > 1000.0, "vmagent pushed too few rows: {vm_rows}");
    assert_eq!((vm_errors, vm_retries, vm_dropped, vm_non_2xx), (0.0, 0.0, 0.0, 0.0), "vmagent failures");

    let rt = runtime();
    let reader = rt.block_on(async { ShardReader::new(&cluster.addrs()) });
    let jobs_a = rt.block_on(reader.label_values(SHARDS, "team-a", "job"));
    let jobs_b = rt.block_on(reader.label_values(SHARDS, "team-b", "job"));
    assert_eq!(jobs_a, BTreeSet::from(["node".to_string(), "prometheus".to_string()]), "team-a's jobs");
    assert_eq!(jobs_b, BTreeSet::from(["node-b".to_string(), "vmagent".to_string()]), "team-b's jobs");
    let names_a = rt.block_on(reader.label_values(SHARDS, "team-a", "__name__"));
    let names_b = rt.block_on(reader.label_values(SHARDS, "team-b", "__name__"));
    assert!(names_a.contains("prometheus_build_info") && !names_b.contains("prometheus_build_info"));
    assert!(names_b.iter().any(|n| n.starts_with("vmagent_")) && !names_a.iter().any(|n| n.starts_with("vmagent_")));
    eprintln!("team-a: {} metric names, team-b: {}", names_a.len(), names_b.len());

    // The same through `aion --target=querier` and PromQL.
    let peers: Vec<String> = cluster.addrs().iter().map(|(id, a)| format!("{id}={a}")).collect();
    let querier =
        QuerierProc::start(tmp.path(), "querier", &peers.join(","), SHARDS, &["--auth.multitenancy-enabled=true"]);
    let at = (now_ms() - 5_000) as f64 / 1000.0;
    for (tenant, want) in [("team-a", ["node", "prometheus"]), ("team-b", ["node-b", "vmagent"])] {
        let v = support::query(&querier.http, Some(tenant), "count by (job) (up)", at);
        let mut jobs: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{tenant}: {v}\n{}", querier.log()))
            .iter()
            .map(|r| r["metric"]["job"].as_str().unwrap_or_default().to_string())
            .collect();
        jobs.sort();
        assert_eq!(jobs, want, "{tenant} sees exactly its own jobs through the querier: {v}");
    }
    // Metric metadata Prometheus sent (team-a) is served by the querier exactly as
    // Prometheus serves it, and only to team-a.
    for metric in ["node_load1", "prometheus_http_requests_total"] {
        let url = format!("{}/prometheus/api/v1/metadata?metric={metric}", querier.http);
        let (code, got) = support::http_request("GET", &url, &[("X-Scope-OrgID", "team-a")], b"").expect("metadata");
        assert_eq!(code, 200, "{got}");
        let (_, want) = support::ureq_get(&format!("{}/api/v1/metadata?metric={metric}", prom.url)).expect("prom metadata");
        let (got, want): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&got).expect("JSON"), serde_json::from_str(&want).expect("JSON"));
        assert!(want["data"][metric].as_array().is_some_and(|a| !a.is_empty()), "Prometheus has no metadata for {metric}");
        assert_eq!(got["data"], want["data"], "metadata of {metric} through the cluster");
        let (_, other) = support::http_request("GET", &url, &[("X-Scope-OrgID", "team-b")], b"").expect("metadata");
        assert!(other.contains("\"data\":{}"), "team-b must not see team-a's metadata: {other}");
    }
    drop(prom);
}

/// Timestamp step between two batches of the kill test.
const STEP_MS: i64 = 2;

/// Pushes batch `i` (series `kill{s="0".."31"}`, one sample at `base + i * STEP_MS`) until `stop`;
/// returns the acknowledged batch numbers (with when) and every status seen.
fn push_until(url: &str, base: i64, stop: &AtomicBool) -> (Vec<(u64, Instant)>, BTreeMap<u16, u64>) {
    let mut acked = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let t = base + i as i64 * STEP_MS;
        let batch = (0..32).map(|s| series(&[("__name__", "kill"), ("s", &s.to_string())], &[(t, i as f64)])).collect();
        let (code, body) = push(url, Some("team-k"), batch);
        *statuses.entry(code).or_insert(0) += 1;
        assert!(code / 100 == 2 || code / 100 == 5, "batch {i}: {code} {body}");
        if code / 100 == 2 {
            acked.push((i, Instant::now()));
            i += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (acked, statuses)
}

#[test]
fn a_shard_leader_killed_during_pushes_loses_no_acknowledged_sample() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (mut cluster, dist) = start(&tmp);
    let base = now_ms() - 120_000;
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (url, stop) = (dist.http.clone(), stop.clone());
        std::thread::spawn(move || push_until(&url, base, &stop))
    };
    std::thread::sleep(Duration::from_secs(3));
    let leaders = cluster.leaders(Duration::from_secs(10));
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for l in leaders.values() {
        *led.entry(*l).or_default() += 1;
    }
    let (victim, n_led) = led.iter().max_by_key(|(_, n)| **n).map(|(v, n)| (*v, *n)).unwrap();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let killed_at = Instant::now();
    eprintln!("killed node {victim}, leader of {n_led} shards");
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::SeqCst);
    let (acked, statuses) = pusher.join().unwrap();
    eprintln!("statuses {statuses:?}; {} batches acknowledged; {:?} after the kill", acked.len(), killed_at.elapsed());
    assert!(acked.len() > 20, "too few acknowledged batches: {statuses:?}\n{}", dist.log());
    let after_kill = acked.iter().filter(|(_, at)| *at > killed_at + Duration::from_secs(4)).count();
    assert!(after_kill > 0, "no push acknowledged from 4 s after the kill on: {statuses:?}\n{}", dist.log());
    let longest_gap = acked.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or_default();
    eprintln!("{after_kill} batches acknowledged from 4 s after the kill on; longest gap between acks {longest_gap:?}");
    let m = dist.metrics();
    eprintln!(
        "{}",
        m.lines().filter(|l| l.starts_with("aion_distributor_shard_push_retries_total") || l.starts_with("aion_distributor_shard_push_redirects_total")).filter(|l| !l.ends_with(" 0")).collect::<Vec<_>>().join("\n")
    );

    // Every acknowledged sample is on its shard's (new) leader.
    let live: BTreeMap<u64, String> = cluster.addrs().into_iter().filter(|(id, _)| *id != victim).collect();
    let rt = runtime();
    let reader = rt.block_on(async { ShardReader::new(&live) });
    let mut stored: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for shard in 0..SHARDS {
        for s in rt.block_on(reader.select(shard, "team-k", vec![eq("__name__", "kill")])) {
            stored.entry(s.labels.to_string()).or_default().extend(s.samples.iter().map(|x| x.t));
        }
    }
    let mut missing = 0;
    for s in 0..32 {
        let labels = Labels::from_pairs([("__name__", "kill"), ("s", &s.to_string())]);
        let have = stored.get(&labels.to_string()).cloned().unwrap_or_default();
        for (i, _) in &acked {
            if !have.contains(&(base + *i as i64 * STEP_MS)) {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "{missing} acknowledged samples lost (of {})", acked.len() * 32);
    let last = acked.last().unwrap().0;
    assert!(statuses.keys().all(|c| c / 100 == 2 || c / 100 == 5));
    eprintln!("last acknowledged batch {last}; all {} samples found", acked.len() * 32);
}
