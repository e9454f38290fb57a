//! `aion --target=querier` over a sharded, replicated ingester cluster.
//!
//! - the PromQL conformance scripts run a second time, through the gRPC
//!   fan-out client over 3 ingesters (RF 3), with the same outcome per eval
//!   as over the in-memory store;
//! - a differential run against a real Prometheus through a querier process;
//! - `deploy/local/cluster.sh up|status|down` and promtool against its querier;
//! - fail-over: one ingester down is invisible, a shard without quorum is a
//!   clear error, or a warning with partial responses on.
//!
//! Data is loaded through an `aion --target=distributor` by remote write
//! (conformance, differential, cluster.sh), or by gRPC `Push` to the shard
//! leaders where the distributor is not the point (fail-over).
//!
//! Run: `cargo test --test querier_cluster -- --nocapture --test-threads=1`.

mod support;

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/data.rs"]
mod data;
#[path = "differential/queries.rs"]
mod queries;
#[path = "querier_cluster/conformance.rs"]
mod conformance;

use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use compare::{diff, parse_response, Outcome};
use queries::{Grid, Kind, Query};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::local_cluster::{ClusterScript, GrpcLoader, LocalCluster, Loader};
use support::peers::{require, Prometheus};
use support::{http_request, ureq_get, urlencode};

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("BUG: clock before 1970").as_secs() as i64
}

/// `n` series `m{i="…"}` with one sample each at `t_ms` (value = i).
fn small_batch(n: usize, t_ms: i64) -> WriteBatch {
    WriteBatch {
        tenant: TenantId::anonymous(),
        series: (0..n)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("i", i.to_string().as_str()), ("job", "j")]),
                samples: vec![Sample::new(t_ms, i as f64)],
            })
            .collect(),
    }
}

/// `GET {base}/api/v1/query?query=q&time=t` as JSON (any status).
fn instant(base: &str, q: &str, t: i64) -> (u16, serde_json::Value) {
    let url = format!("{base}/api/v1/query?query={}&time={t}", urlencode(q));
    let (code, body) = ureq_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON from {url}: {e}: {body}")))
}

