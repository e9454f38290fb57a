//! Distributor configuration: tenancy, request size limits and per-series
//! validation limits. Byte sizes are plain integers (bytes) for now.

use crate::error::{DistributorError, Result};
use serde::{Deserialize, Serialize};

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
    /// Per-series validation limits.
    pub limits: Limits,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            multitenancy_enabled: false,
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            max_decompressed_body_size: DEFAULT_MAX_DECOMPRESSED_BODY_SIZE,
            limits: Limits::default(),
        }
    }
}

/// Per-series validation limits (the same for every tenant for now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most labels (metric name included) one series may have.
    pub max_label_names_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_label_names_per_series: 30, max_label_name_length: 1024, max_label_value_length: 2048 }
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
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_label_names_per_series", l.max_label_names_per_series),
            ("limits.max_label_name_length", l.max_label_name_length),
            ("limits.max_label_value_length", l.max_label_value_length),
        ] {
            if v == 0 {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        Ok(())
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
    }

    #[test]
    fn yaml_fills_defaults_and_rejects_unknown_fields() {
        let c: DistributorConfig =
            serde_yaml::from_str(r#"{"multitenancy_enabled": true, "limits": {"max_label_name_length": 10}}"#).unwrap();
        assert!(c.multitenancy_enabled);
        assert_eq!(c.limits.max_label_name_length, 10);
        assert_eq!(c.limits.max_label_value_length, 2048);
        assert!(serde_yaml::from_str::<DistributorConfig>(r#"{"bogus": 1}"#).is_err());
    }
}
