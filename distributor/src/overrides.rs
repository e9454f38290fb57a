//! Runtime per-tenant ingestion-limit overrides: the distributor's [`Limits`]
//! in the shared overrides file (`aion_overrides`: YAML
//! `overrides: { <tenant>: { <Limits fields> } }`, laid over the defaults,
//! re-read every `overrides_period`, last good file kept on error).

use crate::config::Limits;
use crate::error::DistributorError;
use aion_overrides::{OverridesError, TenantLimitSet, TenantOverrides};
use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

pub use aion_overrides::parse_overrides;

/// Default ingestion limits plus the per-tenant overrides in force.
pub type TenantLimits = TenantOverrides<Limits>;

impl TenantLimitSet for Limits {
    fn check(&self, at: &str) -> Result<(), String> {
        self.validate(at).map_err(|e| match e {
            DistributorError::Config(m) => m,
            other => other.to_string(),
        })
    }
}

impl From<OverridesError> for DistributorError {
    fn from(e: OverridesError) -> Self {
        DistributorError::Config(e.to_string())
    }
}

/// Starts the task re-reading the ingestion overrides file `path` every
/// `period` (see [`aion_overrides::spawn_reloader`]).
pub fn spawn_reloader(limits: Weak<TenantLimits>, path: PathBuf, period: Duration) {
    aion_overrides::spawn_reloader(limits, path, period, "runtime overrides");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributor_limits_merge_and_validate() {
        let defaults = Limits { ingestion_rate: 100, ..Limits::default() };
        let o = parse_overrides("overrides:\n  team-a:\n    ingestion_rate: 5\n    past_grace_period: 1h\n", &defaults)
            .unwrap();
        assert_eq!(o["team-a"].ingestion_rate, 5);
        assert_eq!(o["team-a"].past_grace_period, Duration::from_secs(3600));
        assert_eq!(o["team-a"].ingestion_burst_size, defaults.ingestion_burst_size);
        let e = parse_overrides("overrides:\n  t1:\n    max_label_name_length: 0\n", &defaults).unwrap_err();
        let e = DistributorError::from(e).to_string();
        assert!(e.contains("overrides.t1.max_label_name_length must be greater than 0"), "{e}");
    }
}
