//! Per-tenant runtime overrides, shared by every role that has per-tenant
//! limits (the distributor's ingestion limits, the querier's query limits).
//!
//! The file is YAML: `overrides: { <tenant>: { <limit fields> } }`. A
//! tenant's fields are laid over the role's default limits (fields it does
//! not name keep the defaults), unknown fields are errors, and every merged
//! set is validated by the role's [`TenantLimitSet::check`]. The file is read
//! at start (an error there fails the start, see [`TenantOverrides::load_file`])
//! and re-read every period by [`spawn_reloader`]; a file that cannot be read
//! or parsed later is logged and the last good overrides stay in force.

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use thiserror::Error;

/// A role's set of per-tenant limits, as the overrides file spells it.
pub trait TenantLimitSet: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Checks one merged set; `at` names it in messages (`overrides.<tenant>`).
    fn check(&self, at: &str) -> Result<(), String>;
}

/// Why an overrides file was not taken.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OverridesError {
    /// The file cannot be read.
    #[error("cannot read overrides file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The file's content is invalid; the message names the tenant and field.
    #[error("overrides file: {0}")]
    Invalid(String),
}

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesFile {
    #[serde(default)]
    overrides: Option<HashMap<String, serde_yaml::Value>>,
}

/// Parses overrides YAML and merges each tenant's fields over `defaults`.
/// An empty file (or `overrides:` with no tenants) means no overrides.
pub fn parse_overrides<L: TenantLimitSet>(
    text: &str,
    defaults: &L,
) -> Result<HashMap<String, Arc<L>>, OverridesError> {
    let bad = OverridesError::Invalid;
    if text.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let file: OverridesFile = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let base = serde_yaml::to_value(defaults)
        .map_err(|e| bad(format!("BUG: cannot encode default limits: {e}")))?;
    let mut out = HashMap::new();
    for (tenant, fields) in file.overrides.unwrap_or_default() {
        let mut merged = base.clone();
        match (&mut merged, fields) {
            (serde_yaml::Value::Mapping(m), serde_yaml::Value::Mapping(f)) => m.extend(f),
            (_, serde_yaml::Value::Null) => {}
            (_, other) => {
                return Err(bad(format!("tenant {tenant:?}: expected a mapping of limits, got {other:?}")))
            }
        }
        let limits: L = serde_yaml::from_value(merged).map_err(|e| bad(format!("tenant {tenant:?}: {e}")))?;
        limits.check(&format!("overrides.{tenant}")).map_err(bad)?;
        out.insert(tenant, Arc::new(limits));
    }
    Ok(out)
}

/// Default limits plus the per-tenant overrides currently in force.
#[derive(Debug)]
pub struct TenantOverrides<L> {
    defaults: Arc<L>,
    overrides: RwLock<HashMap<String, Arc<L>>>,
}

impl<L: TenantLimitSet + Default> Default for TenantOverrides<L> {
    fn default() -> Self {
        Self::new(L::default())
    }
}

impl<L: TenantLimitSet> TenantOverrides<L> {
    /// Limits with no overrides.
    pub fn new(defaults: L) -> Self {
        Self { defaults: Arc::new(defaults), overrides: RwLock::new(HashMap::new()) }
    }

    /// The limits of `tenant`: its override, else the defaults.
    pub fn get(&self, tenant: &str) -> Arc<L> {
        self.overrides.read().get(tenant).cloned().unwrap_or_else(|| Arc::clone(&self.defaults))
    }

    /// Replaces all overrides.
    pub fn set_overrides(&self, o: HashMap<String, Arc<L>>) {
        *self.overrides.write() = o;
    }

    /// Reads and parses `path`, replacing the overrides only on success;
    /// returns how many tenants it overrides.
    pub fn load_file(&self, path: &Path) -> Result<usize, OverridesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OverridesError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let o = parse_overrides(&text, &*self.defaults)
            .map_err(|e| OverridesError::Invalid(format!("{} ({})", invalid_detail(&e), path.display())))?;
        let n = o.len();
        self.set_overrides(o);
        Ok(n)
    }
}

