//! Each per-tenant query limit through the HTTP handlers over an in-memory
//! store: the status, `errorType` and message a client sees, that another
//! tenant is unaffected, and the rejection counter in the registry.

#![allow(clippy::unwrap_used)]

use crate::api::{query, QueryApi};
use crate::engine::Engine;
use crate::limits::{parse_overrides, QueryLimits, TenantQueryLimits};
use aion_model::memstore::MemStore;
use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
use aion_model::{Labels, Sample, TenantId};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const OVERRIDES: &str = "overrides:
  strict:
    max_query_length: 1h
    max_series_per_query: 2
    max_samples_per_query: 100
    max_query_lookback: 90m
  slow:
    query_timeout: 1ns
";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Three series `m{i}` for both tenants, one sample a minute over the last 3 h.
fn api(now: i64) -> (Arc<QueryApi>, Registry) {
    let store = MemStore::new();
    for tenant in ["strict", "free", "slow"] {
        let series = (0..3)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
                samples: (0..180).map(|k| Sample::new(now - (180 - k) * 60_000, k as f64)).collect(),
            })
            .collect();
        store.append(WriteBatch { tenant: TenantId::new(tenant).unwrap(), series }).unwrap();
    }
    let mut registry = Registry::default();
    let limits = TenantQueryLimits::new(QueryLimits::default());
    limits.set_overrides(parse_overrides(OVERRIDES, &QueryLimits::default()).unwrap());
    let api = QueryApi::new(Engine::default(), Arc::new(store), true, &mut registry).with_limits(Arc::new(limits));
    (Arc::new(api), registry)
}

async fn get(api: &Arc<QueryApi>, tenant: &str, path_and_query: &str) -> (u16, Json) {
    let uri: Uri = path_and_query.parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Scope-OrgID", HeaderValue::from_str(tenant).unwrap());
    let resp = if uri.path().ends_with("query_range") {
        query::range(State(api.clone()), Method::GET, uri, headers, Bytes::new()).await
    } else {
        query::instant(State(api.clone()), Method::GET, uri, headers, Bytes::new()).await
    };
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn range(q: &str, start_ms: i64, end_ms: i64, step: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    format!("/api/v1/query_range?query={q}&start={}&end={}&step={step}", start_ms as f64 / 1000.0, end_ms as f64 / 1000.0)
}

fn instant(q: &str, t_ms: i64) -> String {
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    format!("/api/v1/query?query={q}&time={}", t_ms as f64 / 1000.0)
}

fn assert_rejected(r: &(u16, Json), status: u16, error_type: &str, limit: &str, tenant: &str) {
    let (code, body) = r;
    assert_eq!(*code, status, "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(limit) && msg.contains(tenant), "message must name {limit} and {tenant}: {msg}");
}

fn rejections(registry: &Registry, tenant: &str, reason: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let key = format!("aion_query_limit_rejections_total{{tenant=\"{tenant}\",reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn max_query_length_rejects_long_ranges_and_windows() {
    let now = now_ms();
    let (api, registry) = api(now);
    let r = get(&api, "strict", &range("m{i=\"0\"}", now - 80 * 60_000, now, "60s")).await;
    assert_rejected(&r, 400, "bad_data", "max_query_length", "strict");
    let r = get(&api, "strict", &instant("rate(m[2h])", now)).await;
    assert_rejected(&r, 400, "bad_data", "max_query_length", "strict");
    assert_eq!(rejections(&registry, "strict", "max_query_length"), 2);
    let (code, body) = get(&api, "free", &range("m{i=\"0\"}", now - 80 * 60_000, now, "60s")).await;
    assert_eq!(code, 200, "other tenants keep the unlimited default: {body}");
    // Clamped first: a range reaching before the 90m lookback is cut to it, then fits.
    let (code, body) = get(&api, "strict", &range("m{i=\"0\"}", now - 3 * 3_600_000, now - 40 * 60_000, "10m")).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn max_query_lookback_clamps_start_and_hides_old_data() {
    let now = now_ms();
    let (api, _) = api(now);
    let start = now - 3 * 3_600_000;
    let end = now - 40 * 60_000;
    let (code, body) = get(&api, "strict", &range("m{i=\"0\"}", start, end, "10m")).await;
    assert_eq!(code, 200, "{body}");
    let points = body["data"]["result"][0]["values"].as_array().unwrap();
    let first = points[0][0].as_f64().unwrap() * 1000.0;
    assert!(first >= (now - 90 * 60_000) as f64, "start clamped to now - 90m, got {first} (now {now})");
    assert_eq!((first as i64 - start) % 600_000, 0, "clamped start stays on the step grid");
    let (_, free) = get(&api, "free", &range("m{i=\"0\"}", start, end, "10m")).await;
    assert!(free["data"]["result"][0]["values"].as_array().unwrap().len() > points.len());
    let (code, body) = get(&api, "strict", &range("m", start, now - 2 * 3_600_000, "10m")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"], serde_json::json!([]), "wholly before the lookback: empty");
    let (code, body) = get(&api, "strict", &instant("count(m)", now - 2 * 3_600_000)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"], serde_json::json!([]), "old data is invisible to instant queries");
}

#[tokio::test]
async fn max_series_and_samples_per_query_reject_with_422() {
    let now = now_ms();
    let (api, registry) = api(now);
    let r = get(&api, "strict", &instant("count(m)", now)).await;
    assert_rejected(&r, 422, "execution", "max_series_per_query", "strict");
    let r = get(&api, "strict", &instant("m{i=\"0\"} + on() m{i=\"1\"} + on() m{i=\"2\"}", now)).await;
    assert_rejected(&r, 422, "execution", "max_series_per_query", "strict");
    let (code, body) = get(&api, "strict", &instant("count(m{i!=\"2\"})", now)).await;
    assert_eq!(code, 200, "two series are within the limit: {body}");
    assert_eq!(rejections(&registry, "strict", "max_series_per_query"), 2);

    let r = get(&api, "strict", &range("m{i=\"0\"}", now - 59 * 60_000, now, "30s")).await;
    assert_rejected(&r, 422, "execution", "max_samples_per_query", "strict");
    assert_eq!(rejections(&registry, "strict", "max_samples_per_query"), 1);
    let (code, body) = get(&api, "free", &range("m", now - 30 * 60_000, now, "60s")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn query_timeout_answers_503_timeout() {
    let now = now_ms();
    let (api, registry) = api(now);
    let r = get(&api, "slow", &range("sum(rate(m[5m]))", now - 3 * 3_600_000, now, "15s")).await;
    assert_rejected(&r, 503, "timeout", "query_timeout", "slow");
    assert_eq!(rejections(&registry, "slow", "query_timeout"), 1);
    let (code, _) = get(&api, "free", &range("sum(rate(m[5m]))", now - 3 * 3_600_000, now, "15s")).await;
    assert_eq!(code, 200);
}
