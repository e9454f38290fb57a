//! Shared helpers for the integration tests: start the real `aion` binary on
//! free loopback ports with a temp data dir, push remote-write requests, query.
#![allow(dead_code)]

pub mod cluster;
pub mod distributor;
pub mod local_cluster;
pub mod peers;

use aion_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The checkout the tests run in. Cargo sets `CARGO_MANIFEST_DIR` at run time; the
/// compile-time value is only the fallback, because a test binary reused from a
/// shared target dir may have been built in another checkout.
pub fn repo_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// A free TCP port on 127.0.0.1 (checked by binding, then released).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free loopback ports, from below the ephemeral
/// range and none handed out before by this process ([`aion_model::loopback`]).
pub fn free_ports(n: u16) -> u16 {
    aion_model::loopback::free_ports(n).expect("free loopback ports")
}

/// A running `aion` process.
pub struct Aion {
    child: Option<Child>,
    /// Base URL of its HTTP server, e.g. `http://127.0.0.1:40123`.
    pub http: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    http_port: u16,
}

impl Aion {
    /// Starts `aion --target=all` on free ports with `data_dir`, plus `extra` flags; waits for `/ready`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Aion {
        let mut a = Aion {
            child: None,
            http: String::new(),
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            http_port: free_port(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let grpc_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("open log file");
        let child = Command::new(env!("CARGO_BIN_EXE_aion"))
            .arg(format!("--http.listen-address=127.0.0.1:{}", self.http_port))
            .arg(format!("--grpc.listen-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--data.dir={}", self.data_dir.display()))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn aion");
        self.child = Some(child);
        self.http = format!("http://127.0.0.1:{}", self.http_port);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let (url, dir) = (format!("{}/ready", self.http), self.data_dir.clone());
        wait_ready(&mut self.child, &url, "aion", Duration::from_secs(60), || read_log(&dir));
    }

    /// The process's stderr log so far.
    pub fn log(&self) -> String {
        read_log(&self.data_dir)
    }

    /// The OS pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        stop(&mut self.child, Duration::from_secs(30))
    }

    /// Starts the process again on the same data dir and HTTP port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

fn read_log(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
}

/// Polls `url` until it answers 200; panics (with `log()`) if the process exits or `limit` passes.
pub fn wait_ready(child: &mut Option<Child>, url: &str, what: &str, limit: Duration, log: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            panic!("{what} exited early with {status}; log:\n{}", log());
        }
        if matches!(ureq_get(url), Ok((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} not ready within {limit:?}; log:\n{}", log());
}

/// SIGKILL and reap.
pub fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// SIGTERM, wait up to `limit` (then SIGKILL); returns the exit code.
pub fn stop(child: &mut Option<Child>, limit: Duration) -> Option<i32> {
    let mut c = child.take()?;
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = c.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

impl Drop for Aion {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal blocking HTTP/1.1 GET over std (no extra client dependency): (status, body).
pub fn ureq_get(url: &str) -> std::io::Result<(u16, String)> {
    http_request("GET", url, &[], &[])
}

/// Minimal blocking HTTP/1.1 request: (status, body).
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, String)> {
    http_request_with_headers(method, url, headers, body).map(|(status, _, body)| (status, body))
}

fn decode_body(head: &str, body: &str) -> String {
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("\r\n") {
        let n = usize::from_str_radix(rest[..i].trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = i + 2;
        out.push_str(rest.get(start..start + n).unwrap_or(""));
        rest = rest.get(start + n + 2..).unwrap_or("");
    }
    out
}

/// One series for a write request: labels as pairs, samples as (t_ms, value).
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|(t, v)| Sample { timestamp: *t, value: *v }).collect(),
        ..Default::default()
    }
}

/// Encodes `req` as remote-write 1.0 (protobuf + snappy block).
pub fn encode_write(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy encode")
}

/// POSTs a remote-write body to `{base}/api/v1/push` with an optional tenant; (status, body).
pub fn push_raw(base: &str, tenant: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut h = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    if let Some(t) = tenant {
        h.push(("X-Scope-OrgID", t));
    }
    http_request("POST", &format!("{base}/api/v1/push"), &h, body).expect("push request")
}

/// Pushes `series` as one write request; (status, body).
pub fn push(base: &str, tenant: Option<&str>, series: Vec<TimeSeries>) -> (u16, String) {
    push_raw(base, tenant, &encode_write(&WriteRequest { timeseries: series, ..Default::default() }))
}

/// Instant query via the Prometheus API; returns the parsed JSON response.
pub fn query(base: &str, tenant: Option<&str>, q: &str, time_s: f64) -> serde_json::Value {
    let body = format!("query={}&time={time_s}", urlencode(q));
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(t) = tenant {
        h.push(("X-Scope-OrgID", t));
    }
    let (_, text) =
        http_request("POST", &format!("{base}/prometheus/api/v1/query"), &h, body.as_bytes()).expect("query request");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("query response is not JSON ({e}): {text}"))
}

/// Percent-encodes a form value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A full HTTP response: status, headers (names lower-cased) and body.
pub type FullResponse = (u16, Vec<(String, String)>, String);

/// Like [`http_request`], also returning the response headers (names lower-cased).
pub fn http_request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<FullResponse> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other("only http:// urls"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text}")))?;
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], decode_body(&text[..i], &text[i + 4..])),
        None => (text.as_str(), String::new()),
    };
    let hdrs = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, hdrs, body))
}

/// POSTs a snappy body to `{base}/api/v1/write` with the given `Content-Type`
/// (for remote write 2.0: `application/x-protobuf;proto=io.prometheus.write.v2.Request`).
pub fn push_with_content_type(base: &str, content_type: &str, body: &[u8]) -> FullResponse {
    let h = [
        ("Content-Type", content_type),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
    ];
    http_request_with_headers("POST", &format!("{base}/api/v1/write"), &h, body).expect("push request")
}
