//! The Aion RF 3 cluster target: three `aion --target=ingester` processes
//! (16 shards by default, replication factor 3), one `--target=distributor` that receives
//! the remote writes, and one `--target=querier` that only answers the
//! verification query (its CPU and RSS are not counted). The flags are those
//! of `deploy/local/cluster.sh`.

use super::{free_port, spawn, Kind, Proc, Role, Running, TargetSpec};
use crate::error::Result;
use crate::http::Url;
use std::path::Path;

/// Default shards of the benchmark cluster (as in `deploy/local/cluster.sh`).
pub const DEFAULT_SHARDS: u32 = 16;
/// Replication factor of the benchmark cluster.
const REPLICATION_FACTOR: u32 = 3;
/// Ingesters in the benchmark cluster.
const INGESTERS: u32 = 3;

/// `--ingester.peers` value: `1=127.0.0.1:P1,2=127.0.0.1:P2,...` (node ids from 1).
fn peers_flag(grpc_ports: &[u16]) -> String {
    let peers: Vec<String> = grpc_ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect();
    format!("--ingester.peers={}", peers.join(","))
}

fn local_url(port: u16, path: &str) -> Url {
    Url {
        authority: format!("127.0.0.1:{port}"),
        path: path.to_string(),
    }
}

/// Flags every Aion process of the cluster shares.
fn common_flags(peers: &str, spec: &TargetSpec, data: &Path) -> Vec<String> {
    let mut a = vec![
        peers.to_string(),
        format!("--ingester.shards={}", spec.shards),
        format!("--data.dir={}", data.display()),
        "--log.format=text".into(),
        "--log.level=warn".into(),
    ];
    if let Some(c) = &spec.config_file {
        a.push(format!("--config.file={}", c.display()));
    }
    a
}

impl Running {
    /// Spawns one process of the cluster (data in `dir/<name>`, log `dir/<name>.log`)
    /// and adds it to the set, so it is stopped with the others even if a later one fails.
    fn spawn_member(
        &mut self,
        spec: &TargetSpec,
        member: Member,
        mut args: Vec<String>,
    ) -> Result<()> {
        let Member {
            name,
            role,
            peers,
            http_port,
        } = member;
        args.extend(common_flags(peers, spec, &self.dir.path().join(&name)));
        args.push(format!("--http.listen-address=127.0.0.1:{http_port}"));
        let log = self.dir.path().join(format!("{name}.log"));
        let child = spawn(&format!("aion-rf3 {name}"), &spec.bin, &args, &log)?;
        self.procs.push(Proc {
            name,
            role,
            child,
            ready: local_url(http_port, "/ready"),
            log,
        });
        Ok(())
    }
}

/// Who a cluster process is and where it listens for HTTP.
struct Member<'a> {
    name: String,
    role: Role,
    /// The `--ingester.peers=...` flag.
    peers: &'a str,
    http_port: u16,
}

/// Starts the cluster's five processes in `dir` (not yet waited for).
pub(super) fn start_rf3(spec: &TargetSpec, dir: tempfile::TempDir) -> Result<Running> {
    let grpc_ports = (0..INGESTERS)
        .map(|_| free_port())
        .collect::<Result<Vec<u16>>>()?;
    let peers = peers_flag(&grpc_ports);
    let (distributor_port, querier_port) = (free_port()?, free_port()?);
    let mut running = Running {
        name: Kind::AionRf3.name(),
        procs: Vec::new(),
        base: local_url(querier_port, "/"),
        write_url: local_url(distributor_port, "/api/v1/push"),
        query_path: "/prometheus/api/v1/query",
        dir,
    };
    for (i, grpc) in grpc_ports.iter().enumerate() {
        let args = vec![
            "--target=ingester".to_string(),
            format!("--ingester.node-id={}", i + 1),
            format!("--ingester.replication-factor={REPLICATION_FACTOR}"),
            format!("--grpc.listen-address=127.0.0.1:{grpc}"),
        ];
        let name = format!("ingester{}", i + 1);
        let member = Member {
            name,
            role: Role::Ingester,
            peers: &peers,
            http_port: free_port()?,
        };
        running.spawn_member(spec, member, args)?;
    }
    let args = vec![
        "--target=distributor".to_string(),
        format!("--grpc.listen-address=127.0.0.1:{}", free_port()?),
    ];
    let member = Member {
        name: "distributor".into(),
        role: Role::Distributor,
        peers: &peers,
        http_port: distributor_port,
    };
    running.spawn_member(spec, member, args)?;
    let member = Member {
        name: "querier".into(),
        role: Role::Querier,
        peers: &peers,
        http_port: querier_port,
    };
    running.spawn_member(spec, member, vec!["--target=querier".to_string()])?;
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_flag_numbers_nodes_from_one() {
        assert_eq!(
            peers_flag(&[7001, 7002, 7003]),
            "--ingester.peers=1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
        );
    }
}
