//! HA-pair deduplication, Cortex semantics: two (or more) Prometheus
//! replicas scrape the same targets and label their samples
//! `cluster="c", __replica__="r1"` / `"r2"`. Per (tenant, cluster) one
//! replica is elected; its requests are accepted with the replica label
//! dropped (so both replicas' series are the same series), the others'
//! are answered `202 Accepted` and dropped. When the elected replica has
//! sent nothing for `failover_timeout`, the next replica to send takes over.
//! A request is judged by its first series' labels (a request comes from
//! one Prometheus); requests without both labels pass untouched.
//!
//! Shared state: the election lives in the cluster itself, as the series
//! `aion_ha_election{tenant="<tenant>", cluster="<cluster>"}` of the reserved
//! tenant [`HA_TENANT`], written through the distributor's appender (in a
//! cluster: Raft-replicated on the series' shard) and read back through a
//! [`Queryable`] ([`crate::Distributor::with_ha_store`]). Each sample is a
//! heartbeat: its timestamp is when the elected replica was last seen, its
//! value a 52-bit hash of the replica name (exact in an `f64`). The newest
//! sample is the election. A takeover is a write with a newer timestamp;
//! two distributors taking over at once both succeed and the newer write
//! wins, so both replicas may be accepted for up to `update_timeout` (the
//! cache lifetime) — the same window Cortex's KV cache has. A write the
//! store rejects (out of order: another distributor wrote after us) means
//! the race was lost; the election is re-read. Without a store the election
//! is local to this distributor. Distributor clocks are assumed in sync to
//! well under `failover_timeout`.

use crate::error::{DistributorError, Result};
use aion_model::labels::Labels;
use aion_model::matcher::{MatchOp, Matcher};
use aion_model::sample::Sample;
use aion_model::storage::{Appender, Queryable, SelectHints, SeriesSamples, StorageError, WriteBatch};
use aion_model::TenantId;
use aion_proto::prometheus::{TimeSeries, WriteRequest};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reserved tenant holding the elections.
pub const HA_TENANT: &str = "__aion_ha__";
/// Metric name of the election series.
pub const ELECTION_METRIC: &str = "aion_ha_election";

/// The `ha_tracker` section of the distributor config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaTrackerConfig {
    /// Deduplicate HA pairs.
    pub enabled: bool,
    /// Label naming the HA cluster (kept on stored series).
    pub cluster_label: String,
    /// Label naming the replica (dropped from stored series).
    pub replica_label: String,
    /// Silence of the elected replica after which another one takes over.
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,
    /// How often the election is re-read and the elected replica's
    /// heartbeat written; must be below `failover_timeout`.
    #[serde(with = "humantime_serde")]
    pub update_timeout: Duration,
}

impl Default for HaTrackerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster_label: "cluster".into(),
            replica_label: "__replica__".into(),
            failover_timeout: Duration::from_secs(30),
            update_timeout: Duration::from_secs(10),
        }
    }
}

impl HaTrackerConfig {
    /// Checks labels and timeouts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DistributorError::Config(format!("ha_tracker: {m}")));
        if !self.enabled {
            return Ok(());
        }
        if self.cluster_label.is_empty() || self.replica_label.is_empty() || self.cluster_label == self.replica_label {
            return bad(format!(
                "cluster_label {:?} and replica_label {:?} must be distinct and non-empty",
                self.cluster_label, self.replica_label
            ));
        }
        if self.update_timeout.is_zero() || self.update_timeout >= self.failover_timeout {
            return bad(format!(
                "update_timeout {:?} must be positive and below failover_timeout {:?}",
                self.update_timeout, self.failover_timeout
            ));
        }
        Ok(())
    }
}

/// Label set `{tenant, cluster}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    tenant: String,
    cluster: String,
}

/// The election of one (tenant, cluster) as last known.
#[derive(Debug, Clone, Copy)]
struct Election {
    /// [`replica_hash`] of the elected replica.
    replica: u64,
    /// When it was last seen (heartbeat timestamp), ms.
    last_seen_ms: i64,
    /// When (ms, the caller's clock) this copy was read from or written to the store.
    known_at_ms: i64,
}

/// What to do with a request from a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It is the elected replica.
    Accept,
    /// No live election: claim it.
    TakeOver,
    /// Another replica is elected and alive.
    Dedupe,
}

