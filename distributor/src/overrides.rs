//! Runtime per-tenant limit overrides.
//!
//! The overrides file is YAML: `overrides: { <tenant>: { <Limits fields> } }`.
//! A tenant's fields are laid over the default [`Limits`] (fields it does not
//! name keep the defaults), unknown fields are errors, and every merged set is
//! validated. The file is read at start (an error there fails the start) and
//! re-read every `overrides_period` by a background task; a file that cannot be
//! read or parsed later is logged and the last good overrides stay in force.

use crate::config::Limits;
use crate::error::{DistributorError, Result};
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
pub fn parse_overrides(text: &str, defaults: &Limits) -> Result<HashMap<String, Arc<Limits>>> {
    let bad = |m: String| DistributorError::Config(format!("overrides file: {m}"));
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
        let limits: Limits = serde_yaml::from_value(merged).map_err(|e| bad(format!("tenant {tenant:?}: {e}")))?;
        limits.validate(&format!("overrides.{tenant}")).map_err(|e| bad(e.to_string()))?;
        out.insert(tenant, Arc::new(limits));
    }
    Ok(out)
}

/// Default limits plus the per-tenant overrides currently in force.
#[derive(Debug)]
pub struct TenantLimits {
    defaults: Arc<Limits>,
    overrides: RwLock<HashMap<String, Arc<Limits>>>,
}

impl TenantLimits {
    /// Limits with no overrides.
    pub fn new(defaults: Limits) -> Self {
        Self { defaults: Arc::new(defaults), overrides: RwLock::new(HashMap::new()) }
    }

    /// The limits of `tenant`: its override, else the defaults.
    pub fn get(&self, tenant: &str) -> Arc<Limits> {
        self.overrides.read().get(tenant).cloned().unwrap_or_else(|| Arc::clone(&self.defaults))
    }

    /// Replaces all overrides.
    pub fn set_overrides(&self, o: HashMap<String, Arc<Limits>>) {
        *self.overrides.write() = o;
    }

    /// Reads and parses `path`, replacing the overrides only on success.
    pub fn load_file(&self, path: &Path) -> Result<usize> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DistributorError::Config(format!("cannot read overrides file {}: {e}", path.display())))?;
        let o = parse_overrides(&text, &self.defaults)
            .map_err(|e| DistributorError::Config(format!("{} ({})", e, path.display())))?;
        let n = o.len();
        self.set_overrides(o);
        Ok(n)
    }
}

/// Starts the task re-reading `path` every `period` on the current tokio
/// runtime; it ends when `limits` is dropped. Without a runtime it logs a
/// warning and the overrides read at start stay in force.
pub fn spawn_reloader(limits: Weak<TenantLimits>, path: PathBuf, period: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(path = %path.display(), "no tokio runtime: runtime overrides will not be reloaded");
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
            let res = tokio::task::spawn_blocking(move || l.load_file(&p)).await;
            match res {
                Ok(Ok(n)) => tracing::debug!(path = %path.display(), tenants = n, "runtime overrides reloaded"),
                Ok(Err(e)) => tracing::error!(error = %e, "keeping the last good runtime overrides"),
                Err(e) => tracing::error!(error = %e, "overrides reload task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_fields_merge_over_defaults() {
        let defaults = Limits { ingestion_rate: 100, ..Limits::default() };
        let o = parse_overrides(
            "overrides:\n  team-a:\n    ingestion_rate: 5\n    past_grace_period: 1h\n  team-b: {}\n",
            &defaults,
        )
        .unwrap();
        let a = &o["team-a"];
        assert_eq!(a.ingestion_rate, 5);
        assert_eq!(a.past_grace_period, Duration::from_secs(3600));
        assert_eq!(a.ingestion_burst_size, defaults.ingestion_burst_size, "unset fields keep the defaults");
        assert_eq!(*o["team-b"], defaults);
        assert!(parse_overrides("", &defaults).unwrap().is_empty());
        assert!(parse_overrides("overrides:\n", &defaults).unwrap().is_empty());
    }

    #[test]
    fn bad_overrides_are_named() {
        let d = Limits::default();
        let e = parse_overrides("overrides:\n  t1:\n    ingestion_rte: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("t1") && e.contains("ingestion_rte"), "{e}");
        let e = parse_overrides("overrides:\n  t1:\n    max_label_name_length: 0\n", &d).unwrap_err().to_string();
        assert!(e.contains("overrides.t1.max_label_name_length"), "{e}");
        let e = parse_overrides("overides: {}\n", &d).unwrap_err().to_string();
        assert!(e.contains("overides"), "{e}");
        let e = parse_overrides("overrides:\n  t1: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("expected a mapping"), "{e}");
    }

    #[test]
    fn load_file_keeps_last_good_on_error() {
        let dir = std::env::temp_dir().join(format!("aion-overrides-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("o.yaml");
        let l = TenantLimits::new(Limits::default());
        std::fs::write(&p, "overrides:\n  t1:\n    ingestion_rate: 7\n").unwrap();
        assert_eq!(l.load_file(&p).unwrap(), 1);
        assert_eq!(l.get("t1").ingestion_rate, 7);
        assert_eq!(l.get("t2").ingestion_rate, 10_000, "others get the defaults");
        std::fs::write(&p, "overrides: [not, a, map]\n").unwrap();
        assert!(l.load_file(&p).is_err());
        assert_eq!(l.get("t1").ingestion_rate, 7, "last good overrides kept");
        std::fs::remove_file(&p).unwrap();
        assert!(l.load_file(&p).unwrap_err().to_string().contains("cannot read overrides file"));
        assert_eq!(l.get("t1").ingestion_rate, 7);
    }

    #[tokio::test]
    async fn reloader_applies_changes_and_stops_with_its_owner() {
        let dir = std::env::temp_dir().join(format!("aion-overrides-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("o.yaml");
        std::fs::write(&p, "overrides:\n  t1:\n    ingestion_rate: 1\n").unwrap();
        let l = Arc::new(TenantLimits::new(Limits::default()));
        l.load_file(&p).unwrap();
        spawn_reloader(Arc::downgrade(&l), p.clone(), Duration::from_millis(20));
        std::fs::write(&p, "overrides:\n  t1:\n    ingestion_rate: 2\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while l.get("t1").ingestion_rate != 2 {
            assert!(std::time::Instant::now() < deadline, "reload not seen within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(l);
        std::fs::remove_file(&p).unwrap();
    }
}
