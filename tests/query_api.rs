//! The Prometheus HTTP query API of a real `aion`: JSON shapes, both path
//! prefixes, GET and POST, error format, metadata endpoints, tenant isolation,
//! and promtool as a client.

mod support;

use serde_json::Value as Json;
use support::peers::require;
use support::{http_request, push, series, ureq_get, urlencode, Aion};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn get_json(url: &str, tenant: Option<&str>) -> (u16, Json) {
    let h: Vec<(&str, &str)> = tenant.map(|t| vec![("X-Scope-OrgID", t)]).unwrap_or_default();
    let (code, body) = http_request("GET", url, &h, &[]).expect("GET");
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

/// Loads `http_requests_total` for two jobs with 10 samples 15 s apart ending at `end`.
fn load(base: &str, tenant: Option<&str>, end: i64) {
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (end - (9 - i) * 15_000, (i * 10) as f64)).collect();
    let (code, body) = push(
        base,
        tenant,
        vec![
            series(&[("__name__", "http_requests_total"), ("instance", "a"), ("job", "api")], &samples),
            series(&[("__name__", "http_requests_total"), ("instance", "b"), ("job", "web")], &samples),
            series(&[("__name__", "temperature"), ("instance", "a"), ("job", "api")], &samples[..1]),
        ],
    );
    assert_eq!(code, 204, "push failed: {body}");
}

#[test]
fn query_api_shapes_errors_and_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&tmp.path().join("aion"), &[]);
    let end = now_ms() / 1000 * 1000;
    load(&aion.http, None, end);
    let t = end as f64 / 1000.0;

    // Instant query, GET on the Mimir-style prefix and POST on the plain one give the same answer.
    let q = urlencode("sum by (job) (http_requests_total)");
    let (code, get) = get_json(&format!("{}/prometheus/api/v1/query?query={q}&time={t}", aion.http), None);
    assert_eq!(code, 200);
    let (code, body) = http_request(
        "POST",
        &format!("{}/api/v1/query", aion.http),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("query={q}&time={t}").as_bytes(),
    )
    .expect("POST");
    assert_eq!(code, 200);
    let post: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(get, post);
    assert_eq!(get["data"]["resultType"], "vector");
    let result = get["data"]["result"].as_array().expect("result array");
    assert_eq!(result.len(), 2);
    for r in result {
        assert_eq!(r["value"][1], "90", "{r}");
        assert_eq!(r["value"][0].as_f64(), Some(t));
    }

    // Range query: a matrix with one point per step.
    let url = format!(
        "{}/api/v1/query_range?query={}&start={}&end={t}&step=15",
        aion.http,
        urlencode("http_requests_total{job=\"api\"}"),
        t - 135.0
    );
    let (code, r) = get_json(&url, None);
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["data"]["resultType"], "matrix");
    let values = r["data"]["result"][0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 10);
    assert_eq!(values[0][1], "0");
    assert_eq!(values[9][1], "90");

    // Errors: Prometheus's error JSON and status codes.
    let (code, e) = get_json(&format!("{}/api/v1/query?query={}", aion.http, urlencode("sum(")), None);
    assert_eq!(code, 400);
    assert_eq!(e["status"], "error");
    assert_eq!(e["errorType"], "bad_data");
    let (code, e) = get_json(&format!("{}/api/v1/query_range?query=up&start=10&end=0&step=1", aion.http), None);
    assert_eq!((code, e["errorType"].as_str()), (400, Some("bad_data")), "{e}");
    let (code, e) = get_json(&format!("{}/api/v1/query_range?query=up&start=0&end=100000&step=1", aion.http), None);
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap_or("").contains("11,000 points"), "{e}");
    let (code, e) = get_json(&format!("{}/api/v1/query?query=up&time=yesterday", aion.http), None);
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap_or("").contains("\"time\""), "{e}");

    // Metadata endpoints.
    let (_, s) = get_json(&format!("{}/api/v1/series?match[]={}", aion.http, urlencode("http_requests_total")), None);
    assert_eq!(s["data"].as_array().map(|a| a.len()), Some(2), "{s}");
    assert_eq!(s["data"][0]["job"], "api");
    let (code, e) = get_json(&format!("{}/api/v1/series", aion.http), None);
    assert_eq!((code, e["error"].as_str()), (400, Some("no match[] parameter provided")));
    let (_, l) = get_json(&format!("{}/api/v1/labels", aion.http), None);
    assert_eq!(l["data"], serde_json::json!(["__name__", "instance", "job"]));
    let (_, v) = get_json(&format!("{}/prometheus/api/v1/label/job/values", aion.http), None);
    assert_eq!(v["data"], serde_json::json!(["api", "web"]));
    let (_, v) = get_json(&format!("{}/api/v1/label/__name__/values?match[]={}", aion.http, urlencode("{job=\"web\"}")), None);
    assert_eq!(v["data"], serde_json::json!(["http_requests_total"]));
    let (_, v) = get_json(&format!("{}/api/v1/label/job/values?limit=1", aion.http), None);
    assert_eq!(v["data"], serde_json::json!(["api"]));
    assert!(v["warnings"].is_array(), "a truncated answer carries a warning: {v}");
    let (code, b) = get_json(&format!("{}/api/v1/status/buildinfo", aion.http), None);
    assert_eq!(code, 200);
    assert!(b["data"]["version"].is_string());

    // Ops endpoints.
    assert_eq!(ureq_get(&format!("{}/ready", aion.http)).expect("ready").0, 200);
    let (code, metrics) = ureq_get(&format!("{}/metrics", aion.http)).expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("aion_tsdb_samples_appended_total 21"), "{metrics}");
    assert!(metrics.contains("process_resident_memory_bytes"));
}