/// The HA tracker of one distributor.
pub struct HaTracker {
    cfg: HaTrackerConfig,
    appender: Arc<dyn Appender>,
    store: Option<Arc<dyn Queryable>>,
    cache: Mutex<HashMap<(String, String), Election>>,
    deduped: Family<ClusterLabels, Counter>,
    elections: Family<ClusterLabels, Counter>,
}

/// 52-bit hash of a replica name: exact as an `f64` sample value.
pub fn replica_hash(replica: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(replica.as_bytes()) >> 12
}

impl HaTracker {
    /// A tracker writing elections through `appender`; registers
    /// `aion_distributor_deduped_samples_total{tenant,cluster}` and
    /// `aion_distributor_ha_elections_total{tenant,cluster}`.
    pub fn new(cfg: HaTrackerConfig, appender: Arc<dyn Appender>, registry: &mut Registry) -> Self {
        let t = Self {
            cfg,
            appender,
            store: None,
            cache: Mutex::new(HashMap::new()),
            deduped: Family::default(),
            elections: Family::default(),
        };
        registry.register(
            "aion_distributor_deduped_samples",
            "Samples dropped because they came from a non-elected HA replica, by tenant and cluster",
            t.deduped.clone(),
        );
        registry.register(
            "aion_distributor_ha_elections",
            "HA replica elections (takeovers) this distributor wrote, by tenant and cluster",
            t.elections.clone(),
        );
        t
    }

    /// Reads elections back from `store` (shared by every distributor).
    pub fn set_store(&mut self, store: Arc<dyn Queryable>) {
        self.store = Some(store);
    }

    /// The configuration.
    pub fn config(&self) -> &HaTrackerConfig {
        &self.cfg
    }

    /// `(cluster, replica)` of a request: from its first series, when it has both labels.
    pub fn ha_labels(&self, series: &[TimeSeries]) -> Option<(String, String)> {
        let first = series.first()?;
        let get = |name: &str| first.labels.iter().find(|l| l.name == name && !l.value.is_empty()).map(|l| l.value.clone());
        Some((get(&self.cfg.cluster_label)?, get(&self.cfg.replica_label)?))
    }

    /// Drops the replica label from every series.
    pub fn drop_replica_label(&self, series: &mut [TimeSeries]) {
        for s in series {
            s.labels.retain(|l| l.name != self.cfg.replica_label);
        }
    }

    /// Counts `samples` deduplicated for (tenant, cluster).
    pub fn count_deduped(&self, tenant: &str, cluster: &str, samples: u64) {
        let key = ClusterLabels { tenant: tenant.into(), cluster: cluster.into() };
        self.deduped.get_or_create(&key).inc_by(samples);
    }

    /// Whether `replica`'s request for (tenant, cluster) at `now_ms` is
    /// accepted (it is, or just became, the elected replica). Blocking: reads
    /// and writes the store.
    pub fn accept(&self, tenant: &str, cluster: &str, replica: &str, now_ms: i64) -> std::result::Result<bool, StorageError> {
        let me = replica_hash(replica);
        let key = (tenant.to_string(), cluster.to_string());
        let mut election = self.current(&key, now_ms, false)?;
        let mut verdict = self.verdict(election, me, now_ms);
        if verdict == Verdict::TakeOver && election.is_some() {
            // Only take over on a fresh read: another distributor may have seen the replica.
            election = self.current(&key, now_ms, true)?;
            verdict = self.verdict(election, me, now_ms);
        }
        match verdict {
            Verdict::Dedupe => Ok(false),
            Verdict::Accept => {
                if election.is_some_and(|e| now_ms - e.last_seen_ms >= self.update_ms()) {
                    self.write(&key, me, now_ms)?;
                }
                Ok(true)
            }
            Verdict::TakeOver => {
                if self.write(&key, me, now_ms)? {
                    self.elections.get_or_create(&ClusterLabels { tenant: key.0.clone(), cluster: key.1.clone() }).inc();
                    tracing::info!(tenant, cluster, replica, "HA replica elected");
                    return Ok(true);
                }
                // Lost a race: someone wrote a newer election.
                let election = self.current(&key, now_ms, true)?;
                Ok(self.verdict(election, me, now_ms) == Verdict::Accept)
            }
        }
    }

    fn update_ms(&self) -> i64 {
        self.cfg.update_timeout.as_millis() as i64
    }

