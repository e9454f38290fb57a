//! Distributor configuration: tenancy, request size limits, the default
//! per-tenant [`Limits`] and the runtime overrides file that changes them per
//! tenant without a restart. Byte sizes are plain integers (bytes) for now;
//! durations are humantime strings (`10s`, `10m`). A limit of 0 means
//! "unlimited" / "off" where the field says so.

use crate::error::{DistributorError, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// 10 MiB: default limit on the compressed request body.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 10 << 20;
/// 100 MiB: default limit on the decompressed request body.
pub const DEFAULT_MAX_DECOMPRESSED_BODY_SIZE: usize = 100 << 20;

/// Configuration of the remote-write front door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// When false every request belongs to tenant `anonymous`; when true the
    /// `X-Scope-OrgID` header is required.
    pub multitenancy_enabled: bool,
    /// Largest compressed request body accepted, in bytes; larger gets 413.
    pub max_request_body_size: usize,
    /// Largest decompressed request body accepted, in bytes; larger gets 413.
    /// Guards against small bodies that claim a huge decompressed length.
    pub max_decompressed_body_size: usize,
    /// Default per-tenant limits (a tenant without an override gets these).
    pub limits: Limits,
    /// Runtime overrides file: YAML `overrides: { <tenant>: { <limits fields> } }`.
    /// Fields a tenant does not set keep the defaults of `limits`.
    pub overrides_file: Option<PathBuf>,
    /// How often the overrides file is re-read.
    #[serde(with = "humantime_serde")]
    pub overrides_period: Duration,
    /// A series not pushed for this long stops counting against the series limits.
    #[serde(with = "humantime_serde")]
    pub active_series_idle_timeout: Duration,
    /// HA-pair deduplication (see [`crate::ha_tracker`]).
    pub ha_tracker: crate::ha_tracker::HaTrackerConfig,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            multitenancy_enabled: false,
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            max_decompressed_body_size: DEFAULT_MAX_DECOMPRESSED_BODY_SIZE,
            limits: Limits::default(),
            overrides_file: None,
            overrides_period: Duration::from_secs(10),
            active_series_idle_timeout: Duration::from_secs(20 * 60),
            ha_tracker: Default::default(),
        }
    }
}

/// Per-tenant limits: defaults in [`DistributorConfig::limits`], per-tenant
/// values from the overrides file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Sustained samples per second a tenant may push (token bucket refill rate); 0 = unlimited.
    pub ingestion_rate: u64,
    /// Token bucket size: the most samples accepted at once; a request with
    /// more samples than this is always rejected.
    pub ingestion_burst_size: u64,
    /// Most active series per tenant, counted by this distributor; 0 = unlimited.
    pub max_global_series_per_user: u64,
    /// Most active series per metric name per tenant; 0 = unlimited.
    pub max_global_series_per_metric: u64,
    /// Samples further than this in the future are rejected; 0 = off.
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
    /// Samples older than this are rejected (max sample age); 0 = off.
    #[serde(with = "humantime_serde")]
    pub past_grace_period: Duration,
    /// Most labels (metric name included) one series may have.
    pub max_label_names_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate: 10_000,
            ingestion_burst_size: 200_000,
            max_global_series_per_user: 150_000,
            max_global_series_per_metric: 0,
            creation_grace_period: Duration::from_secs(10 * 60),
            past_grace_period: Duration::ZERO,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
        }
    }
}

impl Limits {
    /// Checks that the limits are usable; `at` names where they come from in messages.
    pub fn validate(&self, at: &str) -> Result<()> {
        for (name, v) in [
            ("max_label_names_per_series", self.max_label_names_per_series),
            ("max_label_name_length", self.max_label_name_length),
            ("max_label_value_length", self.max_label_value_length),
        ] {
            if v == 0 {
                return Err(DistributorError::Config(format!("{at}.{name} must be greater than 0")));
            }
        }
        if self.ingestion_rate > 0 && self.ingestion_burst_size == 0 {
            return Err(DistributorError::Config(format!(
                "{at}.ingestion_burst_size must be greater than 0 when {at}.ingestion_rate is set ({})",
                self.ingestion_rate
            )));
        }
        Ok(())
    }
}

impl DistributorConfig {
    /// Checks that every limit is usable (non-zero, decompressed ≥ compressed).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DistributorError::Config(m));
        if self.max_request_body_size == 0 {
            return bad("max_request_body_size must be greater than 0".into());
        }
        if self.max_decompressed_body_size < self.max_request_body_size {
            return bad(format!(
                "max_decompressed_body_size ({}) must be at least max_request_body_size ({})",
                self.max_decompressed_body_size, self.max_request_body_size
            ));
        }
        if self.overrides_file.is_some() && self.overrides_period.is_zero() {
            return bad("overrides_period must be greater than 0 when overrides_file is set".into());
        }
        self.ha_tracker.validate()?;
        if self.active_series_idle_timeout.is_zero() {
            return bad("active_series_idle_timeout must be greater than 0".into());
        }
        self.limits.validate("limits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_mimirs() {
        let c = DistributorConfig::default();
        assert!(!c.multitenancy_enabled);
        assert_eq!(c.max_request_body_size, 10 * 1024 * 1024);
        assert_eq!(c.limits.max_label_names_per_series, 30);
        assert_eq!(c.limits.max_label_name_length, 1024);
        assert_eq!(c.limits.max_label_value_length, 2048);
        assert_eq!((c.limits.ingestion_rate, c.limits.ingestion_burst_size), (10_000, 200_000));
        assert_eq!((c.limits.max_global_series_per_user, c.limits.max_global_series_per_metric), (150_000, 0));
        assert_eq!(c.limits.creation_grace_period, Duration::from_secs(600));
        assert_eq!(c.limits.past_grace_period, Duration::ZERO);
        assert_eq!(c.overrides_period, Duration::from_secs(10));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = DistributorConfig::default();
        c.limits.max_label_value_length = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_label_value_length"), "{e}");
        let c = DistributorConfig { max_decompressed_body_size: 1, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("max_decompressed_body_size"));
        let mut c = DistributorConfig::default();
        c.limits.ingestion_burst_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("limits.ingestion_burst_size"));
    }

    #[test]
    fn yaml_fills_defaults_and_rejects_unknown_fields() {
        let c: DistributorConfig =
            serde_yaml::from_str(r#"{"multitenancy_enabled": true, "limits": {"max_label_name_length": 10}}"#).unwrap();
        assert!(c.multitenancy_enabled);
        assert_eq!(c.limits.max_label_name_length, 10);
        assert_eq!(c.limits.max_label_value_length, 2048);
        assert!(serde_yaml::from_str::<DistributorConfig>(r#"{"bogus": 1}"#).is_err());
        let c: DistributorConfig = serde_yaml::from_str(
            "overrides_file: /x.yaml\noverrides_period: 1s\nlimits:\n  ingestion_rate: 5\n  past_grace_period: 1h\n",
        )
        .unwrap();
        assert_eq!(c.overrides_file, Some(PathBuf::from("/x.yaml")));
        assert_eq!(c.overrides_period, Duration::from_secs(1));
        assert_eq!((c.limits.ingestion_rate, c.limits.past_grace_period), (5, Duration::from_secs(3600)));
    }
}