fn invalid_detail(e: &OverridesError) -> String {
    match e {
        OverridesError::Invalid(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Starts the task re-reading `path` every `period` on the current tokio
/// runtime; it ends when `limits` is dropped. `what` names the limits in logs
/// (e.g. "query limit overrides"). Without a runtime it logs a warning and
/// the overrides read at start stay in force.
pub fn spawn_reloader<L: TenantLimitSet>(
    limits: Weak<TenantOverrides<L>>,
    path: PathBuf,
    period: Duration,
    what: &'static str,
) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(path = %path.display(), "no tokio runtime: {what} will not be reloaded");
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
                Ok(Ok(n)) => tracing::debug!(path = %path.display(), tenants = n, "{what} reloaded"),
                Ok(Err(e)) => tracing::error!(error = %e, "keeping the last good {what}"),
                Err(e) => tracing::error!(error = %e, "{what} reload task failed"),
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TestLimits {
        rate: u64,
        name_length: u32,
        #[serde(with = "humantime_serde")]
        grace: Duration,
    }

    impl Default for TestLimits {
        fn default() -> Self {
            Self { rate: 100, name_length: 10, grace: Duration::ZERO }
        }
    }

    impl TenantLimitSet for TestLimits {
        fn check(&self, at: &str) -> Result<(), String> {
            if self.name_length == 0 {
                return Err(format!("{at}.name_length must be greater than 0"));
            }
            Ok(())
        }
    }

    fn temp_file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aion-overrides-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("o.yaml")
    }

    #[test]
    fn tenant_fields_merge_over_defaults() {
        let defaults = TestLimits { rate: 7, ..TestLimits::default() };
        let o = parse_overrides("overrides:\n  team-a:\n    rate: 5\n    grace: 1h\n  team-b: {}\n", &defaults)
            .unwrap();
        let a = &o["team-a"];
        assert_eq!(a.rate, 5);
        assert_eq!(a.grace, Duration::from_secs(3600));
        assert_eq!(a.name_length, defaults.name_length, "unset fields keep the defaults");
        assert_eq!(*o["team-b"], defaults);
        assert!(parse_overrides("", &defaults).unwrap().is_empty());
        assert!(parse_overrides("overrides:\n", &defaults).unwrap().is_empty());
    }

    #[test]
    fn bad_overrides_are_named() {
        let d = TestLimits::default();
        let e = parse_overrides("overrides:\n  t1:\n    rte: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("t1") && e.contains("rte"), "{e}");
        let e = parse_overrides("overrides:\n  t1:\n    name_length: 0\n", &d).unwrap_err().to_string();
        assert!(e.contains("overrides.t1.name_length"), "{e}");
        let e = parse_overrides("overrides:\n  t1:\n    grace: soon\n", &d).unwrap_err().to_string();
        assert!(e.contains("t1"), "{e}");
        let e = parse_overrides("overides: {}\n", &d).unwrap_err().to_string();
        assert!(e.contains("overides"), "{e}");
        let e = parse_overrides("overrides:\n  t1: 5\n", &d).unwrap_err().to_string();
        assert!(e.contains("expected a mapping"), "{e}");
    }

    #[test]
    fn load_file_keeps_last_good_on_error() {
        let p = temp_file("load");
        let l = TenantOverrides::new(TestLimits::default());
        std::fs::write(&p, "overrides:\n  t1:\n    rate: 7\n").unwrap();
        assert_eq!(l.load_file(&p).unwrap(), 1);
        assert_eq!(l.get("t1").rate, 7);
        assert_eq!(l.get("t2").rate, 100, "others get the defaults");
        std::fs::write(&p, "overrides: [not, a, map]\n").unwrap();
        let e = l.load_file(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert_eq!(l.get("t1").rate, 7, "last good overrides kept");
        std::fs::remove_file(&p).unwrap();
        assert!(l.load_file(&p).unwrap_err().to_string().contains("cannot read overrides file"));
        assert_eq!(l.get("t1").rate, 7);
    }

    #[tokio::test]
    async fn reloader_applies_changes_and_stops_with_its_owner() {
        let p = temp_file("reload");
        std::fs::write(&p, "overrides:\n  t1:\n    rate: 1\n").unwrap();
        let l = Arc::new(TenantOverrides::<TestLimits>::default());
        l.load_file(&p).unwrap();
        spawn_reloader(Arc::downgrade(&l), p.clone(), Duration::from_millis(20), "test limits");
        std::fs::write(&p, "overrides:\n  t1:\n    rate: 2\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while l.get("t1").rate != 2 {
            assert!(std::time::Instant::now() < deadline, "reload not seen within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(l);
        std::fs::remove_file(&p).unwrap();
    }
}
