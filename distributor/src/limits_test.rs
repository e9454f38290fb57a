//! Scenario tests of the per-tenant limits on the HTTP push path, with
//! runtime overrides from a file.

use crate::push_test::{fixture, ts, Fixture};
use crate::{DistributorConfig, Limits};
use axum::http::StatusCode;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn tenant_cfg(limits: Limits) -> DistributorConfig {
    DistributorConfig { multitenancy_enabled: true, limits, ..Default::default() }
}

/// `n` samples of one series `m{i=...}` at `t0`, `t0+1`, ...
fn samples(n: usize, t0: i64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (t0 + i as i64, i as f64)).collect()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aion-limits-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn over_rate_is_429_naming_limit_and_tenant_while_an_overridden_tenant_passes() {
    let p =
        temp_file("rate.yaml", "overrides:\n  big:\n    ingestion_rate: 100000\n    ingestion_burst_size: 100000\n");
    let limits = Limits { ingestion_rate: 10, ingestion_burst_size: 20, ..Limits::default() };
    let f = fixture(DistributorConfig { overrides_file: Some(p), ..tenant_cfg(limits) });
    let t0 = now_ms();
    let (code, _) = f.push(Some("team-a"), vec![ts(&[("__name__", "m")], &samples(15, t0))]).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, body) = f.push(Some("team-a"), vec![ts(&[("__name__", "m")], &samples(15, t0 + 100))]).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        "ingestion rate limit (10) exceeded while adding 15 samples for tenant team-a \
         (ingestion_rate 10 samples/s, ingestion_burst_size 20)"
    );
    let (code, body) = f.push(Some("big"), vec![ts(&[("__name__", "m")], &samples(5000, t0))]).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(f.stored("team-a")[0].1.len(), 15, "the rejected request stored nothing");
    let m = f.metrics_text();
    assert!(m.contains(r#"discarded_samples_total{tenant="team-a",reason="rate_limited"} 15"#), "{m}");
}

#[tokio::test]
async fn series_limits_are_400_and_admitted_series_are_stored() {
    let limits = Limits { max_global_series_per_user: 3, max_global_series_per_metric: 2, ..Limits::default() };
    let f = fixture(tenant_cfg(limits));
    let t = now_ms();
    let s = |name: &str, i: &str| ts(&[("__name__", name), ("i", i)], &[(t, 1.0)]);
    let (code, body) = f.push(Some("t"), vec![s("a", "1"), s("a", "2"), s("a", "3")]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"per-metric series limit of 2 (max_global_series_per_metric) exceeded for tenant t, metric a: new series 'a{i="3"}' rejected"#
    );
    let (code, body) = f.push(Some("t"), vec![s("b", "1"), s("b", "2")]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"per-tenant series limit of 3 (max_global_series_per_user) exceeded for tenant t: new series 'b{i="2"}' rejected"#
    );
    // Known series keep being accepted at the limit.
    let t2 = t + 1000;
    let again =
        vec![ts(&[("__name__", "a"), ("i", "1")], &[(t2, 2.0)]), ts(&[("__name__", "b"), ("i", "1")], &[(t2, 2.0)])];
    assert_eq!(f.push(Some("t"), again).await.0, StatusCode::NO_CONTENT);
    let names: Vec<String> = f.stored("t").into_iter().map(|(l, _)| l).collect();
    assert_eq!(names, vec![r#"a{i="1"}"#, r#"a{i="2"}"#, r#"b{i="1"}"#]);
    let m = f.metrics_text();
    assert!(m.contains(r#"discarded_samples_total{tenant="t",reason="per_metric_series_limit"} 1"#), "{m}");
    assert!(m.contains(r#"discarded_series_total{tenant="t",reason="per_user_series_limit"} 1"#), "{m}");
    assert!(m.contains(r#"aion_distributor_active_series{tenant="t"} 3"#), "{m}");
}

#[tokio::test]
async fn samples_outside_the_grace_periods_are_400_and_the_rest_stored() {
    let limits = Limits {
        creation_grace_period: Duration::from_secs(60),
        past_grace_period: Duration::from_secs(3600),
        ..Limits::default()
    };
    let f = fixture(tenant_cfg(limits));
    let now = now_ms();
    let old = now - 2 * 3_600_000;
    let (code, body) = f.push(Some("t"), vec![ts(&[("__name__", "m")], &[(old, 1.0), (now, 2.0)])]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with(&format!("sample too old: timestamp {old} is more than 1h (past_grace_period)")),
        "{body}"
    );
    assert!(body.ends_with("for series 'm' of tenant t"), "{body}");
    let future = now + 600_000;
    let (code, body) = f.push(Some("t"), vec![ts(&[("__name__", "m")], &[(future, 3.0)])]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("is more than 1m (creation_grace_period)"), "{body}");
    let stored = f.stored("t");
    assert_eq!(stored[0].1.iter().map(|s| s.t).collect::<Vec<_>>(), vec![now]);
    let m = f.metrics_text();
    assert!(m.contains(r#"discarded_samples_total{tenant="t",reason="sample_too_old"} 1"#), "{m}");
    assert!(m.contains(r#"discarded_samples_total{tenant="t",reason="sample_too_far_in_future"} 1"#), "{m}");
}

async fn push_n(f: &Fixture, tenant: &str, name: &str, n: usize) -> StatusCode {
    let series = (0..n).map(|i| ts(&[("__name__", name), ("i", &i.to_string())], &[(now_ms(), 1.0)])).collect();
    f.push(Some(tenant), series).await.0
}

#[tokio::test]
async fn overrides_file_changes_apply_without_restart_and_bad_files_keep_the_last_good() {
    let p = temp_file("reload.yaml", "overrides:\n  t:\n    max_global_series_per_user: 1\n");
    let cfg = DistributorConfig {
        overrides_file: Some(p.clone()),
        overrides_period: Duration::from_millis(50),
        ..tenant_cfg(Limits::default())
    };
    let f = fixture(cfg);
    assert_eq!(push_n(&f, "t", "a", 2).await, StatusCode::BAD_REQUEST);
    std::fs::write(&p, "overrides:\n  t:\n    max_global_series_per_user: 10\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while push_n(&f, "t", "b", 3).await != StatusCode::NO_CONTENT {
        assert!(std::time::Instant::now() < deadline, "new override not applied within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&p, "overrides:\n  t:\n    max_global_series_per_usr: 1\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(push_n(&f, "t", "c", 4).await, StatusCode::NO_CONTENT, "the limit of 10 is still in force");
    assert_eq!(push_n(&f, "t", "d", 3).await, StatusCode::BAD_REQUEST, "1 + 3 + 4 + 3 > 10");
}

#[tokio::test]
async fn an_invalid_overrides_file_fails_the_start() {
    let p = temp_file("bad.yaml", "overrides:\n  t:\n    bogus: 1\n");
    let cfg = DistributorConfig { overrides_file: Some(p), ..Default::default() };
    let mut reg = prometheus_client::registry::Registry::default();
    let store = std::sync::Arc::new(aion_model::memstore::MemStore::new());
    let e = crate::Distributor::new(cfg, store, &mut reg).unwrap_err().to_string();
    assert!(e.contains("bogus") && e.contains("bad.yaml"), "{e}");
}
