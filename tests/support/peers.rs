//! Real peer processes from Debian's packages (Prometheus, promtool, ...), started
//! on free loopback ports for the duration of a test.

use super::{free_port, ureq_get};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a peer binary, or None after printing a loud skip message. Under CI
/// (`CI` set) a missing peer is a failure: CI must install them.
pub fn require(bin: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("{bin} is not installed but CI must run this test: run `scripts/install-deps.sh test`");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {bin} not installed (run `scripts/install-deps.sh test`) !!!!!!!!\n");
    None
}

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Its working directory (config, TSDB, log).
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with the YAML config `config` (the string `{{SELF}}` is replaced by
    /// its own `host:port`), storing data under `dir`; waits until ready.
    pub fn start(bin: &Path, dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir).expect("create prometheus dir");
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, config.replace("{{SELF}}", &addr)).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create prometheus log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus { child, url: format!("http://{addr}"), dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(ureq_get(&format!("{}/-/ready", p.url)), Ok((200, _))) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus not ready in 60s: {}", p.log());
    }

    /// Prometheus's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running peer process killed on drop (node_exporter, vmagent, ...).
pub struct Peer {
    child: Child,
    /// Its `host:port`.
    pub addr: String,
}

impl Peer {
    /// Spawns `bin args...` (the string `{{ADDR}}` in args replaced by a free `127.0.0.1:port`)
    /// and waits until `GET http://{ADDR}{ready_path}` answers 200.
    pub fn start(bin: &Path, args: &[&str], ready_path: &str) -> Peer {
        let addr = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = args.iter().map(|a| a.replace("{{ADDR}}", &addr)).collect();
        let child =
            Command::new(bin).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn peer");
        let p = Peer { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(ureq_get(&format!("http://{}{ready_path}", p.addr)), Ok((200, _))) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} not ready in 30s", bin.display());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
