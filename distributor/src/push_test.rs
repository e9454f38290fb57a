//! Scenario tests of the HTTP push path: `router()` over a `MemStore`.

use crate::{router, Distributor, DistributorConfig};
use aion_model::memstore::MemStore;
use aion_model::storage::{Queryable, SelectHints};
use aion_model::{Labels, Sample, TenantId};
use aion_proto::prometheus::{self as pb, WriteRequest};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_client::registry::Registry;
use prost::Message;
use std::sync::Arc;
use tower::ServiceExt;

pub(crate) struct Fixture {
    pub(crate) store: Arc<MemStore>,
    pub(crate) registry: Registry,
    pub(crate) app: axum::Router,
}

pub(crate) fn fixture(cfg: DistributorConfig) -> Fixture {
    let store = Arc::new(MemStore::new());
    let mut registry = Registry::default();
    let d = Distributor::new(cfg, store.clone(), &mut registry).expect("valid config");
    Fixture { store, registry, app: router(Arc::new(d)) }
}

pub(crate) fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels.iter().map(|(n, v)| pb::Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|(t, v)| pb::Sample { timestamp: *t, value: *v }).collect(),
        ..Default::default()
    }
}

fn body_of(series: Vec<pb::TimeSeries>) -> Vec<u8> {
    let req = WriteRequest { timeseries: series, ..Default::default() };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy")
}

impl Fixture {
    async fn post(&self, path: &str, tenant: Option<&str>, body: Vec<u8>) -> (StatusCode, String) {
        let mut b = Request::post(path).header("Content-Encoding", "snappy");
        if let Some(t) = tenant {
            b = b.header("X-Scope-OrgID", t);
        }
        let resp = self.app.clone().oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).trim_end().to_string())
    }

    pub(crate) async fn push(&self, tenant: Option<&str>, series: Vec<pb::TimeSeries>) -> (StatusCode, String) {
        self.post("/api/v1/push", tenant, body_of(series)).await
    }

    pub(crate) fn stored(&self, tenant: &str) -> Vec<(String, Vec<Sample>)> {
        let t = TenantId::new(tenant).unwrap();
        let all = self.store.select(&t, &SelectHints::all(), &[]).unwrap();
        all.into_iter().map(|s| (s.labels.to_string(), s.samples)).collect()
    }

    pub(crate) fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }
}

