//! The systems under test, each started as fresh processes on free loopback
//! ports with a temp data dir, and stopped (SIGTERM, then SIGKILL) after.
//!
//! A [`Running`] target is a *set* of processes whose CPU and RSS are summed:
//! today Aion is one `--target=all` process (RF 1); a cluster target (three
//! ingesters at RF 3 plus a distributor) only needs another arm in
//! [`start`] that spawns more children — the measurement code is unchanged.

use crate::error::{BenchError, Result};
use crate::http::{self, Url};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `aion --target=all`: one process, one ingester, replication factor 1.
    AionRf1,
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
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoria-metrics",
        }
    }

    /// Parses a name given to `--targets` (`aion` is accepted for `aion-rf1`).
    pub fn parse(s: &str) -> Result<Kind> {
        match s.trim() {
            "aion" | "aion-rf1" => Ok(Kind::AionRf1),
            "prometheus" | "prom" => Ok(Kind::Prometheus),
            "victoria-metrics" | "vm" | "victoriametrics" => Ok(Kind::VictoriaMetrics),
            other => Err(BenchError::InvalidArgument(format!(
                "unknown target {other:?}: use aion, prometheus or victoria-metrics"
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
}

/// A started target.
pub struct Running {
    /// Report name.
    pub name: &'static str,
    children: Vec<Child>,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base: Url,
    /// Remote-write URL.
    pub write_url: Url,
    /// Instant-query path prefix (`/api/v1/query` or Aion's equivalent).
    pub query_path: &'static str,
    /// Scratch directory: data and logs.
    pub dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is acceptable here).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
        what: "binding a free port on",
        addr: "127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| BenchError::Io {
            what: "reading the free port of",
            addr: "127.0.0.1:0".into(),
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
    let mut running = Running {
        name,
        children: vec![child],
        write_url: base.with_path(write_path),
        base,
        query_path,
        dir,
    };
    running
        .wait_ready(ready_path, Duration::from_secs(60))
        .await?;
    Ok(running)
}

impl Running {
    /// Process ids whose CPU and memory count for this target.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// The last `n` bytes of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let start = text.len().saturating_sub(n);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    async fn wait_ready(&mut self, path: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let url = self.base.with_path(path);
        while Instant::now() < deadline {
            for c in &mut self.children {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(BenchError::Target {
                        target: self.name.into(),
                        why: format!(
                            "exited with {status} before becoming ready; log tail:\n{}",
                            self.log_tail(2000)
                        ),
                    });
                }
            }
            if matches!(http::get(&url, Duration::from_secs(2)).await, Ok(r) if r.status == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BenchError::Target {
            target: self.name.into(),
            why: format!(
                "not ready at {url} within {limit:?}; log tail:\n{}",
                self.log_tail(2000)
            ),
        })
    }

    /// SIGTERM every process, wait up to `grace`, then SIGKILL what is left.
    pub async fn stop(mut self, grace: Duration) {
        for c in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let deadline = Instant::now() + grace;
        for c in &mut self.children {
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
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
