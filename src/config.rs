//! The `aion` configuration: one YAML file (`--config.file`) layered over
//! defaults, then command-line flags over the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The path given.
        path: PathBuf,
        /// What serde said (names the offending field).
        source: serde_yaml::Error,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// HTTP and gRPC listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listen address (remote write, query API, /metrics, /ready).
    pub http_listen_address: String,
    /// gRPC listen address (internal services between roles).
    pub grpc_listen_address: String,
    /// How long graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub graceful_shutdown_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: "127.0.0.1:9009".into(),
            grpc_listen_address: "127.0.0.1:9095".into(),
            graceful_shutdown_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Role to run: `all`, `distributor`, `ingester` or `querier` (one per process).
    pub target: String,
    /// Where the ingester keeps its RocksDB.
    pub data_dir: PathBuf,
    /// Require `X-Scope-OrgID` on every request; otherwise everything is tenant `anonymous`.
    pub multitenancy_enabled: bool,
    /// Listeners.
    pub server: ServerConfig,
    /// Ingester storage settings.
    pub ingester: aion_ingester::config::TsdbConfig,
    /// Distributor settings.
    pub distributor: aion_distributor::config::DistributorConfig,
    /// Querier settings.
    pub querier: aion_querier::config::QuerierConfig,
    /// Ingester cluster topology (used by `--target=ingester`).
    pub ingester_cluster: aion_ingester::topology::ClusterConfig,
    /// Retries of the distributor's shard pushes (used by `--target=distributor`).
    pub shard_router: aion_ingester::client::RetryPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: "all".into(),
            data_dir: PathBuf::from("./data"),
            multitenancy_enabled: false,
            server: ServerConfig::default(),
            ingester: Default::default(),
            distributor: Default::default(),
            querier: Default::default(),
            ingester_cluster: Default::default(),
            shard_router: Default::default(),
        }
    }
}

impl Config {
    /// Reads and parses a YAML file (defaults for everything it leaves out).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// A role that calls the ingester cluster needs its ingesters (seeds) and shard count.
    fn validate_cluster_client(&self, role: &str) -> Result<(), ConfigError> {
        if self.ingester_cluster.ingesters.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "target {role}: no ingesters configured: list them under ingester_cluster.ingesters or pass --ingester.peers"
            )));
        }
        if self.ingester_cluster.shards == 0 {
            return Err(ConfigError::Invalid(format!("target {role}: ingester_cluster.shards must be at least 1")));
        }
        Ok(())
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for role in self.target.split(',').map(str::trim) {
            if !["all", "distributor", "ingester", "querier"].contains(&role) {
                return Err(ConfigError::Invalid(format!(
                    "unknown target {role:?}: use all, distributor, ingester or querier"
                )));
            }
        }
        match self.target.trim() {
            "all" => {}
            "ingester" => self
                .ingester_cluster
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("ingester_cluster: {e}")))?,
            "querier" => self.validate_cluster_client("querier")?,
            "distributor" => {
                self.validate_cluster_client("distributor")?;
                self.shard_router.validate().map_err(|e| ConfigError::Invalid(format!("shard_router: {e}")))?;
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "target {other:?}: run one role per process (all, distributor, ingester or querier); combined roles are not supported yet"
                )))
            }
        }
        self.ingester.validate().map_err(|e| ConfigError::Invalid(format!("ingester: {e}")))?;
        self.distributor.validate().map_err(|e| ConfigError::Invalid(format!("distributor: {e}")))?;
        self.querier.validate().map_err(|e| ConfigError::Invalid(format!("querier: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package directory of the checkout running the test (cargo sets it at run
    /// time; a test binary built in another checkout and reused from a shared target
    /// dir would otherwise look in that checkout).
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
    }

    #[test]
    fn example_cluster_configs_are_valid() {
        for n in 1..=3 {
            let path = manifest_dir().join(format!("deploy/ingester-cluster/node{n}.yaml"));
            let cfg = Config::from_file(&path).expect("cluster example parses");
            cfg.validate().expect("cluster example validates");
            assert_eq!(cfg.target, "ingester");
        }
    }

    #[test]
    fn example_distributor_config_is_valid_and_needs_ingesters() {
        let path = manifest_dir().join("deploy/ingester-cluster/distributor.yaml");
        let cfg = Config::from_file(&path).expect("distributor example parses");
        cfg.validate().expect("distributor example validates");
        assert_eq!((cfg.target.as_str(), cfg.ingester_cluster.ingesters.len()), ("distributor", 3));
        assert!(cfg.distributor.ha_tracker.enabled);
        let e = Config { target: "distributor".into(), ..Config::default() }.validate().expect_err("no ingesters");
        assert!(e.to_string().contains("no ingesters"), "{e}");
    }

    #[test]
    fn example_config_is_valid() {
        let path = manifest_dir().join("deploy/aion.yaml");
        let cfg = Config::from_file(&path).expect("deploy/aion.yaml parses");
        cfg.validate().expect("deploy/aion.yaml validates");
        assert_eq!(cfg.server.http_listen_address, "127.0.0.1:9009");
        assert_eq!(cfg.ingester.retention, std::time::Duration::from_secs(15 * 24 * 3600));
    }

    #[test]
    fn raft_write_linger_and_heartbeat_parse_as_durations() {
        let dir = std::env::temp_dir().join(format!("aion-cfg-raft-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("raft.yaml");
        std::fs::write(&p, "ingester_cluster:\n  write_linger: 0s\n  heartbeat_interval: 1s\n").expect("write");
        let cfg = Config::from_file(&p).expect("parses");
        assert_eq!(cfg.ingester_cluster.write_linger, std::time::Duration::ZERO);
        assert_eq!(cfg.ingester_cluster.heartbeat_interval, std::time::Duration::from_secs(1));
        let d = Config::default().ingester_cluster;
        assert_eq!((d.write_linger.as_millis(), d.heartbeat_interval.as_millis()), (10, 200));
    }

    #[test]
    fn unknown_fields_and_bad_targets_are_named() {
        let dir = std::env::temp_dir().join(format!("aion-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("bad.yaml");
        std::fs::write(&p, "server:\n  http_listen_adress: x\n").expect("write");
        let e = Config::from_file(&p).expect_err("typo must be rejected");
        assert!(e.to_string().contains("http_listen_adress"), "{e}");
        let cfg = Config { target: "bogus".into(), ..Config::default() };
        assert!(cfg.validate().expect_err("bad target").to_string().contains("bogus"));
    }

    #[test]
    fn ingester_target_needs_a_valid_cluster_section() {
        let cfg = Config { target: "ingester".into(), ..Config::default() };
        let e = cfg.validate().expect_err("no ingesters listed");
        assert!(e.to_string().contains("ingester_cluster: no ingesters"), "{e}");
        let yaml = "target: ingester\ningester_cluster:\n  node_id: 2\n  shards: 4\n  replication_factor: 1\n  ingesters:\n    - {id: 1, grpc_address: '127.0.0.1:9101'}\n    - {id: 2, grpc_address: '127.0.0.1:9102', zone: z}\n";
        let dir = std::env::temp_dir().join(format!("aion-cfg-ing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("ing.yaml");
        std::fs::write(&p, yaml).expect("write");
        let cfg = Config::from_file(&p).expect("parses");
        assert_eq!(cfg.ingester_cluster.shards, 4);
        let e = cfg.validate().expect_err("mixed zones");
        assert!(e.to_string().contains("no zone"), "{e}");
    }
}
