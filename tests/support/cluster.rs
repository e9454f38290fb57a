//! Multi-process ingester clusters for the Raft tests: N `aion
//! --target=ingester` processes on free loopback ports, each with its own
//! data dir, plus a small gRPC client that follows `NotLeader` redirects and
//! retries retryable errors until a deadline.

use super::{free_port, ureq_get};
use aion_ingester::grpc::{convert, not_leader_from_status};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Series, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// One `aion --target=ingester` process.
pub struct IngesterProc {
    /// Node id.
    pub id: u64,
    /// gRPC address `127.0.0.1:port`.
    pub grpc: String,
    /// HTTP base URL.
    pub http: String,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl IngesterProc {
    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Its stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is running (started and not stopped by us).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_aion"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn aion --target=ingester");
        self.child = Some(child);
    }

    /// Waits (30 s at most) until `/ready` answers 200.
    pub fn wait_ready(&mut self) {
        let url = format!("{}/ready", self.http);
        let what = format!("ingester {}", self.id);
        let path = self.log_path();
        let log = || std::fs::read_to_string(&path).unwrap_or_default();
        super::wait_ready(&mut self.child, &url, &what, Duration::from_secs(30), log);
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        super::kill9(&mut self.child);
    }

    /// SIGTERM, then wait (10 s at most); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        super::stop(&mut self.child, Duration::from_secs(10))
    }

    /// Starts it again on the same ports and data dir, and waits for `/ready`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "ingester {} is still running", self.id);
        self.spawn();
        self.wait_ready();
    }

    /// `GET /metrics` body.
    pub fn metrics(&self) -> String {
        ureq_get(&format!("{}/metrics", self.http)).map(|(_, b)| b).unwrap_or_default()
    }

    /// Adds a command-line flag for the next (re)start.
    pub fn add_arg(&mut self, arg: &str) {
        self.args.push(arg.to_string());
    }

    /// Deletes its whole data dir (it must be stopped).
    pub fn wipe_data_dir(&mut self) {
        assert!(self.child.is_none(), "ingester {} is still running", self.id);
        std::fs::remove_dir_all(&self.data_dir).expect("wipe data dir");
    }

    /// `POST` to the admin API (`path` with query); (status, body).
    pub fn admin_post(&self, path_and_query: &str) -> (u16, String) {
        super::http_request("POST", &format!("{}{path_and_query}", self.http), &[], b"").expect("admin POST")
    }

    /// Sum of a per-shard counter/gauge family in `/metrics` over the given shards.
    pub fn metric_sum(&self, name: &str, shards: &[u64]) -> f64 {
        let body = self.metrics();
        shards
            .iter()
            .filter_map(|s| {
                let prefix = format!("{name}{{shard=\"{s}\"}} ");
                body.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse::<f64>().ok()))
            })
            .sum()
    }

    /// `GET /admin/shards` as JSON.
    pub fn admin_shards(&self) -> Option<serde_json::Value> {
        let (code, body) = ureq_get(&format!("{}/admin/shards", self.http)).ok()?;
        if code != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }
}