#[tokio::test]
async fn success_is_204_and_data_is_stored_on_both_paths() {
    let f = fixture(DistributorConfig::default());
    let (code, body) = f.push(None, vec![ts(&[("__name__", "up"), ("job", "a")], &[(1000, 1.0), (2000, 2.0)])]).await;
    assert_eq!((code, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let b = body_of(vec![ts(&[("__name__", "up"), ("job", "a")], &[(3000, 3.0)])]);
    let (code, _) = f.post("/api/v1/write", None, b).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let want = vec![Sample::new(1000, 1.0), Sample::new(2000, 2.0), Sample::new(3000, 3.0)];
    assert_eq!(f.stored("anonymous"), vec![("up{job=\"a\"}".to_string(), want)]);
    let m = f.metrics_text();
    assert!(m.contains("aion_distributor_requests_total{code=\"204\"} 2"), "{m}");
    assert!(m.contains("aion_distributor_received_samples_total{tenant=\"anonymous\"} 3"), "{m}");
}

#[tokio::test]
async fn empty_label_values_are_dropped() {
    let f = fixture(DistributorConfig::default());
    let (code, _) = f.push(None, vec![ts(&[("__name__", "up"), ("env", ""), ("job", "a")], &[(1, 1.0)])]).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let stored = f.store.select(&TenantId::anonymous(), &SelectHints::all(), &[]).unwrap();
    assert_eq!(stored[0].labels, Labels::from_pairs([("__name__", "up"), ("job", "a")]));
}

#[tokio::test]
async fn broken_snappy_and_protobuf_are_400() {
    let f = fixture(DistributorConfig::default());
    let (code, body) = f.post("/api/v1/push", None, b"\xff\xff\xff\xff\xff\xffnot snappy".to_vec()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("cannot decompress request body as a snappy block:"), "{body}");
    let garbage = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\xff\x0fxx").unwrap();
    let (code, body) = f.post("/api/v1/push", None, garbage).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("cannot decode request body as a protobuf WriteRequest:"), "{body}");
    let m = f.metrics_text();
    assert!(m.contains("aion_distributor_requests_total{code=\"400\"} 2"), "{m}");
}

#[tokio::test]
async fn invalid_utf8_label_value_is_400_naming_the_field() {
    let f = fixture(DistributorConfig::default());
    // Label{name:"a", value:"\xff"} inside TimeSeries inside WriteRequest, hand-encoded.
    let label = [0x0a, 0x01, b'a', 0x12, 0x01, 0xff];
    let mut series = vec![0x0a, label.len() as u8];
    series.extend_from_slice(&label);
    let mut req = vec![0x0a, series.len() as u8];
    req.extend_from_slice(&series);
    let (code, body) = f.post("/api/v1/push", None, snap::raw::Encoder::new().compress_vec(&req).unwrap()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("UTF-8") && body.contains("Label.value"), "{body}");
    assert!(f.stored("anonymous").is_empty());
}

#[tokio::test]
async fn every_validation_rule_is_400_with_its_message() {
    let f = fixture(DistributorConfig::default());
    let long_name = "n".repeat(1025);
    let long_value = "v".repeat(2049);
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("l{i:02}"), "x".to_string())).collect();
    let mut many_refs: Vec<(&str, &str)> = vec![("__name__", "up")];
    many_refs.extend(many.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![], "received a series with no labels series: '{}'".into()),
        (vec![("__name__", "up"), ("", "x")], "received a series with an empty label name:".into()),
        (vec![("__name__", "up"), ("0abc", "1")], r#"received a series with an invalid label: "0abc" series: 'up{0abc="1"}'"#.into()),
        (vec![("__name__", "up"), ("z", "1"), ("a", "1")], r#"labels out of order: "a" comes after "z""#.into()),
        (vec![("__name__", "up"), ("a", "1"), ("a", "2")], r#"duplicate label name "a" series: 'up{a="1", a="2"}'"#.into()),
        (vec![("job", "x")], r#"received a series without a metric name (__name__ label) series: '{job="x"}'"#.into()),
        (vec![("__name__", "1up")], r#"received a series with an invalid metric name: "1up" series: '1up'"#.into()),
        (many_refs, "31 labels, more than the limit of 30 (max_label_names_per_series)".into()),
        (vec![("__name__", "up"), (&long_name, "1")], "1025 bytes, longer than the limit of 1024 (max_label_name_length)".into()),
        (vec![("__name__", "up"), ("a", &long_value)], "2049 bytes, longer than the limit of 2048 (max_label_value_length)".into()),
    ];
    for (labels, want) in cases {
        let (code, body) = f.push(None, vec![ts(&labels, &[(1000, 1.0)])]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "labels {labels:?}: {body}");
        assert!(body.contains(&want), "labels {labels:?}: want {want:?} in {body:?}");
    }
    assert!(f.stored("anonymous").is_empty(), "nothing invalid was stored");
    let m = f.metrics_text();
    assert!(m.contains(r#"aion_distributor_discarded_samples_total{tenant="anonymous",reason="label_invalid"} 2"#), "{m}");
    assert!(m.contains(r#"aion_distributor_discarded_series_total{tenant="anonymous",reason="labels_not_sorted"} 1"#), "{m}");
}

#[tokio::test]
async fn valid_series_are_stored_and_the_first_invalid_one_is_reported() {
    let f = fixture(DistributorConfig::default());
    let series = vec![
        ts(&[("__name__", "good1")], &[(1000, 1.0)]),
        ts(&[("__name__", "bad1"), ("0x", "1")], &[(1000, 1.0)]),
        ts(&[("__name__", "good2")], &[(1000, 2.0)]),
        ts(&[("__name__", "bad2"), ("b", "1"), ("a", "1")], &[(1000, 1.0)]),
    ];
    let (code, body) = f.push(None, series).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body, r#"received a series with an invalid label: "0x" series: 'bad1{0x="1"}'"#);
    let names: Vec<String> = f.stored("anonymous").into_iter().map(|(l, _)| l).collect();
    assert_eq!(names, vec!["good1".to_string(), "good2".to_string()]);
}

#[tokio::test]
async fn tenants_anonymous_missing_invalid_and_isolated() {
    let f = fixture(DistributorConfig::default());
    let (code, _) = f.push(Some("ignored-when-off"), vec![ts(&[("__name__", "m")], &[(1, 1.0)])]).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(f.stored("anonymous").len(), 1);
    assert!(f.stored("ignored-when-off").is_empty());

    let f = fixture(DistributorConfig { multitenancy_enabled: true, ..Default::default() });
    let good = || vec![ts(&[("__name__", "m")], &[(1, 1.0)])];
    let (code, body) = f.push(None, good()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("no org id"), "{body}");
    let (code, body) = f.push(Some("a/b"), good()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid tenant id \"a/b\"") && body.contains("'/' is not allowed"), "{body}");
    let (code, body) = f.push(Some(&"t".repeat(151)), good()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("longer than 150 characters"), "{body}");
    let (code, _) = f.push(Some("team-a"), good()).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(f.stored("team-a").len(), 1);
    assert!(f.stored("anonymous").is_empty());
    let m = f.metrics_text();
    assert!(m.contains("aion_distributor_requests_total{code=\"401\"} 1"), "{m}");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let f = fixture(DistributorConfig { max_request_body_size: 100, ..Default::default() });
    // Incompressible value: snappy cannot shrink it below the limit.
    let noise: String = (0..500u32).map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26)).collect();
    let big = ts(&[("__name__", "m"), ("v", &noise)], &[(1, 1.0)]);
    let body = snap::raw::Encoder::new()
        .compress_vec(&WriteRequest { timeseries: vec![big], ..Default::default() }.encode_to_vec())
        .unwrap();
    assert!(body.len() > 100, "test body must be over the limit, is {}", body.len());
    let (code, text) = f.post("/api/v1/push", None, body).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("compressed body") && text.contains("limit of 100 bytes"), "{text}");
    assert!(f.stored("anonymous").is_empty());
}

#[tokio::test]
async fn decompressed_size_over_limit_is_413() {
    let f = fixture(DistributorConfig { max_request_body_size: 1000, max_decompressed_body_size: 1000, ..Default::default() });
    // Highly compressible: small on the wire, 5000 bytes once decompressed.
    let big = ts(&[("__name__", "m"), ("v", &"x".repeat(2000)), ("w", &"y".repeat(2000))], &[(1, 1.0)]);
    let body = body_of(vec![big]);
    assert!(body.len() < 1000);
    let (code, text) = f.post("/api/v1/push", None, body).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("decompressed body is") && text.contains("over the limit of 1000 bytes"), "{text}");
}

#[tokio::test]
async fn out_of_order_and_duplicate_rules() {
    let f = fixture(DistributorConfig::default());
    let s = |samples: &[(i64, f64)]| vec![ts(&[("__name__", "up"), ("job", "a")], samples)];
    assert_eq!(f.push(None, s(&[(1000, 1.0), (2000, 2.0)])).await.0, StatusCode::NO_CONTENT);
    // Exact duplicate: silently OK.
    assert_eq!(f.push(None, s(&[(2000, 2.0)])).await, (StatusCode::NO_CONTENT, String::new()));
    // Same timestamp, different value.
    let (code, body) = f.push(None, s(&[(2000, 5.0)])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"duplicate sample for timestamp 2000 with a different value than the one stored for series 'up{job="a"}'"#
    );
    // Older than the newest sample; the newer one in the same request is still stored.
    let (code, body) = f.push(None, s(&[(1500, 9.0), (1400, 9.0), (3000, 3.0)])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"out of order sample: timestamp 1500 is older than the newest sample stored for series 'up{job="a"}' (and 1 more rejected samples in this request)"#
    );
    let want = vec![Sample::new(1000, 1.0), Sample::new(2000, 2.0), Sample::new(3000, 3.0)];
    assert_eq!(f.stored("anonymous"), vec![("up{job=\"a\"}".to_string(), want)]);
    let m = f.metrics_text();
    assert!(m.contains(r#"discarded_samples_total{tenant="anonymous",reason="out_of_order"} 2"#), "{m}");
    assert!(m.contains(r#"discarded_samples_total{tenant="anonymous",reason="duplicate_sample_for_timestamp"} 1"#), "{m}");
}

#[tokio::test]
async fn metadata_is_accepted_and_counted() {
    let f = fixture(DistributorConfig::default());
    let req = WriteRequest {
        timeseries: vec![],
        metadata: vec![pb::MetricMetadata { metric_family_name: "up".into(), help: "h".into(), ..Default::default() }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    assert_eq!(f.post("/api/v1/push", None, body).await.0, StatusCode::NO_CONTENT);
    assert!(f.metrics_text().contains("aion_distributor_received_metadata_total{tenant=\"anonymous\"} 1"));
}

#[tokio::test]
async fn unknown_protobuf_messages_and_other_encodings_are_415() {
    let f = fixture(DistributorConfig::default());
    let send = |ct: &'static str, enc: &'static str| {
        let req = Request::post("/api/v1/push").header("Content-Type", ct).header("Content-Encoding", enc);
        let body = body_of(vec![ts(&[("__name__", "m")], &[(1, 1.0)])]);
        f.app.clone().oneshot(req.body(Body::from(body)).unwrap())
    };
    let resp = send("application/x-protobuf;proto=io.prometheus.write.v3.Request", "snappy").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(resp.headers().get("X-Prometheus-Remote-Write-Samples-Written").is_none());
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&text).contains("\"io.prometheus.write.v3.Request\""));
    let resp = send("application/x-protobuf", "gzip").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ok = send("application/x-protobuf;proto=prometheus.WriteRequest", "snappy").await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert!(f.stored("anonymous").len() == 1);
}

#[tokio::test]
async fn get_is_405() {
    let f = fixture(DistributorConfig::default());
    let resp = f.app.clone().oneshot(Request::get("/api/v1/push").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn new_rejects_an_invalid_config() {
    let cfg = DistributorConfig { max_request_body_size: 0, ..Default::default() };
    let e = Distributor::new(cfg, Arc::new(MemStore::new()), &mut Registry::default()).unwrap_err();
    assert!(e.to_string().contains("max_request_body_size"), "{e}");
}