/// Sends `GET url` and hangs up after `wait` without reading the answer.
fn abandoned_get(url: &str, wait: Duration) {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("URL with a path");
    let mut conn = std::net::TcpStream::connect(host).expect("connect");
    write!(conn, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send request");
    std::thread::sleep(wait);
    drop(conn);
}

fn scalar_of_vector(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A config file lifting the distributor's ingestion limits (test data arrives in bursts).
fn unlimited_distributor_config(dir: &std::path::Path) -> String {
    let path = dir.join("distributor.yaml");
    let yaml = "distributor:\n  limits:\n    ingestion_rate: 0\n    max_global_series_per_user: 0\n";
    std::fs::write(&path, yaml).expect("write distributor config");
    format!("--config.file={}", path.display())
}

#[test]
fn promql_conformance_through_the_fan_out_matches_in_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = unlimited_distributor_config(tmp.path());
    let flags = ["--auth.multitenancy-enabled=true", config.as_str()];
    let cluster = LocalCluster::start_with(3, 16, 3, Some(&flags), &[]);
    conformance::run_both_and_compare(&cluster);
}

/// POSTs `q` to the Prometheus API at `api` (e.g. `http://host/api/v1`).
fn run_query(api: &str, q: &Query) -> Outcome {
    let e = urlencode(&q.expr);
    let (path, form) = match q.kind {
        Kind::Instant { time } => ("query", format!("query={e}&time={time:.3}")),
        Kind::Range { start, end, step } => ("query_range", format!("query={e}&start={start:.3}&end={end:.3}&step={step}")),
    };
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    match http_request("POST", &format!("{api}/{path}"), &headers, form.as_bytes()) {
        Ok((_, body)) => parse_response(&body),
        Err(err) => Outcome::Error(format!("HTTP request failed: {err}")),
    }
}

/// The differential dataset as model batches (tenant `anonymous`), one per remote-write request.
fn batches(reqs: &[aion_proto::prometheus::WriteRequest]) -> Vec<WriteBatch> {
    reqs.iter()
        .map(|r| WriteBatch {
            tenant: TenantId::anonymous(),
            series: r
                .timeseries
                .iter()
                .map(|ts| SeriesSamples {
                    labels: Labels::from_pairs(ts.labels.iter().map(|l| (l.name.clone(), l.value.clone()))),
                    samples: ts.samples.iter().map(|s| Sample::new(s.timestamp, s.value)).collect(),
                })
                .collect(),
        })
        .collect()
}

#[test]
fn promql_through_the_cluster_matches_prometheus() {
    let Some(prom_bin) = require("prometheus") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = unlimited_distributor_config(tmp.path());
    // Querier 0 pushes every aggregation it can down to the shards (never
    // declining as adaptive pushdown may), querier 1 none: both must give
    // Prometheus's answers.
    let (always, no_pushdown) = (tmp.path().join("always.yaml"), tmp.path().join("no-pushdown.yaml"));
    std::fs::write(&always, "querier:\n  adaptive_pushdown: false\n").expect("write config");
    std::fs::write(&no_pushdown, "querier:\n  aggregation_pushdown: false\n").expect("write config");
    let (always, no_pushdown) = (format!("--config.file={}", always.display()), format!("--config.file={}", no_pushdown.display()));
    let cluster = LocalCluster::start_with(3, 16, 3, Some(&[config.as_str()]), &[&[always.as_str()], &[no_pushdown.as_str()]]);
    let prom = Prometheus::start(
        &prom_bin,
        &tmp.path().join("prom"),
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    );
    let start_ms = (now_s() - 60 - data::SAMPLES * data::INTERVAL_MS / 1000) * 1000;
    let dataset = data::generate(0x00A1_0DA7_A5EE_D001, start_ms);
    let requests = dataset.write_requests(2 * 60_000);
    let loader = cluster.loader();
    for (req, batch) in requests.iter().zip(batches(&requests)) {
        loader.push(&batch).unwrap_or_else(|e| panic!("push into the cluster: {e}"));
        let body = support::encode_write(req);
        let headers = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "snappy")];
        let (code, text) = http_request("POST", &format!("{}/api/v1/write", prom.url), &headers, &body).expect("prom write");
        assert!((200..300).contains(&code), "Prometheus rejected a write: {code} {text}");
    }
    let grid = Grid::new(dataset.start_ms);
    let queries = grid.expand(&queries::cases());
    let (ours_api, prom_api) = (format!("{}/api/v1", cluster.queriers[0].prom_base()), format!("{}/api/v1", prom.url));
    let plain_api = format!("{}/api/v1", cluster.queriers[1].prom_base());
    let started = Instant::now();
    let mut mismatches = Vec::new();
    let mut empty = 0;
    for q in &queries {
        let theirs = run_query(&prom_api, q);
        empty += usize::from(theirs.is_empty());
        for (name, api) in [("pushdown", &ours_api), ("no pushdown", &plain_api)] {
            let d = diff(&run_query(api, q), &theirs, q.ordered);
            if !d.is_empty() {
                mismatches.push(format!("  [{name}] {q}\n    {}", d.join("\n    ")));
            }
        }
    }
    // Pushdown was really used by querier 0 and never by querier 1.
    let pushed = aggregate_requests(&cluster.queriers[0].http);
    assert!(pushed >= 16.0, "querier 0 sent {pushed} pushed-down aggregations");
    assert_eq!(aggregate_requests(&cluster.queriers[1].http), 0.0);
    println!(
        "cluster differential: {} queries in {:.1?}, {} differ, {empty} empty in Prometheus",
        queries.len(),
        started.elapsed(),
        mismatches.len()
    );
    assert!(queries.len() >= 150, "only {} queries", queries.len());
    assert!(empty * 10 < queries.len(), "{empty} of {} queries empty in Prometheus", queries.len());
    // Not vacuous: a visibly different query must be reported.
    let q = Query { expr: "memory_usage_bytes * 1.000001".into(), kind: Kind::Instant { time: grid.instants[0] }, ordered: false };
    let control = Query { expr: "memory_usage_bytes".into(), ..q.clone() };
    assert!(!diff(&run_query(&ours_api, &q), &run_query(&prom_api, &control), false).is_empty());
    assert!(mismatches.is_empty(), "{} queries differ:\n{}\nquerier log:\n{}", mismatches.len(), mismatches.join("\n"), cluster.queriers[0].log());
}