    fn verdict(&self, election: Option<Election>, me: u64, now_ms: i64) -> Verdict {
        match election {
            Some(e) if e.replica == me => Verdict::Accept,
            Some(e) if now_ms - e.last_seen_ms <= self.cfg.failover_timeout.as_millis() as i64 => Verdict::Dedupe,
            _ => Verdict::TakeOver,
        }
    }

    /// The election: cached when younger than `update_timeout` (and not
    /// `force`d), else read from the store (the cache when there is none).
    fn current(&self, key: &(String, String), now_ms: i64, force: bool) -> std::result::Result<Option<Election>, StorageError> {
        let cached = self.cache.lock().get(key).copied();
        let Some(store) = &self.store else { return Ok(cached) };
        if !force && cached.is_some_and(|e| now_ms - e.known_at_ms < self.update_ms()) {
            return Ok(cached);
        }
        let tenant = TenantId::new(HA_TENANT).map_err(|e| StorageError::Io(format!("BUG: HA tenant: {e}")))?;
        let window = 2 * self.cfg.failover_timeout.as_millis() as i64;
        let hints = SelectHints { start: now_ms - window, end: i64::MAX };
        let series = store.select(&tenant, &hints, &election_matchers(&key.0, &key.1)?)?;
        let newest = series.iter().filter_map(|s| s.samples.last()).max_by_key(|s| s.t);
        let election =
            newest.map(|s| Election { replica: s.v as u64, last_seen_ms: s.t, known_at_ms: now_ms });
        let mut cache = self.cache.lock();
        match election {
            Some(e) => cache.insert(key.clone(), e),
            None => cache.remove(key),
        };
        Ok(election)
    }

    /// Writes a heartbeat electing `replica` at `now_ms`; false when the store
    /// refused it (a newer election exists).
    fn write(&self, key: &(String, String), replica: u64, now_ms: i64) -> std::result::Result<bool, StorageError> {
        let tenant = TenantId::new(HA_TENANT).map_err(|e| StorageError::Io(format!("BUG: HA tenant: {e}")))?;
        let labels = Labels::from_pairs([("__name__", ELECTION_METRIC), ("cluster", &key.1), ("tenant", &key.0)]);
        let batch = WriteBatch {
            tenant,
            series: vec![SeriesSamples { labels, samples: vec![Sample::new(now_ms, replica as f64)] }],
        };
        let outcome = self.appender.append(batch)?;
        if !outcome.rejected.is_empty() {
            return Ok(false);
        }
        let e = Election { replica, last_seen_ms: now_ms, known_at_ms: now_ms };
        self.cache.lock().insert(key.clone(), e);
        Ok(true)
    }
}

impl crate::Distributor {
    /// The HA check of a request (see the module doc): the request with the
    /// replica label dropped when its replica is elected (or it is not from
    /// an HA pair), [`DistributorError::Deduplicated`] (202) when not.
    pub(crate) async fn ha_dedupe(&self, tenant: &str, mut req: WriteRequest) -> Result<WriteRequest> {
        let Some(ha) = self.ha.clone() else { return Ok(req) };
        if tenant == HA_TENANT {
            return Err(DistributorError::InvalidTenant(format!(
                "tenant {HA_TENANT} is reserved for HA-pair elections while ha_tracker is enabled"
            )));
        }
        let Some((cluster, replica)) = ha.ha_labels(&req.timeseries) else { return Ok(req) };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let (t, c, r, h) = (tenant.to_string(), cluster.clone(), replica.clone(), Arc::clone(&ha));
        let accepted = tokio::task::spawn_blocking(move || h.accept(&t, &c, &r, now_ms))
            .await
            .map_err(|e| DistributorError::Internal(format!("HA tracker task failed: {e}")))??;
        if !accepted {
            let samples: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
            ha.count_deduped(tenant, &cluster, samples as u64);
            return Err(DistributorError::Deduplicated(format!(
                "samples deduplicated: replica {replica:?} of HA cluster {cluster:?} is not the elected replica for tenant {tenant}"
            )));
        }
        ha.drop_replica_label(&mut req.timeseries);
        Ok(req)
    }
}

