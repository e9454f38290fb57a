//! Per-tenant distributor limits against the real `aion` binary, configured
//! through `--config.file` with a runtime overrides file: a tenant over its
//! ingestion rate gets 429 naming the limit and tenant while a tenant with a
//! larger override is accepted; the active-series limit answers 400; a changed
//! overrides file takes effect without a restart (and a broken one keeps the
//! last good overrides); after every rejection the process still serves and
//! what was stored before is unchanged, as seen through the query API.

mod support;

use serde_json::Value as Json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{push, query, series, ureq_get, Aion};

const OVERRIDES_B: &str =
    "  team-b:\n    ingestion_rate: 100000\n    ingestion_burst_size: 100000\n    max_global_series_per_user: 1000\n";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// The single value of an instant-vector query (None for an empty result).
fn scalar(base: &str, tenant: &str, q: &str, time_s: f64) -> Option<f64> {
    let resp: Json = query(base, Some(tenant), q, time_s);
    assert_eq!(resp["status"], "success", "query {q} failed: {resp}");
    let result = resp["data"]["result"].as_array().unwrap_or_else(|| panic!("no result array: {resp}"));
    assert!(result.len() <= 1, "query {q}: more than one series: {resp}");
    result
        .first()
        .map(|s| s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("bad value {s}")))
}

fn write_overrides(path: &Path, team_a: &str) {
    std::fs::write(path, format!("overrides:\n{team_a}{OVERRIDES_B}")).expect("write overrides file");
}

fn start(dir: &Path) -> Aion {
    let overrides = dir.join("overrides.yaml");
    write_overrides(&overrides, "");
    let config = dir.join("aion.yaml");
    let text = format!(
        "multitenancy_enabled: true\ndistributor:\n  overrides_file: {}\n  overrides_period: 1s\n  limits:\n    \
         ingestion_rate: 100\n    ingestion_burst_size: 100\n    max_global_series_per_user: 3\n",
        overrides.display()
    );
    std::fs::write(&config, text).expect("write config");
    let flag = format!("--config.file={}", config.display());
    Aion::start(&dir.join("data"), &[flag.as_str()])
}

/// `n` samples of `lim_rate`, 1 ms apart from `t0`.
fn rate_series(n: usize, t0: i64) -> Vec<aion_proto::prometheus::TimeSeries> {
    let samples: Vec<(i64, f64)> = (0..n).map(|i| (t0 + i as i64, 1.0)).collect();
    vec![series(&[("__name__", "lim_rate")], &samples)]
}

fn series_i(i: usize, t: i64) -> aion_proto::prometheus::TimeSeries {
    series(&[("__name__", "lim_series"), ("i", &i.to_string())], &[(t, i as f64)])
}

/// Checks the process serves and the data stored so far is exactly as pushed.
fn assert_stored(base: &str, t0: i64, lim_series: f64) {
    assert_eq!(ureq_get(&format!("{base}/ready")).expect("ready").0, 200);
    let at = (t0 + 10_000) as f64 / 1000.0;
    assert_eq!(scalar(base, "team-a", "count_over_time(lim_rate[1m])", at), Some(50.0));
    assert_eq!(scalar(base, "team-a", "count(lim_series)", at), Some(lim_series));
    assert_eq!(scalar(base, "team-b", "count_over_time(lim_rate[1m])", at), Some(2000.0));
}

#[test]
fn rate_and_series_limits_with_runtime_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aion = start(dir.path());
    let base = aion.http.as_str();
    let t0 = now_ms() - 60_000;

    // Rate: 50 of team-a's 100-sample burst fit; 200 more never can.
    assert_eq!(push(base, Some("team-a"), rate_series(50, t0)), (204, String::new()));
    let (code, text) = push(base, Some("team-a"), rate_series(200, t0 + 1000));
    assert_eq!(code, 429, "{text}");
    assert_eq!(
        text.trim_end(),
        "ingestion rate limit (100) exceeded while adding 200 samples for tenant team-a \
         (ingestion_rate 100 samples/s, ingestion_burst_size 100)"
    );
    // team-b's override allows 2000 samples at once.
    assert_eq!(push(base, Some("team-b"), rate_series(2000, t0)), (204, String::new()));

    // Series: team-a has lim_rate; 2 more fit under 3, the third is refused.
    let (code, text) = push(base, Some("team-a"), (0..3).map(|i| series_i(i, t0)).collect());
    assert_eq!(code, 400, "{text}");
    assert_eq!(
        text.trim_end(),
        r#"per-tenant series limit of 3 (max_global_series_per_user) exceeded for tenant team-a: new series 'lim_series{i="2"}' rejected"#
    );
    assert_stored(base, t0, 2.0);

    // Raise team-a's series limit in the file; the running process picks it up.
    let overrides = dir.path().join("overrides.yaml");
    write_overrides(&overrides, "  team-a:\n    max_global_series_per_user: 5\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, text) = push(base, Some("team-a"), vec![series_i(2, t0)]);
        if code == 204 {
            break;
        }
        assert_eq!(code, 400, "{text}");
        assert!(Instant::now() < deadline, "new override not applied within 15 s: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_stored(base, t0, 3.0);

    // A broken file is logged and the last good overrides (limit 5) stay.
    std::fs::write(&overrides, "overrides:\n  team-a:\n    max_global_series_per_usr: 1\n").expect("write");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(push(base, Some("team-a"), vec![series_i(3, t0)]).0, 204, "limit 5 still in force");
    let (code, text) = push(base, Some("team-a"), vec![series_i(4, t0)]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("per-tenant series limit of 5"), "{text}");
    assert!(aion.log().contains("keeping the last good runtime overrides"), "log: {}", aion.log());
    assert_stored(base, t0, 4.0);

    let (_, metrics) = ureq_get(&format!("{base}/metrics")).expect("metrics");
    for want in [
        r#"aion_distributor_discarded_samples_total{tenant="team-a",reason="rate_limited"} 200"#,
        r#"aion_distributor_discarded_samples_total{tenant="team-a",reason="per_user_series_limit"} "#,
    ] {
        assert!(metrics.contains(want), "want {want} in metrics:\n{metrics}");
    }
}
