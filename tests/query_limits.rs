//! Per-tenant query limits against the real `aion` binary, configured through
//! `--config.file` (`querier.limits` defaults) with a runtime overrides file:
//! a tenant over `max_series_per_query` gets 422 `execution` naming the limit
//! and tenant while a tenant with a larger override is answered; a range over
//! `max_query_length` gets 400 `bad_data`; a changed overrides file takes
//! effect without a restart (a broken one keeps the last good overrides); and
//! the rejections are counted in `/metrics` by tenant and reason.

mod support;

use serde_json::Value as Json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{http_request, push, series, ureq_get, urlencode, Aion};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

fn start(dir: &Path, overrides: &Path) -> Aion {
    std::fs::write(overrides, "overrides:\n  team-b:\n    max_series_per_query: 100\n").expect("write overrides");
    let config = dir.join("aion.yaml");
    let text = format!(
        "multitenancy_enabled: true\nquerier:\n  overrides_file: {}\n  overrides_period: 1s\n  limits:\n    \
         max_series_per_query: 2\n    max_query_length: 1h\n",
        overrides.display()
    );
    std::fs::write(&config, text).expect("write config");
    let flag = format!("--config.file={}", config.display());
    Aion::start(&dir.join("data"), &[flag.as_str()])
}

/// GET `path?query` for `tenant`; (status, JSON).
fn get(base: &str, tenant: &str, path_and_query: &str) -> (u16, Json) {
    let (code, text) = http_request("GET", &format!("{base}{path_and_query}"), &[("X-Scope-OrgID", tenant)], b"")
        .expect("query request");
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn count_m(base: &str, tenant: &str, now: i64) -> (u16, Json) {
    get(base, tenant, &format!("/api/v1/query?query={}&time={}", urlencode("count(lim_q)"), now as f64 / 1000.0))
}

fn assert_rejected(r: &(u16, Json), status: u16, error_type: &str, limit: &str, tenant: &str) {
    let (code, body) = r;
    assert_eq!(*code, status, "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(limit) && msg.contains(tenant), "message must name {limit} and {tenant}: {msg}");
}

/// Polls until tenant's `count(lim_q)` answers `want_status` (overrides reload every 1 s).
fn wait_status(base: &str, tenant: &str, now: i64, want_status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = count_m(base, tenant, now);
        if code == want_status {
            return;
        }
        assert!(Instant::now() < deadline, "no {want_status} within 15 s; last: {code} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn query_limits_with_runtime_overrides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let overrides = dir.path().join("overrides.yaml");
    let aion = start(dir.path(), &overrides);
    let base = aion.http.clone();
    let now = now_ms();
    for tenant in ["team-a", "team-b"] {
        let s = (0..3).map(|i| series(&[("__name__", "lim_q"), ("i", &i.to_string())], &[(now, 1.0)])).collect();
        let (code, body) = push(&base, Some(tenant), s);
        assert_eq!(code, 204, "push for {tenant}: {body}");
    }

    // Defaults: at most 2 series per query; team-b's override allows 100.
    assert_rejected(&count_m(&base, "team-a", now), 422, "execution", "max_series_per_query", "team-a");
    let (code, body) = count_m(&base, "team-b", now);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "3", "{body}");

    // max_query_length: a 2 h range is refused for both tenants (team-b only overrides the series limit).
    let range = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        urlencode("lim_q"),
        (now - 2 * 3_600_000) as f64 / 1000.0,
        now as f64 / 1000.0
    );
    assert_rejected(&get(&base, "team-b", &range), 400, "bad_data", "max_query_length", "team-b");

    let (_, metrics) = ureq_get(&format!("{base}/metrics")).expect("metrics");
    for want in [
        "aion_query_limit_rejections_total{tenant=\"team-a\",reason=\"max_series_per_query\"} 1",
        "aion_query_limit_rejections_total{tenant=\"team-b\",reason=\"max_query_length\"} 1",
    ] {
        assert!(metrics.contains(want), "want {want} in metrics:\n{metrics}");
    }

    // A changed file is picked up without a restart.
    std::fs::write(&overrides, "overrides:\n  team-a:\n    max_series_per_query: 10\n").expect("write overrides");
    wait_status(&base, "team-a", now, 200);
    wait_status(&base, "team-b", now, 422); // team-b's override is gone: back to the default of 2

    // A broken file is logged and the last good overrides stay in force.
    std::fs::write(&overrides, "overrides:\n  team-a:\n    max_series_per_qry: 1\n").expect("write overrides");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !aion.log().contains("keeping the last good query limit overrides") {
        assert!(Instant::now() < deadline, "no reload error logged; log:\n{}", aion.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count_m(&base, "team-a", now).0, 200, "last good override (10) kept");
}
