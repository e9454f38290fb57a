//! The systems under test, each started as fresh processes on free loopback
//! ports with a temp data dir, and stopped (SIGTERM, then SIGKILL) after.
//!
//! A [`Running`] target is a *set* of processes whose CPU and RSS are summed:
//! Aion RF 1 is one `--target=all` process; Aion RF 3 ([`cluster`]) is three
//! ingesters plus a distributor (measured) and a querier (only used to verify,
//! not measured). Each process has a [`Role`]; the ingesters' pids are also
//! available on their own for "ingester RSS/CPU" figures.

use crate::error::{BenchError, Result};
use crate::http::{self, Url};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `aion --target=all`: one process, one ingester, replication factor 1.
    AionRf1,
    /// Three `aion --target=ingester` (16 shards, RF 3) behind one
    /// `--target=distributor`, plus an unmeasured `--target=querier` for verification.
    AionRf3,
    /// Prometheus with `--web.enable-remote-write-receiver`.
    Prometheus,
    /// VictoriaMetrics single-node.
    VictoriaMetrics,
}

impl Kind {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AionRf1 => "aion-rf1",
            Kind::AionRf3 => "aion-rf3",
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoria-metrics",
        }
    }

    /// Parses a name given to `--targets` (`aion` is accepted for `aion-rf1`).
    pub fn parse(s: &str) -> Result<Kind> {
        match s.trim() {
            "aion" | "aion-rf1" => Ok(Kind::AionRf1),
            "aion-rf3" | "aion-cluster" => Ok(Kind::AionRf3),
            "prometheus" | "prom" => Ok(Kind::Prometheus),
            "victoria-metrics" | "vm" | "victoriametrics" => Ok(Kind::VictoriaMetrics),
            other => Err(BenchError::InvalidArgument(format!(
                "unknown target {other:?}: use aion, aion-rf3, prometheus or victoria-metrics"
            ))),
        }
    }
}

/// Everything needed to start a target.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Which system.
    pub kind: Kind,
    /// Its binary.
    pub bin: PathBuf,
    /// Optional config file (Aion only: passed as `--config.file`).
    pub config_file: Option<PathBuf>,
    /// Shards of the Aion cluster target (`--ingester.shards`).
    pub shards: u32,
}

/// What a process of a target does; decides whether its CPU and RSS count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The whole system in one process (Aion RF 1, Prometheus, VictoriaMetrics).
    Server,
    /// An Aion ingester of a cluster target.
    Ingester,
    /// The Aion distributor of a cluster target (receives the writes).
    Distributor,
    /// The Aion querier of a cluster target: answers the verification query, not measured.
    Querier,
}

impl Role {
    /// Whether this process's CPU and RSS count for the target.
    pub fn is_measured(self) -> bool {
        self != Role::Querier
    }
}

/// One child process of a target.
struct Proc {
    /// Name in logs and errors (`server`, `ingester2`, `distributor`, ...).
    name: String,
    role: Role,
    child: Child,
    /// Its readiness URL.
    ready: Url,
    /// Its stderr log.
    log: PathBuf,
}

/// A started target.
pub struct Running {
    /// Report name.
    pub name: &'static str,
    procs: Vec<Proc>,
    /// Base URL of the query API, `http://127.0.0.1:PORT`.
    pub base: Url,
    /// Remote-write URL.
    pub write_url: Url,
    /// Instant-query path prefix (`/api/v1/query` or Aion's equivalent).
    pub query_path: &'static str,
    /// Scratch directory: data and logs.
    pub dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1, from below the ephemeral range so that no
/// outgoing connection of an already started process can take it before the
/// process meant for it binds it ([`aion_model::loopback`]).
pub fn free_port() -> Result<u16> {
    aion_model::loopback::free_ports(1).map_err(|source| BenchError::Io {
        what: "finding a free port on",
        addr: "127.0.0.1".into(),
        source,
    })
}

fn spawn(name: &str, bin: &Path, args: &[String], log: &Path) -> Result<Child> {
    let err = |why: String| BenchError::Target {
        target: name.to_string(),
        why,
    };
    if !bin.exists() {
        return Err(BenchError::MissingBinary {
            path: bin.to_path_buf(),
            hint: "build Aion with `cargo build --bin aion`; install peers with `scripts/install-deps.sh test`",
        });
    }
    let log_file = std::fs::File::create(log)
        .map_err(|e| err(format!("creating log {}: {e}", log.display())))?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| err(format!("spawning {}: {e}", bin.display())))
}