/// Per-tenant series and sample limits (10 and 20) answer the same with
/// aggregation pushdown (`pushed`) as without (`plain`): the shards report
/// the series they selected and the samples they loaded, and stop at the
/// limits the querier passes them.
fn tenant_limits_hold_under_pushdown(pushed: &str, plain: &str, t: i64) {
    let range = |q: &str| format!("query_range?query={}&start={}&end={t}&step=10", urlencode(q), t - 100);
    let under = "count(m{i=~\"[0-9]\"})";
    // `n` holds 30 samples in 3 series; one of its series 10.
    let cases = [
        (format!("query?query={}&time={t}&stats=all", urlencode(under)), 200, ""),
        (format!("query?query={}&time={t}", urlencode("count(m)")), 422, "max_series_per_query"),
        (format!("query?query={}&time={t}", urlencode("sum by (job) (m)")), 422, "max_series_per_query"),
        (format!("{}&stats=all", range("sum(n{i=\"1\"})")), 200, ""),
        (format!("{}&stats=all", range("sum(rate(n{i=\"1\"}[1m]))")), 200, ""),
        (range("sum(n)"), 422, "max_samples_per_query"),
        (range("avg(sum_over_time(n[1m]))"), 422, "max_samples_per_query"),
        (range("max(n) / count(n)"), 422, "max_samples_per_query"),
    ];
    for (path, want, limit) in cases {
        let mut seen = Vec::new();
        for base in [pushed, plain] {
            let url = format!("{base}/api/v1/{path}");
            let (code, body) = ureq_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
            assert_eq!(code, want, "{url}: {v}");
            if want == 422 {
                assert_eq!(v["errorType"], "execution", "{url}: {v}");
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(msg.contains(limit) && msg.contains("anonymous"), "{url}: the error must name {limit}: {msg}");
            }
            seen.push((v["data"]["result"].clone(), v["data"]["stats"]["samples"]["totalQueryableSamples"].clone()));
        }
        assert_eq!(seen[0], seen[1], "{path}: pushdown and plain answers (result, samples) differ");
    }
}