#[test]
fn tenants_never_see_each_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&tmp.path().join("aion"), &["--auth.multitenancy-enabled=true"]);
    let end = now_ms() / 1000 * 1000;
    load(&aion.http, Some("team-a"), end);
    let t = end as f64 / 1000.0;
    let q = urlencode("count(http_requests_total)");
    let (code, a) = get_json(&format!("{}/api/v1/query?query={q}&time={t}", aion.http), Some("team-a"));
    assert_eq!(code, 200);
    assert_eq!(a["data"]["result"][0]["value"][1], "2");
    let (code, b) = get_json(&format!("{}/api/v1/query?query={q}&time={t}", aion.http), Some("team-b"));
    assert_eq!(code, 200);
    assert_eq!(b["data"]["result"], serde_json::json!([]), "team-b sees team-a's data: {b}");
    let (_, l) = get_json(&format!("{}/api/v1/labels", aion.http), Some("team-b"));
    assert_eq!(l["data"], serde_json::json!([]));
    let (code, e) = get_json(&format!("{}/api/v1/query?query={q}", aion.http), None);
    assert_eq!(code, 401, "missing tenant must be rejected: {e}");
}

#[test]
fn promtool_queries_aion() {
    let Some(promtool) = require("promtool") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&tmp.path().join("aion"), &[]);
    let end = now_ms() / 1000 * 1000;
    load(&aion.http, None, end);
    let server = format!("{}/prometheus", aion.http);
    let run = |args: &[&str]| -> String {
        let out = std::process::Command::new(&promtool).args(args).output().expect("run promtool");
        assert!(out.status.success(), "promtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let t = format!("{}", end / 1000);
    let start = format!("{}", end / 1000 - 120);
    let inst = run(&["query", "instant", &format!("--time={t}"), &server, "sum(http_requests_total)"]);
    assert!(inst.contains("=> 180"), "{inst}");
    let range = run(&["query", "range", &format!("--start={start}"), &format!("--end={t}"), "--step=15s", &server, "http_requests_total{job=\"web\"}"]);
    assert!(range.contains("90 @["), "{range}");
    let ser = run(&["query", "series", "--match=http_requests_total", &server]);
    assert!(ser.contains("job=\"api\"") && ser.contains("job=\"web\""), "{ser}");
    let labels = run(&["query", "labels", &server, "job"]);
    assert_eq!(labels.split_whitespace().collect::<Vec<_>>(), vec!["api", "web"], "{labels}");
}