fn election_matchers(tenant: &str, cluster: &str) -> std::result::Result<Vec<Matcher>, StorageError> {
    let m = |n: &str, v: &str| {
        Matcher::new(MatchOp::Equal, n.to_string(), v.to_string()).map_err(|e| StorageError::Io(format!("BUG: matcher: {e}")))
    };
    Ok(vec![m("__name__", ELECTION_METRIC)?, m("cluster", cluster)?, m("tenant", tenant)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;

    fn tracker(store: &Arc<MemStore>, failover_ms: u64) -> HaTracker {
        let cfg = HaTrackerConfig {
            enabled: true,
            failover_timeout: Duration::from_millis(failover_ms),
            update_timeout: Duration::from_millis(failover_ms / 3),
            ..HaTrackerConfig::default()
        };
        let mut t = HaTracker::new(cfg, store.clone(), &mut Registry::default());
        t.set_store(store.clone());
        t
    }

    #[test]
    fn one_replica_per_cluster_and_failover_after_silence() {
        let store = Arc::new(MemStore::default());
        let (a, b) = (tracker(&store, 30_000), tracker(&store, 30_000));
        let t0 = 1_000_000;
        assert!(a.accept("t", "c1", "r1", t0).unwrap());
        // Another distributor sees the same election.
        assert!(!b.accept("t", "c1", "r2", t0 + 1000).unwrap());
        assert!(b.accept("t", "c1", "r1", t0 + 1000).unwrap());
        // Other clusters and tenants are independent.
        assert!(b.accept("t", "c2", "r2", t0 + 1000).unwrap());
        assert!(b.accept("u", "c1", "r2", t0 + 1000).unwrap());
        // r1 keeps the election while it sends (heartbeats extend it).
        assert!(a.accept("t", "c1", "r1", t0 + 20_000).unwrap());
        assert!(!b.accept("t", "c1", "r2", t0 + 45_000).unwrap());
        // r1 silent for more than failover_timeout: r2 takes over, on either distributor.
        assert!(b.accept("t", "c1", "r2", t0 + 51_000).unwrap());
        assert!(!a.accept("t", "c1", "r1", t0 + 52_000).unwrap());
    }

    #[tokio::test]
    async fn the_distributor_answers_202_for_the_other_replica_and_drops_the_label() {
        use aion_model::storage::SelectHints;
        use aion_proto::prometheus::{Label, Sample as PbSample};
        let store = Arc::new(MemStore::new());
        let mut cfg = crate::DistributorConfig::default();
        cfg.ha_tracker.enabled = true;
        let d = crate::Distributor::new(cfg, store.clone(), &mut Registry::default())
            .unwrap()
            .with_ha_store(store.clone());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let req = |replica: &str, v: f64| WriteRequest {
            timeseries: vec![TimeSeries {
                labels: [("__name__", "up"), ("__replica__", replica), ("cluster", "c")]
                    .iter()
                    .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
                    .collect(),
                samples: vec![PbSample { value: v, timestamp: now }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let anon = TenantId::anonymous();
        d.push(anon.clone(), req("r1", 1.0)).await.unwrap();
        let e = d.push(anon.clone(), req("r2", 2.0)).await.unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::ACCEPTED, "{e}");
        assert!(e.to_string().contains("\"r2\""), "{e}");
        let m = Matcher::new(MatchOp::Equal, "__name__", "up").unwrap();
        let stored = store.select(&anon, &SelectHints::all(), &[m]).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].labels, Labels::from_pairs([("__name__", "up"), ("cluster", "c")]));
        assert_eq!(stored[0].samples.len(), 1);
        assert_eq!(stored[0].samples[0].v, 1.0);
        let e = d.push(TenantId::new(HA_TENANT).unwrap(), req("r1", 1.0)).await.unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn labels_are_found_and_the_replica_label_dropped() {
        use aion_proto::prometheus::Label;
        let store = Arc::new(MemStore::default());
        let t = tracker(&store, 3000);
        let l = |n: &str, v: &str| Label { name: n.into(), value: v.into() };
        let mut series = vec![TimeSeries { labels: vec![l("__name__", "up"), l("cluster", "c"), l("__replica__", "r1")], ..Default::default() }];
        assert_eq!(t.ha_labels(&series), Some(("c".into(), "r1".into())));
        t.drop_replica_label(&mut series);
        assert_eq!(series[0].labels.len(), 2);
        assert_eq!(t.ha_labels(&series), None);
        let bad = HaTrackerConfig { enabled: true, update_timeout: Duration::from_secs(40), ..Default::default() };
        assert!(bad.validate().is_err());
    }
}
