//! Remote-write validation against the real `aion` binary: every kind of bad
//! request gets its 4xx status and a message naming the problem, the process
//! keeps serving, and data stored before (and the valid series of a partly
//! invalid request) is there, unchanged, through `/prometheus/api/v1/query`.

mod support;

use aion_proto::prometheus::{Label, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::Value as Json;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{encode_write, push, push_raw, query, series, Aion};

/// Milliseconds since the epoch, rounded down to a whole second, minus `back_s` seconds.
fn now_ms_minus(back_s: i64) -> i64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64;
    ms / 1000 * 1000 - back_s * 1000
}

/// `(labels as JSON text, value)` of every element of an instant-vector query result.
fn vector(resp: &Json) -> Vec<(String, f64)> {
    assert_eq!(resp["status"], "success", "query failed: {resp}");
    assert_eq!(resp["data"]["resultType"], "vector", "not a vector: {resp}");
    let mut out: Vec<(String, f64)> = resp["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result array: {resp}"))
        .iter()
        .map(|s| {
            let v = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("bad value in {s}"));
            (s["metric"].to_string(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts `q` at `time_s` returns exactly `want` (labels JSON, value).
fn assert_query(base: &str, tenant: Option<&str>, q: &str, time_s: f64, want: &[(&str, f64)]) {
    let got = vector(&query(base, tenant, q, time_s));
    let want: Vec<(String, f64)> = want.iter().map(|(l, v)| (l.to_string(), *v)).collect();
    assert_eq!(got, want, "query {q} at {time_s}");
}

fn raw_series(labels: &[(&str, &str)], t: i64) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: vec![aion_proto::prometheus::Sample { timestamp: t, value: 1.0 }],
        ..Default::default()
    }
}

/// POSTs an oversize body, tolerating the server closing the connection before
/// it has read everything; returns (status, body) from whatever response arrived.
fn post_oversize(base: &str, body: &[u8]) -> (u16, String) {
    let host = base.strip_prefix("http://").expect("http base url");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let head = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    let _ = s.write_all(body); // the server may stop reading at its limit
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text.find("\r\n\r\n").map(|i| text[i + 4..].to_string()).unwrap_or_default();
    (status, body)
}

/// Hand-encoded WriteRequest with one series whose label value is the byte 0xff.
fn invalid_utf8_body() -> Vec<u8> {
    let name = [0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', 0x12, 0x02, b'u', b'p'];
    let bad = [0x0a, 0x01, b'a', 0x12, 0x01, 0xff];
    let mut ts = vec![0x0a, name.len() as u8];
    ts.extend_from_slice(&name);
    ts.extend_from_slice(&[0x0a, bad.len() as u8]);
    ts.extend_from_slice(&bad);
    let mut req = vec![0x0a, ts.len() as u8];
    req.extend_from_slice(&ts);
    snap::raw::Encoder::new().compress_vec(&req).expect("snappy")
}

/// The labels-JSON form the query API returns for `rw_keep{job="keep"}`.
const KEEP: &str = r#"{"__name__":"rw_keep","job":"keep"}"#;

#[test]
fn bad_requests_get_precise_4xx_and_stored_data_is_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&dir.path().join("data"), &[]);
    let base = aion.http.as_str();
    let (t1, t2) = (now_ms_minus(120), now_ms_minus(60));
    let keep = || series(&[("__name__", "rw_keep"), ("job", "keep")], &[(t1, 1.0), (t2, 2.0)]);
    assert_eq!(push(base, None, vec![keep()]), (204, String::new()));

    let long_name = "n".repeat(1025);
    let long_value = "v".repeat(2049);
    let many: Vec<String> = (0..30).map(|i| format!("l{i:02}")).collect();
    let mut many_labels: Vec<(&str, &str)> = vec![("__name__", "rw_bad")];
    many_labels.extend(many.iter().map(|n| (n.as_str(), "x")));
    let t = now_ms_minus(30);
    let bad_series: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "received a series with no labels series: '{}'"),
        (vec![("__name__", "rw_bad"), ("", "x")], "received a series with an empty label name"),
        (vec![("__name__", "rw_bad"), ("0abc", "1")], r#"received a series with an invalid label: "0abc" series: 'rw_bad{0abc="1"}'"#),
        (vec![("__name__", "rw_bad"), ("z", "1"), ("a", "1")], r#"labels out of order: "a" comes after "z""#),
        (vec![("__name__", "rw_bad"), ("a", "1"), ("a", "2")], r#"duplicate label name "a" series: 'rw_bad{a="1", a="2"}'"#),
        (vec![("job", "x")], r#"received a series without a metric name (__name__ label) series: '{job="x"}'"#),
        (vec![("__name__", "1rw")], r#"received a series with an invalid metric name: "1rw""#),
        (many_labels, "31 labels, more than the limit of 30 (max_label_names_per_series)"),
        (vec![("__name__", "rw_bad"), (&long_name, "1")], "1025 bytes, longer than the limit of 1024 (max_label_name_length)"),
        (vec![("__name__", "rw_bad"), ("a", &long_value)], "2049 bytes, longer than the limit of 2048 (max_label_value_length)"),
    ];
    for (labels, want) in &bad_series {
        let (code, body) = push(base, None, vec![raw_series(labels, t)]);
        assert_eq!(code, 400, "labels {labels:?}: {body}");
        assert!(body.contains(want), "labels {labels:?}: want {want:?} in {body:?}");
    }

    let framed = {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(&WriteRequest { timeseries: vec![keep()], ..Default::default() }.encode_to_vec()).expect("frame");
        w.into_inner().expect("frame flush")
    };
    let garbage_pb = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\xff\x0fxx").expect("snappy");
    let raw_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xff\xff\xff\xff\xffnot snappy".to_vec(), "cannot decompress request body as a snappy block"),
        (framed, "snappy framed (stream) format"),
        (garbage_pb, "cannot decode request body as a protobuf WriteRequest"),
        (invalid_utf8_body(), "not UTF-8"),
        (b"\xff\xff\xff\xff\x0f".to_vec(), "decompressed body is 4294967295 bytes, over the limit"),
    ];
    for (body, want) in &raw_cases {
        let (code, text) = push_raw(base, None, body);
        let want_code = if want.contains("decompressed") { 413 } else { 400 };
        assert_eq!(code, want_code, "want {want:?}: {text}");
        assert!(text.contains(want), "want {want:?} in {text:?}");
    }

    // 11 MiB of incompressible bytes: over the default 10 MiB body limit.
    let noise: Vec<u8> = (0..11u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (code, text) = post_oversize(base, &noise);
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("request body too large: compressed body"), "{text}");

    // Out of order, duplicate with another value: 400; exact duplicate: 204.
    let (code, text) = push(base, None, vec![series(&[("__name__", "rw_keep"), ("job", "keep")], &[(t1 - 1000, 9.0)])]);
    assert_eq!(code, 400, "{text}");
    assert!(text.starts_with(&format!("out of order sample: timestamp {}", t1 - 1000)), "{text}");
    assert!(text.contains(r#"series 'rw_keep{job="keep"}'"#), "{text}");
    let (code, text) = push(base, None, vec![series(&[("__name__", "rw_keep"), ("job", "keep")], &[(t2, 7.0)])]);
    assert_eq!(code, 400, "{text}");
    assert!(text.starts_with(&format!("duplicate sample for timestamp {t2}")), "{text}");
    assert_eq!(push(base, None, vec![series(&[("__name__", "rw_keep"), ("job", "keep")], &[(t2, 2.0)])]).0, 204);

    // A partly invalid request: the valid series is stored, the answer names the invalid one.
    let mixed = vec![
        series(&[("__name__", "rw_mixed_ok")], &[(t, 5.0)]),
        raw_series(&[("__name__", "rw_mixed_bad"), ("0x", "1")], t),
    ];
    let (code, text) = push(base, None, mixed);
    assert_eq!(code, 400);
    assert_eq!(text.trim_end(), r#"received a series with an invalid label: "0x" series: 'rw_mixed_bad{0x="1"}'"#);

    // The Prometheus path works too.
    let body = encode_write(&WriteRequest {
        timeseries: vec![series(&[("__name__", "rw_via_write")], &[(t, 3.0)])],
        ..Default::default()
    });
    let (code, _) = support::http_request("POST", &format!("{base}/api/v1/write"), &[("Content-Encoding", "snappy")], &body)
        .expect("write request");
    assert_eq!(code, 204);

    // Still serving, data as stored: each sample at its own time, nothing from bad requests.
    assert_eq!(support::ureq_get(&format!("{base}/ready")).expect("ready").0, 200);
    let (s1, s2, s) = (t1 as f64 / 1000.0, t2 as f64 / 1000.0, t as f64 / 1000.0);
    assert_query(base, None, r#"rw_keep{job="keep"}"#, s1, &[(KEEP, 1.0)]);
    assert_query(base, None, r#"rw_keep{job="keep"}"#, s2 + 1.0, &[(KEEP, 2.0)]);
    assert_query(base, None, "count_over_time(rw_keep[10m])", s + 1.0, &[("{\"job\":\"keep\"}", 2.0)]);
    assert_query(base, None, "rw_bad", s + 1.0, &[]);
    assert_query(base, None, "rw_mixed_ok", s + 1.0, &[(r#"{"__name__":"rw_mixed_ok"}"#, 5.0)]);
    assert_query(base, None, "rw_mixed_bad", s + 1.0, &[]);
    assert_query(base, None, "rw_via_write", s + 1.0, &[(r#"{"__name__":"rw_via_write"}"#, 3.0)]);
}

#[test]
fn tenant_header_rules_with_multitenancy_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aion = Aion::start(&dir.path().join("data"), &["--auth.multitenancy-enabled=true"]);
    let base = aion.http.as_str();
    let t = now_ms_minus(30);
    let s = || vec![series(&[("__name__", "rw_tenant")], &[(t, 4.0)])];

    let (code, text) = push(base, None, s());
    assert_eq!(code, 401, "{text}");
    assert!(text.starts_with("no org id"), "{text}");
    let (code, text) = push(base, Some("a/b"), s());
    assert_eq!(code, 400, "{text}");
    assert!(text.contains(r#"invalid tenant id "a/b""#) && text.contains("'/' is not allowed"), "{text}");
    let (code, text) = push(base, Some(&"t".repeat(151)), s());
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("longer than 150 characters"), "{text}");

    assert_eq!(push(base, Some("team-a"), s()), (204, String::new()));
    let at = t as f64 / 1000.0 + 1.0;
    assert_query(base, Some("team-a"), "rw_tenant", at, &[(r#"{"__name__":"rw_tenant"}"#, 4.0)]);
    assert_query(base, Some("team-b"), "rw_tenant", at, &[]);
}
