//! Active-series tracking for the per-tenant series limits.
//!
//! Approximate by design: each distributor process counts the series *it*
//! accepted (a set of 64-bit series hashes per tenant, with the metric name of
//! each), and forgets a series not pushed for `idle_timeout`. It does not ask
//! the ingesters, so with N distributors each enforces its limit on its own
//! share; a restart forgets everything; hash collisions (xxh3-64) may merge
//! two series. A series is counted when admitted, even if the store later
//! rejects all of its samples.

use aion_model::hash::series_hash;
use aion_model::Labels;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which series limit refused a new series, with the count at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesLimitHit {
    /// The tenant already has `max_global_series_per_user` active series.
    PerUser {
        /// The limit in force.
        limit: u64,
    },
    /// The metric already has `max_global_series_per_metric` active series.
    PerMetric {
        /// The limit in force.
        limit: u64,
        /// The metric name.
        metric: String,
    },
}

#[derive(Debug)]
struct Entry {
    last_seen: Instant,
    metric: Arc<str>,
}

/// One tenant's active series.
#[derive(Debug)]
struct TenantSeries {
    series: HashMap<u64, Entry>,
    per_metric: HashMap<Arc<str>, u64>,
    last_purge: Instant,
}

impl TenantSeries {
    fn new(now: Instant) -> Self {
        Self { series: HashMap::new(), per_metric: HashMap::new(), last_purge: now }
    }

    /// Drops series idle for longer than `idle`.
    fn purge(&mut self, idle: Duration, now: Instant) {
        let per_metric = &mut self.per_metric;
        self.series.retain(|_, e| {
            let keep = now.saturating_duration_since(e.last_seen) <= idle;
            if !keep {
                if let Some(n) = per_metric.get_mut(&e.metric) {
                    *n -= 1;
                    if *n == 0 {
                        per_metric.remove(&e.metric);
                    }
                }
            }
            keep
        });
        self.last_purge = now;
    }
}

/// Active series of every tenant seen by this distributor.
#[derive(Debug)]
pub struct ActiveSeries {
    idle_timeout: Duration,
    tenants: Mutex<HashMap<String, TenantSeries>>,
}

impl ActiveSeries {
    /// A tracker forgetting series idle for longer than `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Self {
        Self { idle_timeout, tenants: Mutex::new(HashMap::new()) }
    }

    /// Admits each series of `batch` (for `tenant`) or refuses it: a known
    /// series is always admitted (its idle clock restarts); a new one only if
    /// neither limit (0 = unlimited) is reached. Returns, per series, `None`
    /// when admitted or the limit that refused it.
    pub fn admit(
        &self,
        tenant: &str,
        batch: &[&Labels],
        max_per_user: u64,
        max_per_metric: u64,
        now: Instant,
    ) -> Vec<Option<SeriesLimitHit>> {
        let mut tenants = self.tenants.lock();
        let t = tenants.entry(tenant.to_string()).or_insert_with(|| TenantSeries::new(now));
        if now.saturating_duration_since(t.last_purge) >= self.idle_timeout / 4 {
            t.purge(self.idle_timeout, now);
        }
        batch.iter().map(|labels| admit_one(t, tenant, labels, max_per_user, max_per_metric, now)).collect()
    }

    /// Active series of `tenant` (0 for an unknown tenant).
    pub fn count(&self, tenant: &str) -> usize {
        self.tenants.lock().get(tenant).map_or(0, |t| t.series.len())
    }
}

fn admit_one(
    t: &mut TenantSeries,
    tenant: &str,
    labels: &Labels,
    max_per_user: u64,
    max_per_metric: u64,
    now: Instant,
) -> Option<SeriesLimitHit> {
    let h = series_hash(tenant, labels);
    if let Some(e) = t.series.get_mut(&h) {
        e.last_seen = now;
        return None;
    }
    if max_per_user > 0 && t.series.len() as u64 >= max_per_user {
        return Some(SeriesLimitHit::PerUser { limit: max_per_user });
    }
    let name = labels.metric_name().unwrap_or("");
    let metric: Arc<str> = match t.per_metric.get_key_value(name) {
        Some((k, n)) => {
            if max_per_metric > 0 && *n >= max_per_metric {
                return Some(SeriesLimitHit::PerMetric { limit: max_per_metric, metric: name.to_string() });
            }
            Arc::clone(k)
        }
        None => Arc::from(name),
    };
    *t.per_metric.entry(Arc::clone(&metric)).or_insert(0) += 1;
    t.series.insert(h, Entry { last_seen: now, metric });
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, job: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", job)])
    }

    #[test]
    fn per_user_limit_refuses_new_series_but_not_known_ones() {
        let a = ActiveSeries::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (s1, s2, s3) = (l("up", "1"), l("up", "2"), l("up", "3"));
        assert_eq!(a.admit("t", &[&s1, &s2], 2, 0, t0), vec![None, None]);
        assert_eq!(a.admit("t", &[&s3, &s1], 2, 0, t0), vec![Some(SeriesLimitHit::PerUser { limit: 2 }), None]);
        assert_eq!(a.count("t"), 2);
        assert_eq!(a.admit("other", &[&s3], 2, 0, t0), vec![None], "tenants are counted apart");
        assert_eq!(a.admit("t", &[&s3], 0, 0, t0), vec![None], "0 = unlimited");
        assert_eq!(a.count("t"), 3);
    }

    #[test]
    fn per_metric_limit_counts_by_metric_name() {
        let a = ActiveSeries::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let got = a.admit("t", &[&l("up", "1"), &l("up", "2"), &l("other", "1")], 0, 1, t0);
        let hit = SeriesLimitHit::PerMetric { limit: 1, metric: "up".into() };
        assert_eq!(got, vec![None, Some(hit), None]);
    }

    #[test]
    fn idle_series_expire_and_free_their_slots() {
        let a = ActiveSeries::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (s1, s2) = (l("up", "1"), l("up", "2"));
        assert_eq!(a.admit("t", &[&s1], 1, 1, t0), vec![None]);
        assert!(a.admit("t", &[&s2], 1, 1, t0 + Duration::from_secs(30))[0].is_some());
        // s1 idle for 61 s: forgotten, s2 fits under both limits.
        assert_eq!(a.admit("t", &[&s2], 1, 1, t0 + Duration::from_secs(61)), vec![None]);
        assert_eq!(a.count("t"), 1);
    }
}
