//! An `aion --target=distributor` process in front of a test cluster, and
//! per-shard gRPC reads (Select / LabelValues on a shard's leader, for a
//! given tenant) to check where routed writes landed.

use super::{free_port, ureq_get};
use aion_ingester::grpc::{convert, not_leader_from_status};
use aion_model::storage::Series;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The tenant header.
const TENANT_HEADER: &str = "X-Scope-OrgID";

/// One `aion --target=distributor` process.
pub struct DistributorProc {
    /// HTTP base URL, e.g. `http://127.0.0.1:40123`.
    pub http: String,
    log_path: PathBuf,
    child: Option<Child>,
}

impl DistributorProc {
    /// Starts a distributor for the ingesters `peers` (id → gRPC address)
    /// with `shards` shards, plus `extra` flags; its log goes to `log_path`.
    /// Waits (30 s at most) until `/ready`.
    pub fn start(peers: &BTreeMap<u64, String>, shards: u64, log_path: PathBuf, extra: &[&str]) -> DistributorProc {
        let peer_list: Vec<String> = peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
        let http_port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_aion"))
            .arg("--target=distributor")
            .arg(format!("--ingester.peers={}", peer_list.join(",")))
            .arg(format!("--ingester.shards={shards}"))
            .arg(format!("--http.listen-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc.listen-address=127.0.0.1:{}", free_port()))
            .arg("--log.level=info")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn aion --target=distributor");
        let mut d = DistributorProc { http: format!("http://127.0.0.1:{http_port}"), log_path, child: Some(child) };
        let url = format!("{}/ready", d.http);
        let path = d.log_path.clone();
        super::wait_ready(&mut d.child, &url, "distributor", Duration::from_secs(30), || {
            std::fs::read_to_string(&path).unwrap_or_default()
        });
        d
    }

    /// Its stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /metrics` body.
    pub fn metrics(&self) -> String {
        ureq_get(&format!("{}/metrics", self.http)).map(|(_, b)| b).unwrap_or_default()
    }

    /// SIGTERM and wait (10 s at most); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        super::stop(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for DistributorProc {
    fn drop(&mut self) {
        super::kill9(&mut self.child);
    }
}

/// Reads of single shards on their leaders, for one tenant.
#[derive(Clone)]
pub struct ShardReader {
    clients: BTreeMap<u64, IngesterClient<Channel>>,
}

/// An equality matcher.
pub fn eq(name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher { r#type: pb::label_matcher::Type::Eq as i32, name: name.into(), value: value.into() }
}

/// A regex matcher.
pub fn re(name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher { r#type: pb::label_matcher::Type::Re as i32, name: name.into(), value: value.into() }
}

impl ShardReader {
    /// Lazily connecting clients for `addrs` (id → gRPC address).
    pub fn new(addrs: &BTreeMap<u64, String>) -> ShardReader {
        let clients = super::cluster::lazy_ingester_clients(addrs, Duration::from_secs(5));
        ShardReader { clients }
    }

    /// Runs `call` on `shard`'s leader: starts at `first`, follows
    /// FAILED_PRECONDITION redirects, tries the next node on other errors,
    /// until 20 s have passed (then panics with the last error).
    async fn on_leader<T, F, Fut>(&self, shard: u64, call: F) -> T
    where
        F: Fn(IngesterClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        let mut i = 0usize;
        loop {
            let node = ids[i % ids.len()];
            let err = match call(self.clients[&node].clone()).await {
                Ok(v) => return v,
                Err(s) => match not_leader_from_status(&s) {
                    Some((leader, _)) if self.clients.contains_key(&leader) && leader != node => {
                        i = ids.iter().position(|x| *x == leader).unwrap_or(i + 1);
                        continue;
                    }
                    _ => format!("shard {shard} on node {node}: {:?}: {}", s.code(), s.message()),
                },
            };
            assert!(Instant::now() < deadline, "no answer from shard {shard}'s leader: {err}");
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every series of `tenant` on `shard` matching `matchers`, all time.
    pub async fn select(&self, shard: u64, tenant: &str, matchers: Vec<pb::LabelMatcher>) -> Vec<Series> {
        self.on_leader(shard, |mut c| {
            let req = pb::SelectRequest {
                shard,
                tenant: tenant.into(),
                matchers: matchers.clone(),
                start_ms: i64::MIN,
                end_ms: i64::MAX,
                ..Default::default()
            };
            async move {
                let mut stream = c.select(req).await?.into_inner();
                let mut out = Vec::new();
                while let Some(msg) = stream.message().await? {
                    for s in msg.series {
                        out.push(convert::series_from_pb(s).map_err(|e| tonic::Status::internal(e.to_string()))?);
                    }
                }
                Ok(out)
            }
        })
        .await
    }

    /// Values of label `name` over `tenant`'s series on every one of `shards`, all time.
    pub async fn label_values(&self, shards: u64, tenant: &str, name: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for shard in 0..shards {
            let values = self
                .on_leader(shard, |mut c| {
                    let req = pb::LabelValuesRequest {
                        shard,
                        tenant: tenant.into(),
                        name: name.into(),
                        matchers: vec![],
                        start_ms: i64::MIN,
                        end_ms: i64::MAX,
                    };
                    async move { Ok(c.label_values(req).await?.into_inner().values) }
                })
                .await;
            out.extend(values);
        }
        out
    }
}

/// A loopback HTTP/1.1 proxy that adds `X-Scope-OrgID: {tenant}` to requests
/// lacking it, as the nginx in front of Cortex does. Debian's Prometheus
/// 2.42 ignores `remote_write.headers` (prometheus/prometheus#13030), so
/// its requests reach the distributor through one of these; a sender that
/// does send the header passes through unchanged.
pub struct TenantProxy {
    /// Base URL to give the sender, e.g. `http://127.0.0.1:40125`.
    pub url: String,
    /// Requests the proxy had to add the header to.
    pub added: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Requests forwarded.
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TenantProxy {
    /// Starts the proxy to `upstream` (a base URL) for `tenant`.
    pub fn start(upstream: &str, tenant: &str) -> TenantProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let added = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up, t, a, f) = (upstream.to_string(), tenant.to_string(), added.clone(), forwarded.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (up, t, a, f) = (up.clone(), t.clone(), a.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(conn, &up, &t, &a, &f);
                });
            }
        });
        TenantProxy { url, added, forwarded }
    }
}

fn proxy_connection(
    conn: std::net::TcpStream,
    upstream: &str,
    tenant: &str,
    added: &std::sync::atomic::AtomicU64,
    forwarded: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    use std::io::{BufRead, Read, Write};
    use std::sync::atomic::Ordering;
    let mut out = conn.try_clone()?;
    let mut reader = std::io::BufReader::new(conn);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let Some(request_line) = head.first() else { return Ok(()) };
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap_or("POST").to_string(), parts.next().unwrap_or("/").to_string());
        let mut headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        headers.retain(|(k, _)| !["host", "connection", "content-length"].contains(&k.to_ascii_lowercase().as_str()));
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(TENANT_HEADER)) {
            headers.push((TENANT_HEADER.to_string(), tenant.to_string()));
            added.fetch_add(1, Ordering::SeqCst);
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, _, resp) = super::http_request_with_headers(&method, &format!("{upstream}{path}"), &refs, &body)?;
        forwarded.fetch_add(1, Ordering::SeqCst);
        write!(out, "HTTP/1.1 {status} Proxied\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{resp}", resp.len())?;
        out.flush()?;
    }
}
