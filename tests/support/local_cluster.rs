//! A local Aion cluster for the querier tests, two ways:
//! - [`LocalCluster`]: ingesters ([`super::cluster::Cluster`], free ports,
//!   temp dirs), optionally an `aion --target=distributor`
//!   ([`super::distributor::DistributorProc`]), plus `aion --target=querier`
//!   processes started here; data is loaded through the distributor by
//!   remote write, or without one by gRPC `Push` to shard leaders ([`Loader`]);
//! - [`ClusterScript`]: `deploy/local/cluster.sh up|status|down` itself, on
//!   a free port range and a temp dir, parsed `key=value` output.

use super::cluster::{Cluster, ClusterClient as PushClient};
use super::distributor::DistributorProc;
use aion_proto::prometheus::{Label as PbLabel, Sample as PbSample, TimeSeries, WriteRequest};
use super::{free_port, free_ports, ureq_get};
use aion_model::hash::series_hash;
use aion_model::storage::{SeriesSamples, WriteBatch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `aion --target=querier` process.
pub struct QuerierProc {
    /// HTTP base URL, e.g. `http://127.0.0.1:40123`.
    pub http: String,
    log_path: PathBuf,
    child: Option<Child>,
}

impl QuerierProc {
    /// Starts a querier over the ingesters `peers` (`id=host:port,…`) and waits for `/ready`.
    pub fn start(dir: &Path, name: &str, peers: &str, shards: u64, extra: &[&str]) -> QuerierProc {
        let port = free_port();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open querier log");
        let child = Command::new(env!("CARGO_BIN_EXE_aion"))
            .arg("--target=querier")
            .arg(format!("--ingester.peers={peers}"))
            .arg(format!("--ingester.shards={shards}"))
            .arg(format!("--http.listen-address=127.0.0.1:{port}"))
            .arg(format!("--data.dir={}", dir.join(name).display()))
            .arg("--log.level=info")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn aion --target=querier");
        let mut q = QuerierProc { http: format!("http://127.0.0.1:{port}"), log_path, child: Some(child) };
        let (url, path) = (format!("{}/ready", q.http), q.log_path.clone());
        super::wait_ready(&mut q.child, &url, name, Duration::from_secs(30), || {
            std::fs::read_to_string(&path).unwrap_or_default()
        });
        q
    }

    /// The Prometheus API base (`…/prometheus`), as promtool and Grafana take it.
    pub fn prom_base(&self) -> String {
        format!("{}/prometheus", self.http)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for QuerierProc {
    fn drop(&mut self) {
        super::kill9(&mut self.child);
    }
}

/// Ingesters and queriers on loopback.
pub struct LocalCluster {
    /// The ingester processes.
    pub ingesters: Cluster,
    /// The distributor, when started.
    pub distributor: Option<DistributorProc>,
    /// The queriers, in the order their flag lists were given.
    pub queriers: Vec<QuerierProc>,
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// `n` ingesters with `shards` shards at RF `rf`, one querier per entry
    /// of `querier_flags` (its extra flags); waits for every leader and `/ready`.
    pub fn start(n: u64, shards: u64, rf: usize, querier_flags: &[&[&str]]) -> LocalCluster {
        Self::start_with(n, shards, rf, None, querier_flags)
    }

    /// As [`LocalCluster::start`], plus a distributor with `distributor_flags` when given.
    pub fn start_with(
        n: u64,
        shards: u64,
        rf: usize,
        distributor_flags: Option<&[&str]>,
        querier_flags: &[&[&str]],
    ) -> LocalCluster {
        let ingesters = Cluster::start(n, shards, rf, &[]);
        ingesters.leaders(Duration::from_secs(30));
        let dir = tempfile::tempdir().expect("temp dir");
        let distributor = distributor_flags
            .map(|flags| DistributorProc::start(&ingesters.addrs(), shards, dir.path().join("distributor.log"), flags));
        let peers: Vec<String> = ingesters.addrs().iter().map(|(id, a)| format!("{id}={a}")).collect();
        let peers = peers.join(",");
        let queriers = querier_flags
            .iter()
            .enumerate()
            .map(|(i, flags)| QuerierProc::start(dir.path(), &format!("querier{}", i + 1), &peers, shards, flags))
            .collect();
        LocalCluster { ingesters, distributor, queriers, _dir: dir }
    }

    /// How data gets in: through the distributor when there is one, else by gRPC to the leaders.
    pub fn loader(&self) -> Loader {
        match &self.distributor {
            Some(d) => Loader::RemoteWrite { base: d.http.clone() },
            None => Loader::Grpc(GrpcLoader::new(&self.ingesters.addrs(), self.ingesters.shards)),
        }
    }
}

/// Loads write batches into a cluster.
pub enum Loader {
    /// Remote write 1.0 to a distributor at `base`, tenant in `X-Scope-OrgID`.
    RemoteWrite {
        /// The distributor's HTTP base URL.
        base: String,
    },
    /// gRPC `Push` to the shard leaders.
    Grpc(GrpcLoader),
}

impl Loader {
    /// Writes `batch`; the number of samples sent, or why it was refused.
    pub fn push(&self, batch: &WriteBatch) -> Result<u64, String> {
        match self {
            Loader::Grpc(g) => g.push(batch),
            Loader::RemoteWrite { base } => {
                let body = super::encode_write(&write_request(batch));
                let (code, text) = super::push_raw(base, Some(batch.tenant.as_str()), &body);
                if !(200..300).contains(&code) {
                    return Err(format!("distributor answered {code}: {text}"));
                }
                Ok(batch.series.iter().map(|s| s.samples.len() as u64).sum())
            }
        }
    }
}

/// A write batch as a remote-write 1.0 request.
pub fn write_request(batch: &WriteBatch) -> WriteRequest {
    let timeseries = batch
        .series
        .iter()
        .map(|s| TimeSeries {
            labels: s.labels.iter().map(|l| PbLabel { name: l.name.clone(), value: l.value.clone() }).collect(),
            samples: s.samples.iter().map(|x| PbSample { value: x.v, timestamp: x.t }).collect(),
            ..Default::default()
        })
        .collect();
    WriteRequest { timeseries, ..Default::default() }
}

/// Loads data by gRPC `Push` to shard leaders (redirects followed), the
/// way a distributor does. Placement is `series_hash(tenant, labels) %
/// shards`: any placement works for the querier, which reads every shard.
pub struct GrpcLoader {
    runtime: tokio::runtime::Runtime,
    client: PushClient,
    shards: u64,
}

impl GrpcLoader {
    /// A loader for the ingesters at `addrs` with `shards` shards.
    pub fn new(addrs: &BTreeMap<u64, String>, shards: u64) -> GrpcLoader {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = {
            let _guard = runtime.enter();
            PushClient::new(addrs)
        };
        GrpcLoader { runtime, client, shards }
    }

    /// Pushes `batch`, one request per shard, in parallel, until every shard
    /// acknowledged it; the number of samples sent. Any rejected sample is an error.
    pub fn push(&self, batch: &WriteBatch) -> Result<u64, String> {
        let mut per_shard: BTreeMap<u64, Vec<SeriesSamples>> = BTreeMap::new();
        for s in &batch.series {
            let shard = series_hash(batch.tenant.as_str(), &s.labels) % self.shards;
            per_shard.entry(shard).or_default().push(s.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        self.runtime.block_on(async {
            let calls = per_shard.into_iter().map(|(shard, series)| {
                let b = WriteBatch { tenant: batch.tenant.clone(), series };
                let client = self.client.clone();
                async move { client.push(shard, &b, deadline).await }
            });
            for r in futures_join_all(calls).await {
                r?;
            }
            Ok(batch.series.iter().map(|s| s.samples.len() as u64).sum())
        })
    }
}

/// `join_all` without a `futures` dev-dependency: spawn and await in order.
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("push task panicked"));
    }
    out
}

/// `deploy/local/cluster.sh` run on a free port range and a temp dir; `down` on drop.
pub struct ClusterScript {
    dir: tempfile::TempDir,
    base_port: u16,
    env: Vec<(String, String)>,
    /// `key=value` lines `up` printed (keys may repeat).
    pub outputs: Vec<(String, String)>,
}

impl ClusterScript {
    fn script() -> PathBuf {
        super::repo_dir().join("deploy/local/cluster.sh")
    }

    /// Runs `cluster.sh up` with `env` overrides; panics with its stderr on failure.
    pub fn up(env: &[(&str, &str)]) -> ClusterScript {
        let dir = tempfile::tempdir().expect("temp dir");
        let base_port = free_ports(12);
        let mut c = ClusterScript {
            dir,
            base_port,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            outputs: Vec::new(),
        };
        let out = c.run("up");
        assert!(out.status.success(), "cluster.sh up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        c.outputs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        c
    }

    /// Runs `cluster.sh <cmd>`.
    pub fn run(&self, cmd: &str) -> std::process::Output {
        Command::new("bash")
            .arg(Self::script())
            .arg(cmd)
            .env("AION_BIN", env!("CARGO_BIN_EXE_aion"))
            .env("AION_CLUSTER_DIR", self.dir.path())
            .env("AION_BASE_PORT", self.base_port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run cluster.sh")
    }

    /// Every value printed for `key`.
    pub fn values(&self, key: &str) -> Vec<String> {
        self.outputs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// The data/log/pid directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ClusterScript {
    fn drop(&mut self) {
        let _ = self.run("down");
    }
}

/// Whether `url` answers `GET` with 200.
pub fn is_ready(url: &str) -> bool {
    matches!(ureq_get(url), Ok((200, _)))
}
