//! Scenario tests of remote write 2.0 over the HTTP push path.

use crate::push_test::fixture;
use crate::DistributorConfig;
use aion_model::Sample;
use aion_proto::write_v2::{Exemplar, Histogram, Request as V2Request, Sample as V2Sample, TimeSeries as V2Series};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use prost::Message;
use tower::ServiceExt;

const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn symbols() -> Vec<String> {
    ["", "__name__", "up", "job", "a", "b", "bad name"].iter().map(|s| s.to_string()).collect()
}

fn v2(refs: Vec<u32>, samples: &[(i64, f64)]) -> V2Series {
    V2Series {
        labels_refs: refs,
        samples: samples.iter().map(|(t, v)| V2Sample { value: *v, timestamp: *t }).collect(),
        ..Default::default()
    }
}

async fn post(app: &axum::Router, ct: &str, body: Vec<u8>) -> (StatusCode, HeaderMap, String) {
    let req = Request::post("/api/v1/write")
        .header("Content-Type", ct)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0");
    let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&bytes).trim_end().to_string())
}

fn body(series: Vec<V2Series>) -> Vec<u8> {
    let req = V2Request { symbols: symbols(), timeseries: series };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

/// (samples, histograms, exemplars) from the written headers.
fn written(h: &HeaderMap) -> (u64, u64, u64) {
    let get = |n: &str| {
        h.get(n).unwrap_or_else(|| panic!("no {n} header")).to_str().unwrap().parse::<u64>().unwrap()
    };
    (
        get("X-Prometheus-Remote-Write-Samples-Written"),
        get("X-Prometheus-Remote-Write-Histograms-Written"),
        get("X-Prometheus-Remote-Write-Exemplars-Written"),
    )
}

fn s(t: i64, v: f64) -> Sample {
    Sample { t, v }
}

#[tokio::test]
async fn v2_request_is_stored_with_written_headers() {
    let f = fixture(DistributorConfig::default());
    let mut a = v2(vec![1, 2, 3, 4], &[(1000, 1.5), (2000, 2.5)]);
    a.exemplars = vec![Exemplar { labels_refs: vec![], value: 1.0, timestamp: 1000 }];
    let b = v2(vec![1, 2, 3, 5], &[(1000, -3.0)]);
    let (code, h, text) = post(&f.app, V2_CT, body(vec![a, b])).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(written(&h), (3, 0, 0));
    let stored = f.stored("anonymous");
    assert_eq!(
        stored,
        vec![
            ("up{job=\"a\"}".to_string(), vec![s(1000, 1.5), s(2000, 2.5)]),
            ("up{job=\"b\"}".to_string(), vec![s(1000, -3.0)]),
        ]
    );
}

#[tokio::test]
async fn bad_refs_are_400_naming_the_series_and_store_nothing() {
    let f = fixture(DistributorConfig::default());
    let ok = v2(vec![1, 2, 3, 4], &[(1000, 1.0)]);
    for bad in [v2(vec![1, 2, 3], &[(1000, 1.0)]), v2(vec![1, 2, 3, 99], &[(1000, 1.0)])] {
        let (code, h, text) = post(&f.app, V2_CT, body(vec![ok.clone(), bad])).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(text.starts_with("series 1: labels_refs"), "{text}");
        assert_eq!(written(&h), (0, 0, 0));
    }
    assert!(f.stored("anonymous").is_empty());
}

#[tokio::test]
async fn invalid_series_is_400_with_the_valid_ones_counted() {
    let f = fixture(DistributorConfig::default());
    let ok = v2(vec![1, 2, 3, 4], &[(1000, 1.0), (2000, 2.0)]);
    let bad_label = v2(vec![1, 2, 6, 4], &[(1000, 1.0)]);
    let (code, h, text) = post(&f.app, V2_CT, body(vec![ok, bad_label])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.contains("bad name"), "{text}");
    assert_eq!(written(&h), (2, 0, 0));
    // A sample the store rejects (out of order) is not counted as written.
    let (code, h, _) = post(&f.app, V2_CT, body(vec![v2(vec![1, 2, 3, 4], &[(500, 9.0), (3000, 3.0)])])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(written(&h), (1, 0, 0));
    assert_eq!(f.stored("anonymous")[0].1, vec![s(1000, 1.0), s(2000, 2.0), s(3000, 3.0)]);
}

#[tokio::test]
async fn native_histograms_are_400_and_not_written() {
    let f = fixture(DistributorConfig::default());
    let mut h = v2(vec![1, 2, 3, 5], &[]);
    h.histograms = vec![Histogram {}];
    let (code, hdr, text) = post(&f.app, V2_CT, body(vec![v2(vec![1, 2, 3, 4], &[(1000, 1.0)]), h])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(text, "native histograms are not supported: 1 histogram samples in series 1 were not written");
    assert_eq!(written(&hdr), (1, 0, 0));
    assert_eq!(f.stored("anonymous").len(), 1);
}

#[tokio::test]
async fn content_type_selects_the_protocol() {
    let f = fixture(DistributorConfig::default());
    // A 2.0 body sent as 1.0 does not decode as a WriteRequest that stores anything sensible;
    // a 1.0 answer never carries the written headers.
    let v1 = aion_proto::prometheus::WriteRequest {
        timeseries: vec![crate::push_test::ts(&[("__name__", "m")], &[(1, 1.0)])],
        ..Default::default()
    };
    let v1_body = snap::raw::Encoder::new().compress_vec(&v1.encode_to_vec()).unwrap();
    for ct in ["application/x-protobuf", "application/x-protobuf;proto=prometheus.WriteRequest"] {
        let (code, h, text) = post(&f.app, ct, v1_body.clone()).await;
        assert_eq!(code, StatusCode::NO_CONTENT, "{ct}: {text}");
        assert!(h.get("X-Prometheus-Remote-Write-Samples-Written").is_none(), "{ct}");
    }
    let quoted = "application/x-protobuf; proto=\"io.prometheus.write.v2.Request\"";
    let (code, h, _) = post(&f.app, quoted, body(vec![v2(vec![1, 2, 3, 4], &[(1000, 1.0)])])).await;
    assert_eq!((code, written(&h)), (StatusCode::NO_CONTENT, (1, 0, 0)));
    let (code, h, text) = post(&f.app, "application/x-protobuf;proto=foo.Bar", v1_body).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.contains("\"foo.Bar\""), "{text}");
    assert!(h.get("X-Prometheus-Remote-Write-Samples-Written").is_none());
}
