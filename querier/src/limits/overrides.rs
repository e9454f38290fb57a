//! Runtime per-tenant query-limit overrides (the querier's mirror of the
//! distributor's overrides file).
//!
//! The file is YAML: `overrides: { <tenant>: { <QueryLimits fields> } }`. A
//! tenant's fields are laid over the default [`QueryLimits`] (fields it does
//! not name keep the defaults); unknown fields are errors. The file is read at
//! start (an error there fails the start) and re-read every `overrides_period`
//! by a background task; a file that cannot be read or parsed later is logged
//! and the last good overrides stay in force.

use super::{LimitsError, QueryLimits};
use parking_lot::RwLock;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesFile {
    #[serde(default)]
    overrides: Option<HashMap<String, serde_yaml::Value>>,
}

/// Parses overrides YAML and merges each tenant's fields over `defaults`.
/// An empty file (or `overrides:` with no tenants) means no overrides.
pub fn parse_overrides(text: &str, defaults: &QueryLimits) -> Result<HashMap<String, Arc<QueryLimits>>, LimitsError> {
    let bad = |m: String| LimitsError::Invalid(m);
    if text.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let file: OverridesFile = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let base = serde_yaml::to_value(defaults).map_err(|e| bad(format!("BUG: cannot encode default limits: {e}")))?;
    let mut out = HashMap::new();
    for (tenant, fields) in file.overrides.unwrap_or_default() {
        let mut merged = base.clone();
        match (&mut merged, fields) {
            (serde_yaml::Value::Mapping(m), serde_yaml::Value::Mapping(f)) => m.extend(f),
            (_, serde_yaml::Value::Null) => {}
            (_, other) => return Err(bad(format!("tenant {tenant:?}: expected a mapping of limits, got {other:?}"))),
        }
        let limits: QueryLimits = serde_yaml::from_value(merged).map_err(|e| bad(format!("tenant {tenant:?}: {e}")))?;
        limits.validate(&format!("overrides.{tenant}"))?;
        out.insert(tenant, Arc::new(limits));
    }
    Ok(out)
}

/// Default query limits plus the per-tenant overrides currently in force.
#[derive(Debug)]
pub struct TenantQueryLimits {
    defaults: Arc<QueryLimits>,
    overrides: RwLock<HashMap<String, Arc<QueryLimits>>>,
}

impl Default for TenantQueryLimits {
    fn default() -> Self {
        Self::new(QueryLimits::default())
    }
}

impl TenantQueryLimits {
    /// Limits with no overrides.
    pub fn new(defaults: QueryLimits) -> Self {
        Self { defaults: Arc::new(defaults), overrides: RwLock::new(HashMap::new()) }
    }

    /// The limits of `tenant`: its override, else the defaults.
    pub fn get(&self, tenant: &str) -> Arc<QueryLimits> {
        self.overrides.read().get(tenant).cloned().unwrap_or_else(|| Arc::clone(&self.defaults))
    }

    /// Replaces all overrides.
    pub fn set_overrides(&self, o: HashMap<String, Arc<QueryLimits>>) {
        *self.overrides.write() = o;
    }

    /// Reads and parses `path`, replacing the overrides only on success;
    /// returns how many tenants it overrides.
    pub fn load_file(&self, path: &Path) -> Result<usize, LimitsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LimitsError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let o = parse_overrides(&text, &self.defaults)
            .map_err(|e| LimitsError::Invalid(format!("{} ({})", e, path.display())))?;
        let n = o.len();
        self.set_overrides(o);
        Ok(n)
    }
}

/// Starts the task re-reading `path` every `period` on the current tokio
/// runtime; it ends when `limits` is dropped. Without a runtime it logs a
/// warning and the overrides read at start stay in force.
pub fn spawn_reloader(limits: Weak<TenantQueryLimits>, path: PathBuf, period: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(path = %path.display(), "no tokio runtime: query limit overrides will not be reloaded");
        return;
    };
    rt.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the file was just read
        loop {
            tick.tick().await;
            let Some(l) = limits.upgrade() else { return };
            let p = path.clone();
            match tokio::task::spawn_blocking(move || l.load_file(&p)).await {
                Ok(Ok(n)) => tracing::debug!(path = %path.display(), tenants = n, "query limit overrides reloaded"),
                Ok(Err(e)) => tracing::error!(error = %e, "keeping the last good query limit overrides"),
                Err(e) => tracing::error!(error = %e, "query overrides reload task failed"),
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aion-query-overrides-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("o.yaml")
    }

    #[test]
    fn tenant_fields_merge_over_defaults() {
        let defaults = QueryLimits { max_series_per_query: 100, ..QueryLimits::default() };
        let o = parse_overrides(
            "overrides:\n  team-a:\n    max_series_per_query: 5\n    max_query_lookback: 1h\n  team-b: {}\n",
            &defaults,
        )
        .unwrap();
        let a = &o["team-a"];
        assert_eq!(a.max_series_per_query, 5);
        assert_eq!(a.max_query_lookback, Duration::from_secs(3600));
        assert_eq!(a.query_timeout, defaults.query_timeout, "unset fields keep the defaults");
        assert_eq!(*o["team-b"], defaults);
        assert!(parse_overrides("", &defaults).unwrap().is_empty());
        assert!(parse_overrides("overrides:\n", &defaults).unwrap().is_empty());
    }

    #[test]
    fn bad_overrides_are_named() {
        let d = QueryLimits::default();
        let e = parse_overrides("overrides:\n  t1:\n    max_serie_per_query: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("t1") && e.contains("max_serie_per_query"), "{e}");
        let e = parse_overrides("overrides:\n  t1:\n    query_timeout: soon\n", &d).unwrap_err().to_string();
        assert!(e.contains("t1"), "{e}");
        let e = parse_overrides("overides: {}\n", &d).unwrap_err().to_string();
        assert!(e.contains("overides"), "{e}");
        let e = parse_overrides("overrides:\n  t1: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("expected a mapping"), "{e}");
    }

    #[test]
    fn resolution_and_last_good_on_error() {
        let p = temp_file("load");
        let l = TenantQueryLimits::new(QueryLimits { max_series_per_query: 50, ..QueryLimits::default() });
        std::fs::write(&p, "overrides:\n  t1:\n    max_series_per_query: 7\n").unwrap();
        assert_eq!(l.load_file(&p).unwrap(), 1);
        assert_eq!(l.get("t1").max_series_per_query, 7);
        assert_eq!(l.get("t2").max_series_per_query, 50, "others get the defaults");
        std::fs::write(&p, "overrides: [not, a, map]\n").unwrap();
        assert!(l.load_file(&p).is_err());
        assert_eq!(l.get("t1").max_series_per_query, 7, "last good overrides kept");
        std::fs::remove_file(&p).unwrap();
        assert!(l.load_file(&p).unwrap_err().to_string().contains("cannot read query overrides file"));
        assert_eq!(l.get("t1").max_series_per_query, 7);
    }

    #[tokio::test]
    async fn reloader_applies_changes() {
        let p = temp_file("reload");
        std::fs::write(&p, "overrides:\n  t1:\n    max_series_per_query: 1\n").unwrap();
        let l = Arc::new(TenantQueryLimits::default());
        l.load_file(&p).unwrap();
        spawn_reloader(Arc::downgrade(&l), p.clone(), Duration::from_millis(20));
        std::fs::write(&p, "overrides:\n  t1:\n    max_series_per_query: 2\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while l.get("t1").max_series_per_query != 2 {
            assert!(std::time::Instant::now() < deadline, "reload not seen within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(l);
        std::fs::remove_file(&p).unwrap();
    }
}
