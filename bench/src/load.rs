//! The load generator: K keep-alive connections, each owning the batches
//! `b ≡ k (mod K)` and sending them step by step (like one shard of
//! Prometheus's queue manager), so each series' samples arrive in order.
//! Stops by itself when every body is sent or the deadline passes.

use crate::http::{Conn, Url};
use crate::workload::Workload;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Remote-write 1.0 request headers.
pub const REMOTE_WRITE_HEADERS: [(&str, &str); 4] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ("User-Agent", "aion-bench/0.1"),
];

/// How to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to POST.
    pub url: Url,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Stop sending after this long, whatever is left.
    pub deadline: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Extra headers (e.g. `X-Scope-OrgID`).
    pub extra_headers: Vec<(String, String)>,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests answered 2xx.
    pub ok_requests: u64,
    /// Requests answered otherwise, or that failed on the wire.
    pub failed_requests: u64,
    /// Samples in 2xx-answered requests.
    pub ok_samples: u64,
    /// Samples in failed requests.
    pub failed_samples: u64,
    /// Samples never sent because the deadline passed.
    pub unsent_samples: u64,
    /// Time from the first request to the last response.
    pub wall: Duration,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

impl LoadReport {
    /// Accepted samples per wall-clock second.
    pub fn samples_per_sec(&self) -> f64 {
        self.ok_samples as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, o: LoadReport) {
        self.ok_requests += o.ok_requests;
        self.failed_requests += o.failed_requests;
        self.ok_samples += o.ok_samples;
        self.failed_samples += o.failed_samples;
        self.unsent_samples += o.unsent_samples;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Sends the whole workload and reports.
pub async fn run(workload: Arc<Workload>, cfg: LoadConfig) -> LoadReport {
    let k = cfg.concurrency.max(1);
    let start = Instant::now();
    let stop_at = start + cfg.deadline;
    let cfg = Arc::new(cfg);
    let workers: Vec<_> = (0..k)
        .map(|shard| tokio::spawn(worker(workload.clone(), cfg.clone(), shard, k, stop_at)))
        .collect();
    let mut total = LoadReport::default();
    for w in workers {
        match w.await {
            Ok(r) => total.merge(r),
            Err(e) => {
                total.failed_requests += 1;
                total
                    .first_error
                    .get_or_insert(format!("worker task failed: {e}"));
            }
        }
    }
    total.wall = start.elapsed();
    total
}

async fn worker(
    workload: Arc<Workload>,
    cfg: Arc<LoadConfig>,
    shard: usize,
    k: usize,
    stop_at: Instant,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut headers: Vec<(&str, &str)> = REMOTE_WRITE_HEADERS.to_vec();
    headers.extend(
        cfg.extra_headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str())),
    );
    let mut conn: Option<Conn> = None;
    for step in &workload.steps {
        for body in step.iter().skip(shard).step_by(k) {
            if Instant::now() >= stop_at {
                report.unsent_samples += body.samples as u64;
                continue;
            }
            let outcome = send(&mut conn, &cfg, &headers, &body.data).await;
            match outcome {
                Ok(()) => {
                    report.ok_requests += 1;
                    report.ok_samples += body.samples as u64;
                }
                Err(e) => {
                    report.failed_requests += 1;
                    report.failed_samples += body.samples as u64;
                    report.first_error.get_or_insert(e);
                }
            }
        }
    }
    report
}

