//! Runtime per-tenant query-limit overrides: [`QueryLimits`] in the shared
//! overrides file (`aion_overrides`: YAML
//! `overrides: { <tenant>: { <QueryLimits fields> } }`, laid over the
//! defaults, re-read every `overrides_period`, last good file kept on error).

use super::{LimitsError, QueryLimits};
use aion_overrides::{OverridesError, TenantLimitSet, TenantOverrides};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Default query limits plus the per-tenant overrides in force.
pub type TenantQueryLimits = TenantOverrides<QueryLimits>;

impl TenantLimitSet for QueryLimits {
    fn check(&self, at: &str) -> Result<(), String> {
        self.validate(at).map_err(|e| match e {
            LimitsError::Invalid(m) => m,
            other => other.to_string(),
        })
    }
}

impl From<OverridesError> for LimitsError {
    fn from(e: OverridesError) -> Self {
        match e {
            OverridesError::Read { path, reason } => LimitsError::Read { path, reason },
            OverridesError::Invalid(m) => LimitsError::Invalid(m),
        }
    }
}

/// Parses query-limit overrides YAML and merges each tenant's fields over `defaults`.
pub fn parse_overrides(text: &str, defaults: &QueryLimits) -> Result<HashMap<String, Arc<QueryLimits>>, LimitsError> {
    Ok(aion_overrides::parse_overrides(text, defaults)?)
}

/// Starts the task re-reading the query overrides file `path` every
/// `period` (see [`aion_overrides::spawn_reloader`]).
pub fn spawn_reloader(limits: Weak<TenantQueryLimits>, path: PathBuf, period: Duration) {
    aion_overrides::spawn_reloader(limits, path, period, "query limit overrides");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_limits_merge_and_name_errors() {
        let defaults = QueryLimits { max_series_per_query: 100, ..QueryLimits::default() };
        let o = parse_overrides("overrides:\n  team-a:\n    max_series_per_query: 5\n    max_query_lookback: 1h\n", &defaults)
            .unwrap();
        assert_eq!(o["team-a"].max_series_per_query, 5);
        assert_eq!(o["team-a"].max_query_lookback, Duration::from_secs(3600));
        assert_eq!(o["team-a"].query_timeout, defaults.query_timeout);
        let e = parse_overrides("overrides:\n  t1:\n    max_serie_per_query: 5\n", &defaults).unwrap_err();
        assert!(matches!(e, LimitsError::Invalid(ref m) if m.contains("max_serie_per_query")), "{e}");
        let l = TenantQueryLimits::default();
        let e = LimitsError::from(l.load_file(std::path::Path::new("/nonexistent/aion-o.yaml")).unwrap_err());
        assert!(e.to_string().contains("cannot read query overrides file"), "{e}");
    }
}
