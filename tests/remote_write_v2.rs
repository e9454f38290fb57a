//! Prometheus remote write 2.0 against the real `aion` binary: a 2.0 request
//! is stored and queryable with exact values, answers carry the
//! `X-Prometheus-Remote-Write-*-Written` headers, bad symbol references are a
//! 400 that stores nothing, and an unknown protobuf message is a 415.

mod support;

use aion_proto::write_v2::{Exemplar, Request, Sample, TimeSeries};
use prost::Message;
use serde_json::Value as Json;
use std::time::{SystemTime, UNIX_EPOCH};
use support::{push_with_content_type, query, Aion, FullResponse};

const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// Milliseconds since the epoch, rounded down to a whole second, minus `back_s` seconds.
fn now_ms_minus(back_s: i64) -> i64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64;
    ms / 1000 * 1000 - back_s * 1000
}

fn symbols() -> Vec<String> {
    ["", "__name__", "rw2_metric", "job", "a", "b"].iter().map(|s| s.to_string()).collect()
}

fn ts(refs: &[u32], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels_refs: refs.to_vec(),
        samples: samples.iter().map(|(t, v)| Sample { value: *v, timestamp: *t }).collect(),
        ..Default::default()
    }
}

fn body(series: Vec<TimeSeries>) -> Vec<u8> {
    let req = Request { symbols: symbols(), timeseries: series };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy")
}

fn header<'a>(resp: &'a FullResponse, name: &str) -> Option<&'a str> {
    resp.1.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
}

/// (samples, histograms, exemplars) written, from the response headers.
fn written(resp: &FullResponse) -> (String, String, String) {
    let get = |n: &str| header(resp, n).unwrap_or_else(|| panic!("no {n} header in {:?}", resp.1)).to_string();
    (
        get("X-Prometheus-Remote-Write-Samples-Written"),
        get("X-Prometheus-Remote-Write-Histograms-Written"),
        get("X-Prometheus-Remote-Write-Exemplars-Written"),
    )
}

/// `(job, value)` of every element of an instant-vector result, sorted.
fn by_job(resp: &Json) -> Vec<(String, f64)> {
    assert_eq!(resp["status"], "success", "query failed: {resp}");
    let mut out: Vec<(String, f64)> = resp["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result array: {resp}"))
        .iter()
        .map(|s| {
            let v = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("bad value {s}"));
            (s["metric"]["job"].as_str().unwrap_or("").to_string(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn remote_write_2_is_stored_with_written_headers_and_rejects_bad_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&dir.path().join("data"), &[]);
    let base = aion.http.as_str();
    let (t1, t2) = (now_ms_minus(120), now_ms_minus(60));

    let mut a = ts(&[1, 2, 3, 4], &[(t1, 1.25), (t2, 2.5)]);
    a.exemplars = vec![Exemplar { labels_refs: vec![], value: 7.0, timestamp: t2 }];
    let b = ts(&[1, 2, 3, 5], &[(t2, -4.0)]);
    let resp = push_with_content_type(base, V2_CT, &body(vec![a, b]));
    assert_eq!(resp.0, 204, "body: {}", resp.2);
    assert_eq!(written(&resp), ("3".into(), "0".into(), "0".into()));

    let at = |t: i64| query(base, None, "rw2_metric", t as f64 / 1000.0);
    assert_eq!(by_job(&at(t1)), vec![("a".to_string(), 1.25)]);
    assert_eq!(by_job(&at(t2)), vec![("a".to_string(), 2.5), ("b".to_string(), -4.0)]);

    // Bad symbol references: 400 naming the series, nothing of the request stored.
    let t3 = now_ms_minus(30);
    for bad in [ts(&[1, 2, 3], &[(t3, 9.0)]), ts(&[1, 2, 3, 42], &[(t3, 9.0)])] {
        let resp = push_with_content_type(base, V2_CT, &body(vec![ts(&[1, 2, 3, 4], &[(t3, 9.0)]), bad]));
        assert_eq!(resp.0, 400, "body: {}", resp.2);
        assert!(resp.2.starts_with("series 1: labels_refs"), "body: {}", resp.2);
        assert_eq!(written(&resp), ("0".into(), "0".into(), "0".into()));
    }
    assert_eq!(by_job(&at(t3)), vec![("a".to_string(), 2.5), ("b".to_string(), -4.0)]);

    // An unknown protobuf message is 415, without written headers.
    let resp = push_with_content_type(base, "application/x-protobuf;proto=io.prometheus.write.v9.Request", &body(vec![]));
    assert_eq!(resp.0, 415, "body: {}", resp.2);
    assert!(resp.2.contains("io.prometheus.write.v9.Request"), "body: {}", resp.2);
    assert!(header(&resp, "X-Prometheus-Remote-Write-Samples-Written").is_none());
}