impl Drop for IngesterProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of ingester processes.
pub struct Cluster {
    /// The processes, by node id.
    pub nodes: BTreeMap<u64, IngesterProc>,
    /// Number of shards.
    pub shards: u64,
    rf: usize,
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` ingesters (ids 1..=n) with `shards` shards, RF `rf` and
    /// `extra` flags; waits for all to be ready.
    pub fn start(n: u64, shards: u64, rf: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u64, u16, u16)> = (1..=n).map(|id| (id, free_port(), free_port())).collect();
        let peers: Vec<String> = ports.iter().map(|(id, g, _)| format!("{id}=127.0.0.1:{g}")).collect();
        let peers = peers.join(",");
        let mut cluster = Cluster { nodes: BTreeMap::new(), shards, rf, extra: extra.iter().map(|s| s.to_string()).collect(), _dir: dir };
        for (id, g, h) in ports {
            let p = cluster.spawn_node(id, g, h, &peers, &[]);
            cluster.nodes.insert(id, p);
        }
        for p in cluster.nodes.values_mut() {
            p.wait_ready();
        }
        cluster
    }

    fn spawn_node(&self, id: u64, g: u16, h: u16, peers: &str, more: &[&str]) -> IngesterProc {
        let data_dir = self._dir.path().join(format!("node{id}"));
        let mut args = vec![
            "--target=ingester".to_string(),
            format!("--ingester.node-id={id}"),
            format!("--ingester.peers={peers}"),
            format!("--ingester.shards={}", self.shards),
            format!("--ingester.replication-factor={}", self.rf),
            format!("--grpc.listen-address=127.0.0.1:{g}"),
            format!("--http.listen-address=127.0.0.1:{h}"),
            format!("--data.dir={}", data_dir.display()),
            "--log.level=info,openraft=warn".to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        args.extend(more.iter().map(|s| s.to_string()));
        let mut p = IngesterProc {
            id,
            grpc: format!("127.0.0.1:{g}"),
            http: format!("http://127.0.0.1:{h}"),
            data_dir,
            args,
            child: None,
        };
        p.spawn();
        p
    }

    /// Starts one more ingester (next id) with `--ingester.join`: it knows
    /// every node, hosts no shard until a replica is moved to it. Returns its id.
    pub fn add_joining_node(&mut self) -> u64 {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        let (g, h) = (free_port(), free_port());
        let mut peers: Vec<String> = self.nodes.values().map(|p| format!("{}={}", p.id, p.grpc)).collect();
        peers.push(format!("{id}=127.0.0.1:{g}"));
        let mut p = self.spawn_node(id, g, h, &peers.join(","), &["--ingester.join"]);
        p.wait_ready();
        self.nodes.insert(id, p);
        id
    }

    /// gRPC addresses of every node, by id.
    pub fn addrs(&self) -> BTreeMap<u64, String> {
        self.nodes.iter().map(|(id, p)| (*id, p.grpc.clone())).collect()
    }

    /// Leader of every shard as all running nodes agree, waiting `within` at most.
    pub fn leaders(&self, within: Duration) -> BTreeMap<u64, u64> {
        let deadline = Instant::now() + within;
        loop {
            let mut seen: BTreeMap<u64, Vec<Option<u64>>> = BTreeMap::new();
            for p in self.nodes.values().filter(|p| p.is_running()) {
                let Some(v) = p.admin_shards() else { continue };
                for s in v["shards"].as_array().into_iter().flatten() {
                    let shard = s["shard"].as_u64().unwrap_or(u64::MAX);
                    seen.entry(shard).or_default().push(s["leader"].as_u64());
                }
            }
            let agreed: BTreeMap<u64, u64> = seen
                .iter()
                .filter_map(|(s, ls)| match ls.first() {
                    Some(Some(l)) if ls.iter().all(|x| *x == Some(*l)) && self.nodes[l].is_running() => Some((*s, *l)),
                    _ => None,
                })
                .collect();
            if agreed.len() as u64 == self.shards {
                return agreed;
            }
            assert!(Instant::now() < deadline, "no agreed leaders within {within:?}: {agreed:?} of {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The batch written as number `i` to `shard`: one series `w{shard}` with sample `(i s, i)`.
pub fn batch(shard: u64, i: u64) -> WriteBatch {
    WriteBatch {
        tenant: TenantId::new("t1").expect("valid tenant"),
        series: vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", "w"), ("shard", shard.to_string().as_str())]),
            samples: vec![Sample::new(i as i64 * 1_000, i as f64)],
        }],
    }
}

/// One lazily connecting `Ingester` client per node (id → gRPC address),
/// each call limited to `timeout`.
pub fn lazy_ingester_clients(addrs: &BTreeMap<u64, String>, timeout: Duration) -> BTreeMap<u64, IngesterClient<Channel>> {
    addrs
        .iter()
        .map(|(id, a)| {
            let ch = Endpoint::from_shared(format!("http://{a}"))
                .expect("valid endpoint")
                .connect_timeout(Duration::from_millis(500))
                .timeout(timeout)
                .connect_lazy();
            (*id, IngesterClient::new(ch).max_decoding_message_size(256 << 20))
        })
        .collect()
}

/// A client of the whole cluster: remembers each shard's leader, follows
/// redirects, retries `UNAVAILABLE`/transport errors on the next node.
#[derive(Clone)]
pub struct ClusterClient {
    clients: BTreeMap<u64, IngesterClient<Channel>>,
    /// Last known leader per shard.
    leader_hint: std::sync::Arc<std::sync::Mutex<BTreeMap<u64, u64>>>,
}

impl ClusterClient {
    /// Lazily connecting clients for `addrs`; each call times out after 4 s.
    pub fn new(addrs: &BTreeMap<u64, String>) -> ClusterClient {
        ClusterClient { clients: lazy_ingester_clients(addrs, Duration::from_secs(4)), leader_hint: Default::default() }
    }

    fn target(&self, shard: u64) -> u64 {
        let hint = self.leader_hint.lock().expect("hint lock").get(&shard).copied();
        hint.unwrap_or_else(|| *self.clients.keys().next().expect("at least one node"))
    }

    fn set_target(&self, shard: u64, node: u64) {
        self.leader_hint.lock().expect("hint lock").insert(shard, node);
    }

    fn next_after(&self, node: u64) -> u64 {
        let next = self.clients.range(node + 1..).next().or_else(|| self.clients.iter().next());
        *next.expect("at least one node").0
    }

    /// One Push to `node` (no redirect handling).
    pub async fn push_once(
        &self,
        node: u64,
        shard: u64,
        b: &WriteBatch,
    ) -> Result<pb::push_response::Outcome, tonic::Status> {
        let req = pb::PushRequest { shard, tenant: b.tenant.to_string(), series: convert::write_batch_to_pb(b) };
        let mut c = self.clients[&node].clone();
        let resp = c.push(req).await?.into_inner();
        resp.outcome.ok_or_else(|| tonic::Status::internal("push response without outcome"))
    }

    /// Pushes `b` to `shard`'s leader until acknowledged or `deadline`;
    /// returns the node that acknowledged, or the last error.
    pub async fn push(&self, shard: u64, b: &WriteBatch, deadline: Instant) -> Result<u64, String> {
        let mut node = self.target(shard);
        loop {
            let err = match self.push_once(node, shard, b).await {
                Ok(pb::push_response::Outcome::Ok(r)) if r.rejected == 0 => {
                    self.set_target(shard, node);
                    return Ok(node);
                }
                Ok(pb::push_response::Outcome::Ok(r)) => return Err(format!("node {node} rejected samples: {r:?}")),
                Ok(pb::push_response::Outcome::NotLeader(nl))
                    if self.clients.contains_key(&nl.leader_id) && nl.leader_id != node =>
                {
                    node = nl.leader_id;
                    continue;
                }
                Ok(pb::push_response::Outcome::NotLeader(nl)) => format!("node {node}: not leader, hint {nl:?}"),
                // `Unknown` is what tonic reports when the connection dies mid-call;
                // `NotFound`: that node does not host the shard (moved away / not yet).
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Cancelled
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::NotFound
                    ) =>
                {
                    format!("node {node}: {:?}: {}", s.code(), s.message())
                }
                Err(s) => return Err(format!("node {node}: non-retryable {:?}: {}", s.code(), s.message())),
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            node = self.next_after(node);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One Select of all of `shard`'s series on `node` (no redirect handling).
    pub async fn select_once(&self, node: u64, shard: u64) -> Result<Vec<Series>, tonic::Status> {
        self.select_on(node, shard, false).await
    }

    /// One Select on `node`; with `follower_read` a follower answers from
    /// its applied state (possibly stale) instead of redirecting.
    pub async fn select_on(&self, node: u64, shard: u64, follower_read: bool) -> Result<Vec<Series>, tonic::Status> {
        let req = pb::SelectRequest {
            shard,
            tenant: "t1".into(),
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "w".into(),
            }],
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            allow_follower_read: follower_read,
            ..Default::default()
        };
        let mut c = self.clients[&node].clone();
        let mut stream = c.select(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(msg) = stream.message().await? {
            for s in msg.series {
                out.push(convert::series_from_pb(s).map_err(|e| tonic::Status::internal(e.to_string()))?);
            }
        }
        Ok(out)
    }

    /// Selects `shard`'s series on its leader (linearizable), following
    /// redirects and retrying until `deadline`.
    pub async fn select(&self, shard: u64, deadline: Instant) -> Result<Vec<Series>, String> {
        let mut node = self.target(shard);
        loop {
            let err = match self.select_once(node, shard).await {
                Ok(s) => {
                    self.set_target(shard, node);
                    return Ok(s);
                }
                Err(s) => match not_leader_from_status(&s) {
                    Some((leader, _)) if self.clients.contains_key(&leader) && leader != node => {
                        node = leader;
                        continue;
                    }
                    _ => format!("node {node}: {:?}: {}", s.code(), s.message()),
                },
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            node = self.next_after(node);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
