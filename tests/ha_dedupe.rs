//! HA-pair deduplication across two distributors (Cortex semantics): two
//! Prometheus-shaped senders of one HA cluster (`cluster="c1"`,
//! `__replica__="r1"` / `"r2"`, scraping the same target at slightly
//! different times) write to two different `aion --target=distributor`
//! processes in front of three ingesters (RF 3). The election is kept in the
//! cluster, so both distributors agree:
//!
//! 1. r1 is elected; r2's requests (to the other distributor) get 202 and
//!    nothing of them is stored.
//! 2. r1 goes silent: after `failover_timeout` (3 s) r2 takes over (204).
//! 3. r1 comes back (to its distributor): now it gets 202.
//!
//! What is stored is exactly the acknowledged (204) samples, as one series
//! per scraped series with the replica label dropped and the cluster kept.
//!
//! Run: `cargo test --test ha_dedupe -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::cluster::Cluster;
use support::distributor::{eq, DistributorProc, ShardReader};
use support::{push, series};

const SHARDS: u64 = 4;
const TENANT: &str = "team-h";
const FAILOVER: Duration = Duration::from_secs(3);
const UPDATE: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One Prometheus-shaped request of `replica`: two series with the HA labels at `t`.
fn scrape(dist: &DistributorProc, replica: &str, t: i64, value: f64) -> u16 {
    let labels = |name: &'static str| [("__name__", name), ("__replica__", replica), ("cluster", "c1"), ("job", "app")];
    let (code, body) = push(
        &dist.http,
        Some(TENANT),
        vec![series(&labels("up"), &[(t, value)]), series(&labels("app_requests_total"), &[(t, value * 100.0)])],
    );
    assert!(code == 204 || code == 202, "{replica}: unexpected {code}: {body}");
    if code == 202 {
        assert!(body.contains("deduplicated") && body.contains(replica), "{body}");
    }
    code
}

#[test]
fn one_replica_of_an_ha_pair_is_stored_and_failover_follows_silence() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, SHARDS, 3, &[]);
    let cfg = tmp.path().join("distributor.yaml");
    std::fs::write(
        &cfg,
        format!(
            "distributor:\n  ha_tracker: {{enabled: true, cluster_label: cluster, replica_label: __replica__, \
             failover_timeout: {}s, update_timeout: {}s}}\n",
            FAILOVER.as_secs(),
            UPDATE.as_secs()
        ),
    )
    .unwrap();
    let flags = [format!("--config.file={}", cfg.display()), "--auth.multitenancy-enabled=true".to_string()];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dist_a = DistributorProc::start(&cluster.addrs(), SHARDS, tmp.path().join("dist-a.log"), &flags);
    let dist_b = DistributorProc::start(&cluster.addrs(), SHARDS, tmp.path().join("dist-b.log"), &flags);
    // (timestamp → value) of every acknowledged `up` sample.
    let mut acked: BTreeMap<i64, f64> = BTreeMap::new();
    let tick = Duration::from_millis(250);

    // Phase 1: r1 (via A) is elected; r2 (via B) is deduplicated.
    let t = now_ms();
    assert_eq!(scrape(&dist_a, "r1", t, 1.0), 204, "{}", dist_a.log());
    acked.insert(t, 1.0);
    let phase1 = Instant::now();
    while phase1.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(tick);
        let t = now_ms();
        assert_eq!(scrape(&dist_a, "r1", t, 1.0), 204, "r1 is elected");
        acked.insert(t, 1.0);
        assert_eq!(scrape(&dist_b, "r2", t + 100, 2.0), 202, "r2 must be deduplicated on the other distributor");
    }

    // Phase 2: r1 is silent; r2 takes over after the failover timeout.
    let r1_silent = Instant::now();
    let took_over = loop {
        std::thread::sleep(tick);
        let t = now_ms();
        if scrape(&dist_b, "r2", t, 2.0) == 204 {
            acked.insert(t, 2.0);
            break r1_silent.elapsed();
        }
        assert!(r1_silent.elapsed() < FAILOVER * 3, "r2 never took over:\n{}", dist_b.log());
    };
    eprintln!("r2 took over {took_over:?} after r1 went silent (failover_timeout {FAILOVER:?})");
    // The shared state records r1 as last seen at its last heartbeat, written
    // at most `update_timeout` (1 s) before its last request (as in Cortex).
    assert!(took_over >= FAILOVER - UPDATE - Duration::from_millis(300), "took over too early: {took_over:?}");

    // Phase 3: r1 is back (via A) but r2 stays elected.
    let phase3 = Instant::now();
    while phase3.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(tick);
        let t = now_ms();
        assert_eq!(scrape(&dist_b, "r2", t, 2.0), 204, "r2 stays elected");
        acked.insert(t, 2.0);
        assert_eq!(scrape(&dist_a, "r1", t + 100, 1.0), 202, "r1 must now be deduplicated");
    }

    // Exactly the acknowledged samples are stored, in one series without the replica label.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reader = rt.block_on(async { ShardReader::new(&cluster.addrs()) });
    let mut stored = Vec::new();
    for shard in 0..SHARDS {
        stored.extend(rt.block_on(reader.select(shard, TENANT, vec![eq("__name__", "up")])));
    }
    assert_eq!(stored.len(), 1, "one series for both replicas: {stored:?}");
    let s = &stored[0];
    assert_eq!(s.labels.get("__replica__"), None);
    assert_eq!(s.labels.get("cluster"), Some("c1"));
    let got: BTreeMap<i64, f64> = s.samples.iter().map(|x| (x.t, x.v)).collect();
    assert_eq!(got, acked, "stored samples differ from the acknowledged ones");
    let deduped: f64 = dist_b
        .metrics()
        .lines()
        .chain(dist_a.metrics().lines().collect::<Vec<_>>().iter().copied())
        .filter(|l| l.starts_with("aion_distributor_deduped_samples_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("{} samples acknowledged and stored; {deduped} deduplicated", acked.len());
    assert!(deduped > 0.0);
}
