//! End to end with real peers: a real Prometheus scrapes itself and a real
//! node_exporter and remote-writes into a real `aion`; after ~30 s, promtool
//! queries Aion and Prometheus at the same instant and the answers must match;
//! Prometheus's remote-write failure counter stays 0, and the metric metadata
//! it sends is served by `/api/v1/metadata` exactly as Prometheus serves it.

mod support;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::peers::{require, Peer, Prometheus};
use support::Aion;

/// Runs `promtool query instant -o json` and returns labels-string -> value.
fn promtool_instant(promtool: &std::path::Path, server: &str, q: &str, time_s: f64) -> BTreeMap<String, f64> {
    let out = Command::new(promtool)
        .args(["query", "instant", "-o", "json", &format!("--time={time_s:.3}"), server, q])
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed for {q} against {server}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("promtool output not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let mut m = BTreeMap::new();
    for s in v.as_array().cloned().unwrap_or_default() {
        let key = s["metric"].to_string();
        let val: f64 = s["value"][1].as_str().and_then(|x| x.parse().ok()).expect("value string");
        m.insert(key, val);
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn prometheus_remote_writes_and_promtool_reads_identical_answers() {
    let (Some(prom_bin), Some(promtool), Some(node_bin)) =
        (require("prometheus"), require("promtool"), require("prometheus-node-exporter"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&tmp.path().join("aion"), &[]);
    let node = Peer::start(
        &node_bin,
        &["--web.listen-address={{ADDR}}", "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.loadavg", "--collector.stat"],
        "/metrics",
    );
    let config = format!(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['{{{{SELF}}}}']}}]\n\
         \x20 - job_name: node\n    static_configs: [{{targets: ['{}']}}]\n\
         remote_write:\n  - url: {}/api/v1/push\n    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}\n    metadata_config: {{send_interval: 5s}}\n",
        node.addr, aion.http
    );
    let prom = Prometheus::start(&prom_bin, &tmp.path().join("prom"), &config, &[]);

    std::thread::sleep(Duration::from_secs(30));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as f64 / 1000.0;
    // Windows end 5 s ago and reach back 10 s, so they start well after the counters did: the
    // 2.x and 3.x rules for extrapolating towards a counter's start only differ near its first sample.
    let t = (now - 5.0).floor();
    let aion_url = format!("{}/prometheus", aion.http);
    let queries = [
        "up",
        "count by (job) (up)",
        "prometheus_build_info",
        "sum by (job) (scrape_samples_scraped)",
        "node_memory_MemTotal_bytes",
        "node_load1",
        "count({__name__=~\"node_cpu_seconds_total\"})",
        "sum by (mode) (rate(node_cpu_seconds_total[10s]))",
        "increase(prometheus_tsdb_head_samples_appended_total[10s])",
        "max_over_time(scrape_duration_seconds[10s])",
        "avg by (job) (scrape_series_added)",
        "prometheus_http_requests_total{handler=\"/metrics\"}",
    ];
    let mut compared = 0;
    for q in queries {
        let want = promtool_instant(&promtool, &prom.url, q, t);
        let got = promtool_instant(&promtool, &aion_url, q, t);
        assert!(!want.is_empty(), "Prometheus returned nothing for {q}: the test would prove nothing");
        assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "series differ for {q}");
        for (k, w) in &want {
            let g = got[k];
            assert!(close(*w, g), "{q} {k}: Prometheus {w}, Aion {g}");
            compared += 1;
        }
    }
    assert!(compared >= 20, "compared only {compared} values");

    let sent = promtool_instant(&promtool, &prom.url, "prometheus_remote_storage_samples_total", now);
    let failed = promtool_instant(&promtool, &prom.url, "prometheus_remote_storage_samples_failed_total", now);
    assert!(sent.values().sum::<f64>() > 1000.0, "Prometheus sent too few samples: {sent:?}");
    assert_eq!(failed.values().sum::<f64>(), 0.0, "remote write failures: {failed:?}; aion log: {}", aion.log());

    // Metric metadata sent by Prometheus's remote write equals what Prometheus itself serves.
    for metric in ["node_load1", "node_cpu_seconds_total", "prometheus_http_requests_total", "go_goroutines"] {
        let want = metadata(&format!("{}/api/v1/metadata?metric={metric}", prom.url));
        let got = metadata(&format!("{aion_url}/api/v1/metadata?metric={metric}"));
        assert!(want[metric].as_array().is_some_and(|a| !a.is_empty()), "Prometheus has no metadata for {metric}: {want}");
        assert_eq!(got, want, "metadata of {metric}");
    }
    let all = metadata(&format!("{aion_url}/api/v1/metadata?limit=3"));
    assert_eq!(all.as_object().map(|o| o.len()), Some(3), "limit=3: {all}");
}

/// The `data` of a `/api/v1/metadata` answer.
fn metadata(url: &str) -> Json {
    let (status, body) = support::ureq_get(url).expect("GET metadata");
    assert_eq!(status, 200, "{url}: {body}");
    let v: Json = serde_json::from_str(&body).expect("JSON");
    v["data"].clone()
}