/// Starts `spec` in a new temp dir and waits (at most 60 s) until it is ready.
pub async fn start(spec: &TargetSpec) -> Result<Running> {
    let name = spec.kind.name();
    let dir = tempfile::Builder::new()
        .prefix(&format!("aion-bench-{name}-"))
        .tempdir()
        .map_err(|e| BenchError::Target {
            target: name.into(),
            why: format!("creating a temp dir: {e}"),
        })?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (args, write_path, ready_path, query_path) = match spec.kind {
        Kind::AionRf1 => {
            let mut a = vec![
                "--target=all".to_string(),
                format!("--http.listen-address={addr}"),
                format!("--grpc.listen-address=127.0.0.1:{}", free_port()?),
                format!("--data.dir={}", data.display()),
                "--log.format=text".into(),
                "--log.level=warn".into(),
            ];
            if let Some(c) = &spec.config_file {
                a.push(format!("--config.file={}", c.display()));
            }
            (a, "/api/v1/push", "/ready", "/prometheus/api/v1/query")
        }
        Kind::AionRf3 => {
            // Raft elections for 16 shards on a loaded 2-core machine take a while.
            let mut running = cluster::start_rf3(spec, dir)?;
            running.wait_ready(Duration::from_secs(90)).await?;
            return Ok(running);
        }
        Kind::Prometheus => {
            let cfg = dir.path().join("prometheus.yml");
            std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").map_err(|e| {
                BenchError::Target {
                    target: name.into(),
                    why: format!("writing {}: {e}", cfg.display()),
                }
            })?;
            let a = vec![
                format!("--config.file={}", cfg.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={addr}"),
                "--web.enable-remote-write-receiver".into(),
                "--log.level=warn".into(),
            ];
            (a, "/api/v1/write", "/-/ready", "/api/v1/query")
        }
        Kind::VictoriaMetrics => {
            let a = vec![
                format!("-httpListenAddr={addr}"),
                format!("-storageDataPath={}", data.display()),
                "-retentionPeriod=7d".into(),
                "-loggerLevel=WARN".into(),
            ];
            (a, "/api/v1/write", "/health", "/api/v1/query")
        }
    };
    let child = spawn(name, &spec.bin, &args, &log)?;
    let base = Url {
        authority: addr,
        path: "/".into(),
    };
    let proc = Proc {
        name: "server".into(),
        role: Role::Server,
        child,
        ready: base.with_path(ready_path),
        log,
    };
    let mut running = Running {
        name,
        procs: vec![proc],
        write_url: base.with_path(write_path),
        base,
        query_path,
        dir,
    };
    running.wait_ready(Duration::from_secs(60)).await?;
    Ok(running)
}

impl Running {
    /// Process ids whose CPU and memory count for this target (all but a cluster's querier).
    pub fn pids(&self) -> Vec<u32> {
        self.pids_where(Role::is_measured)
    }

    /// Process ids of a cluster target's ingesters; empty for single-process targets.
    pub fn ingester_pids(&self) -> Vec<u32> {
        self.pids_where(|r| r == Role::Ingester)
    }

    fn pids_where(&self, keep: impl Fn(Role) -> bool) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|p| keep(p.role))
            .map(|p| p.child.id())
            .collect()
    }

    /// The last `n` bytes of each process's log (prefixed by its name when there are several).
    pub fn log_tail(&self, n: usize) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let start = text.len().saturating_sub(n);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            if self.procs.len() > 1 {
                out.push_str(&format!("--- {} ({})\n", p.name, p.log.display()));
            }
            out.push_str(&text[start..]);
        }
        out
    }

    /// Waits until every process answers 200 on its readiness URL; fails early if one exits.
    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut pending: Vec<usize> = (0..self.procs.len()).collect();
        while Instant::now() < deadline {
            for p in &mut self.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    let why = format!("{} exited with {status} before becoming ready", p.name);
                    return Err(BenchError::Target {
                        target: self.name.into(),
                        why: format!("{why}; log tail:\n{}", self.log_tail(2000)),
                    });
                }
            }
            let mut still = Vec::new();
            for i in pending {
                let url = &self.procs[i].ready;
                if !matches!(http::get(url, Duration::from_secs(2)).await, Ok(r) if r.status == 200)
                {
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names: Vec<String> = pending
            .iter()
            .map(|&i| format!("{} ({})", self.procs[i].name, self.procs[i].ready))
            .collect();
        Err(BenchError::Target {
            target: self.name.into(),
            why: format!(
                "not ready within {limit:?}: {}; log tail:\n{}",
                names.join(", "),
                self.log_tail(2000)
            ),
        })
    }

    /// SIGTERM every process, wait up to `grace`, then SIGKILL what is left.
    pub async fn stop(mut self, grace: Duration) {
        for p in &self.procs {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(p.child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + grace;
        for p in &mut self.procs {
            let c = &mut p.child;
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_names() -> Result<()> {
        assert_eq!(Kind::parse("aion")?, Kind::AionRf1);
        assert_eq!(Kind::parse(" aion-rf3 ")?, Kind::AionRf3);
        assert_eq!(Kind::AionRf3.name(), "aion-rf3");
        assert_eq!(Kind::parse("vm")?, Kind::VictoriaMetrics);
        assert!(Kind::parse("aion-rf2").is_err());
        Ok(())
    }

    #[test]
    fn only_the_querier_is_unmeasured() {
        assert!(Role::Server.is_measured());
        assert!(Role::Ingester.is_measured());
        assert!(Role::Distributor.is_measured());
        assert!(!Role::Querier.is_measured());
    }
}