/// Sends one body on `conn` (connecting first if needed); `Err` describes a non-2xx answer or wire failure.
async fn send(
    conn: &mut Option<Conn>,
    cfg: &LoadConfig,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    if conn.as_ref().is_none_or(Conn::is_broken) {
        *conn = Some(
            Conn::connect(&cfg.url.authority)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let c = conn.as_mut().expect("BUG: connection set just above");
    match c
        .request("POST", &cfg.url.path, headers, body, cfg.request_timeout)
        .await
    {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!(
            "HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{build, WorkloadConfig};
    use aion_proto::prometheus::WriteRequest;
    use prost::Message;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What the sink saw: the last timestamp per series (labels as text) and the sample count.
    #[derive(Default)]
    struct Seen {
        last_ts: HashMap<String, i64>,
        samples: usize,
        out_of_order: usize,
        connections: usize,
    }

    /// A raw-TCP remote-write sink: decodes each body, answers `fail_status` to
    /// the request numbered `fail_at` (1-based) and 204 to the rest.
    async fn sink(fail_at: Option<usize>, fail_status: u16) -> (String, Arc<Mutex<Seen>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                s.lock().expect("lock").connections += 1;
                tokio::spawn(serve(
                    conn,
                    s.clone(),
                    counter.clone(),
                    fail_at,
                    fail_status,
                ));
            }
        });
        (addr, seen)
    }

    async fn serve(
        mut conn: TcpStream,
        seen: Arc<Mutex<Seen>>,
        counter: Arc<std::sync::atomic::AtomicUsize>,
        fail_at: Option<usize>,
        fail_status: u16,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            assert!(
                head.starts_with("post /api/v1/write http/1.1\r\n"),
                "{head}"
            );
            assert!(head.contains("content-encoding: snappy\r\n"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            while buf.len() < head_end + len {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy");
            let req = WriteRequest::decode(raw.as_slice()).expect("protobuf");
            {
                let mut s = seen.lock().expect("lock");
                for ts in &req.timeseries {
                    let key = format!("{:?}", ts.labels);
                    let t = ts.samples[0].timestamp;
                    if s.last_ts.get(&key).is_some_and(|&prev| prev >= t) {
                        s.out_of_order += 1;
                    }
                    s.last_ts.insert(key, t);
                    s.samples += ts.samples.len();
                }
            }
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let resp = if fail_at == Some(n) {
                format!("HTTP/1.1 {fail_status} Nope\r\nContent-Length: 11\r\n\r\nbad request")
            } else {
                "HTTP/1.1 204 No Content\r\n\r\n".to_string()
            };
            if conn.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn cfg(addr: &str, concurrency: usize) -> LoadConfig {
        LoadConfig {
            url: Url::parse(&format!("http://{addr}/api/v1/write")).expect("url"),
            concurrency,
            deadline: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            extra_headers: vec![],
        }
    }

    fn workload() -> Arc<Workload> {
        Arc::new(build(WorkloadConfig {
            series: 30,
            steps: 3,
            batch: 10,
            interval_ms: 15_000,
            start_ms: 1_000,
        }))
    }

    #[tokio::test]
    async fn sends_every_sample_in_order_over_keep_alive_connections() {
        let (addr, seen) = sink(None, 0).await;
        let r = run(workload(), cfg(&addr, 2)).await;
        assert_eq!(
            (
                r.ok_requests,
                r.failed_requests,
                r.ok_samples,
                r.unsent_samples
            ),
            (9, 0, 90, 0),
            "{r:?}"
        );
        let s = seen.lock().expect("lock");
        assert_eq!(s.samples, 90);
        assert_eq!(s.last_ts.len(), 30, "every series arrived");
        assert_eq!(s.out_of_order, 0, "each series' samples arrived in order");
        assert_eq!(s.connections, 2, "one keep-alive connection per worker");
        assert!(
            s.last_ts.values().all(|&t| t == 31_000),
            "last step's timestamp"
        );
    }

    #[tokio::test]
    async fn counts_non_2xx_answers_as_failures() {
        let (addr, _) = sink(Some(2), 400).await;
        let r = run(workload(), cfg(&addr, 1)).await;
        assert_eq!(
            (
                r.ok_requests,
                r.failed_requests,
                r.ok_samples,
                r.failed_samples
            ),
            (8, 1, 80, 10),
            "{r:?}"
        );
        assert_eq!(r.first_error.as_deref(), Some("HTTP 400: bad request"));
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let (addr, _) = sink(None, 0).await;
        let mut c = cfg(&addr, 1);
        c.deadline = Duration::ZERO;
        let r = run(workload(), c).await;
        assert_eq!((r.ok_requests, r.unsent_samples), (0, 90));
    }

    #[tokio::test]
    async fn a_dead_endpoint_fails_every_request_without_hanging() {
        let port = crate::target::free_port().expect("port");
        let r = run(workload(), cfg(&format!("127.0.0.1:{port}"), 2)).await;
        assert_eq!((r.ok_requests, r.failed_requests), (0, 9));
        assert!(
            r.first_error
                .as_deref()
                .is_some_and(|e| e.contains("connecting to")),
            "{r:?}"
        );
    }
}