/// The sum of the samples of `name` in a process's /metrics whose labels
/// include every one of `labels` (`key="value"`).
fn metric_sum(http: &str, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = ureq_get(&format!("{http}/metrics")).expect("metrics");
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|kv| l.contains(kv)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Successful `Aggregate` (pushdown) shard requests in a querier's /metrics.
fn aggregate_requests(http: &str) -> f64 {
    metric_sum(http, "aion_querier_shard_requests_total", &["op=\"aggregate\"", "outcome=\"ok\""])
}

/// Whether this build has the `distributor` role (being added in parallel).
fn distributor_role_available() -> bool {
    support::repo_dir().join("src/distributor_role.rs").exists()
}

fn promtool(args: &[&str]) -> (bool, String) {
    let bin = require("promtool").expect("promtool checked by caller");
    let out = std::process::Command::new(bin).args(args).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn cluster_script_up_status_down_and_promtool_against_its_querier() {
    let distributors = if distributor_role_available() { "2" } else { "0" };
    let c = ClusterScript::up(&[("AION_DISTRIBUTORS", distributors)]);
    let query_urls = c.values("query_url");
    let pids: Vec<u32> = ["ingester_pid", "distributor_pid", "querier_pid"]
        .iter()
        .flat_map(|k| c.values(k))
        .map(|p| p.parse().expect("numeric pid"))
        .collect();
    assert_eq!(c.values("ingester_pid").len(), 3, "{:?}", c.outputs);
    assert_eq!(query_urls.len(), 2, "{:?}", c.outputs);
    assert!(query_urls[0].ends_with("/prometheus"), "{query_urls:?}");
    assert_eq!(c.values("push_url").len(), distributors.parse::<usize>().expect("count"));

    let t = now_s() - 30;
    let batch = small_batch(20, t * 1000);
    match c.values("push_url").first() {
        // Through a distributor the script started (remote write).
        Some(url) => {
            let base = url.strip_suffix("/api/v1/push").expect("push_url ends with /api/v1/push");
            Loader::RemoteWrite { base: base.to_string() }.push(&batch).expect("remote write");
        }
        // No distributor role in this build: gRPC to the ingesters (gRPC ports base+0..2).
        None => {
            let port = query_urls[0].rsplit(':').next().and_then(|p| p.split('/').next());
            let base = port.and_then(|p| p.parse::<u16>().ok()).expect("querier port") - 10;
            let addrs = (1..=3u64).map(|i| (i, format!("127.0.0.1:{}", base + i as u16 - 1))).collect();
            GrpcLoader::new(&addrs, 16).push(&batch).expect("push");
        }
    }

    let status = c.run("status");
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.status.success(), "{status_text}");
    assert_eq!(status_text.matches(" ready ").count(), pids.len(), "{status_text}");

    if require("promtool").is_some() {
        let url = query_urls[1].as_str();
        let (ok, out) = promtool(&["query", "instant", "--time", &t.to_string(), url, "sum(m)"]);
        assert!(ok && out.contains("=> 190"), "promtool query instant: {out}");
        let (ok, out) = promtool(&["query", "range", "--start", &(t - 60).to_string(), "--end", &t.to_string(), "--step", "30s", url, "count(m)"]);
        assert!(ok && out.contains("20 @["), "promtool query range: {out}");
        let (ok, out) = promtool(&["query", "series", "--match", "m{i=~\"1.\"}", url]);
        assert!(ok && out.lines().filter(|l| l.contains("__name__")).count() == 10, "promtool query series: {out}");
        let (ok, out) = promtool(&["query", "labels", url, "i"]);
        assert!(ok && out.lines().count() == 20 && out.contains("19"), "promtool query labels: {out}");
    }

    let down = c.run("down");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    for pid in &pids {
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("kill -0")
            .success();
        assert!(!alive, "pid {pid} still alive after down");
    }
    let status = c.run("status");
    assert!(!status.status.success(), "status after down must report nothing running");
    assert!(std::fs::read_dir(c.dir().join("pids")).expect("pid dir").next().is_none(), "pid files left behind");
}

#[test]
fn one_ingester_down_is_invisible_a_shard_without_quorum_is_an_error_or_a_warning() {
    // 4 ingesters, RF 3: stopping two leaves some shards with a quorum and others without.
    let tmp = tempfile::tempdir().expect("tempdir");
    let limited = tmp.path().join("limited.yaml");
    std::fs::write(&limited, "querier:\n  max_fetched_series_per_query: 10\n").expect("write config");
    let limited = format!("--config.file={}", limited.display());
    // Tenant limits, once with pushdown (the default) and once without.
    let tenant_limits = "querier:\n  limits:\n    max_series_per_query: 10\n    max_samples_per_query: 20\n";
    let (pushed, plain) = (tmp.path().join("pushed.yaml"), tmp.path().join("plain.yaml"));
    std::fs::write(&pushed, tenant_limits).expect("write config");
    std::fs::write(&plain, format!("{tenant_limits}  aggregation_pushdown: false\n")).expect("write config");
    let (pushed, plain) = (format!("--config.file={}", pushed.display()), format!("--config.file={}", plain.display()));
    let flags: [&[&str]; 5] = [&[], &["--querier.partial-response=true"], &[limited.as_str()], &[pushed.as_str()], &[plain.as_str()]];
    let mut cluster = LocalCluster::start(4, 8, 3, &flags);
    let (strict, partial) = (cluster.queriers[0].prom_base(), cluster.queriers[1].prom_base());
    let t = now_s() - 10;
    cluster.loader().push(&small_batch(64, t * 1000)).expect("push");
    for base in [&strict, &partial] {
        let (code, v) = instant(base, "count(m)", t);
        assert_eq!((code, scalar_of_vector(&v)), (200, Some(64.0)), "{v}");
    }
    // `stats=all`: the samples loaded through the fan-out are counted.
    let (code, body) = ureq_get(&format!("{strict}/api/v1/query?query=m&time={t}&stats=all")).expect("stats query");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((code, v["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64()), (200, Some(64)), "{v}");
    // ... also those the shards loaded for a pushed-down aggregation.
    let (code, body) = ureq_get(&format!("{strict}/api/v1/query?query=count(m)&time={t}&stats=all")).expect("stats query");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((code, v["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64()), (200, Some(64)), "{v}");
    // `n{i="0|1|2"}`: 3 series of 10 samples, for the sample limit.
    let series = (0..3)
        .map(|i| SeriesSamples {
            labels: Labels::from_pairs([("__name__", "n"), ("i", i.to_string().as_str())]),
            samples: (0..10).map(|k| Sample::new((t - 100 + k * 10) * 1000, k as f64)).collect(),
        })
        .collect();
    cluster.loader().push(&WriteBatch { tenant: TenantId::anonymous(), series }).expect("push");
    tenant_limits_hold_under_pushdown(&cluster.queriers[3].prom_base(), &cluster.queriers[4].prom_base(), t);
    // Adaptive pushdown: an answer that moved about one value per sample read
    // makes the querier evaluate the same aggregation from the chunks next
    // time, with the same result.
    let url = format!("{strict}/api/v1/query_range?query={}&start={}&end={t}&step=10", urlencode("sum(n)"), t - 100);
    let answers: Vec<serde_json::Value> = (0..2)
        .map(|_| {
            let (code, body) = ureq_get(&url).expect("range query");
            assert_eq!(code, 200, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["data"]["result"].clone()
        })
        .collect();
    assert_eq!(answers[0], answers[1], "pushed down, then from chunks");
    assert!(answers[0].as_array().is_some_and(|r| r.len() == 1), "{}", answers[0]);
    assert!(metric_sum(&cluster.queriers[0].http, "aion_querier_pushdown_declined_total", &[]) >= 1.0);
    assert!(aggregate_requests(&cluster.queriers[3].http) > 0.0, "the limited querier pushed aggregations down");
    // The fetch limit: 10 series are fine, 64 are not.
    let limited = cluster.queriers[2].prom_base();
    let (code, v) = instant(&limited, "count(m{i=~\"[0-9]\"})", t);
    assert_eq!((code, scalar_of_vector(&v)), (200, Some(10.0)), "{v}");
    let (code, v) = instant(&limited, "count(m)", t);
    assert_eq!((code, v["errorType"].as_str()), (422, Some("execution")), "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("max_fetched_series_per_query (limit 10"), "{v}");

    let stopped = Instant::now();
    cluster.ingesters.nodes.get_mut(&4).expect("node 4").stop();
    let (code, v) = instant(&strict, "count(m)", t);
    assert_eq!((code, scalar_of_vector(&v)), (200, Some(64.0)), "one ingester down: {v}");
    assert!(v.get("warnings").is_none(), "{v}");
    println!("query with one ingester stopped answered in {:.1?}", stopped.elapsed());

    cluster.ingesters.nodes.get_mut(&3).expect("node 3").stop();
    let started = Instant::now();
    let (code, v) = instant(&strict, "count(m)", t);
    println!("strict querier with two ingesters stopped answered in {:.1?}: {v}", started.elapsed());
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["errorType"], "unavailable", "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("shards unavailable (shards ") && msg.contains("shard "), "error must name the shards: {msg}");

    // A client that gives up cancels the fan-out: retries stop long before the 10 s shard budget.
    let retried = |base: &str| -> u64 {
        let (_, metrics) = ureq_get(&format!("{}/metrics", base.trim_end_matches("/prometheus"))).expect("metrics");
        // Any read op: `count(m)` is pushed down (op="aggregate") unless limits are set.
        let lines = metrics.lines().filter(|l| l.starts_with("aion_querier_shard_requests_total{") && l.contains("outcome=\"retried\""));
        lines.filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    abandoned_get(&format!("{strict}/api/v1/query?query=count(m)&time={t}"), Duration::from_millis(800));
    std::thread::sleep(Duration::from_millis(500));
    let after_cancel = retried(&strict);
    assert!(after_cancel > 0, "the dead shards were retried before the client left");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(retried(&strict), after_cancel, "shard retries went on after the client left");

    let (code, v) = instant(&partial, "count(m)", t);
    assert_eq!(code, 200, "{v}");
    let n = scalar_of_vector(&v).expect("a count");
    assert!(n > 0.0 && n < 64.0, "partial answer covers some shards only: {v}");
    let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        // `count(m)` is pushed down, so the shards were asked by `aggregate`.
        warnings.iter().any(|w| w.as_str().unwrap_or_default().starts_with("partial response: aggregate:")),
        "warning expected: {v}"
    );
    let (code, body) = ureq_get(&format!("{partial}/api/v1/labels")).expect("labels");
    assert!(code == 200 && body.contains("partial response: label names"), "{code} {body}");
    let base = partial.strip_suffix("/prometheus").expect("prom base");
    let (_, metrics) = ureq_get(&format!("{base}/metrics")).expect("metrics");
    assert!(metrics.contains("aion_querier_shards_unavailable_total{op=\"aggregate\",partial=\"true\"}"), "{metrics}");
    assert!(metrics.contains("aion_querier_shard_requests_total{op=\"aggregate\",outcome=\"ok\"}"), "{metrics}");
}
