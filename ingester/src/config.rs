//! TSDB configuration.

use crate::error::{IngesterError, Result};
use crate::keys::BLOCK_MS;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Configuration of one TSDB (one data directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbConfig {
    /// How long samples are kept, measured back from the newest sample stored.
    /// Older data is not read, and is deleted once its whole chunk key span
    /// (a tenth of the retention a directory was created with, 2 h to a
    /// day) has expired. Default `15d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the background thread persists head chunks, purges the WAL and
    /// applies retention. `0s` disables the thread (call [`crate::Tsdb::flush`]
    /// yourself). Default `1m`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Samples per chunk before it is cut (chunks are also cut at 2 h block
    /// boundaries). Default 120.
    pub max_samples_per_chunk: usize,
    /// fsync each WAL write before acknowledging. Default `true`. With `false`
    /// acknowledged writes survive a process crash but not a power loss.
    pub wal_sync: bool,
    /// Memory for RocksDB memtables, all column families together (bytes);
    /// when it fills, memtables are flushed to disk. Bounds the RSS that
    /// recent writes (WAL records, new series and postings) hold. Default 32 MiB.
    pub memtable_budget_bytes: usize,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            checkpoint_interval: Duration::from_secs(60),
            max_samples_per_chunk: 120,
            wal_sync: true,
            memtable_budget_bytes: 32 << 20,
        }
    }
}

impl TsdbConfig {
    /// Checks every value is in range.
    pub fn validate(&self) -> Result<()> {
        let block = Duration::from_millis(BLOCK_MS as u64);
        if self.retention < block {
            return Err(IngesterError::InvalidConfig(format!(
                "retention {} is shorter than one block ({})",
                humantime::format_duration(self.retention),
                humantime::format_duration(block)
            )));
        }
        if self.retention.as_millis() > i64::MAX as u128 {
            return Err(IngesterError::InvalidConfig(format!(
                "retention {} is too large",
                humantime::format_duration(self.retention)
            )));
        }
        if self.memtable_budget_bytes < 1 << 20 {
            return Err(IngesterError::InvalidConfig(format!(
                "memtable_budget_bytes {} is below the minimum of 1 MiB",
                self.memtable_budget_bytes
            )));
        }
        if !(1..=u16::MAX as usize).contains(&self.max_samples_per_chunk) {
            return Err(IngesterError::InvalidConfig(format!(
                "max_samples_per_chunk {} is outside 1..={}",
                self.max_samples_per_chunk,
                u16::MAX
            )));
        }
        Ok(())
    }

    /// Retention in milliseconds.
    pub(crate) fn retention_ms(&self) -> i64 {
        i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        TsdbConfig::default().validate().unwrap();
        let c = TsdbConfig {
            retention: Duration::from_secs(60),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retention 1m"));
        let c = TsdbConfig {
            max_samples_per_chunk: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_samples_per_chunk 0"));
        let c = TsdbConfig {
            memtable_budget_bytes: 1000,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("memtable_budget_bytes 1000"));
    }

    #[test]
    fn parses_humantime_yaml_and_rejects_unknown_fields() {
        let c: TsdbConfig =
            serde_yaml::from_str("retention: 30d\ncheckpoint_interval: 30s\n").unwrap();
        assert_eq!(c.retention, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.checkpoint_interval, Duration::from_secs(30));
        assert_eq!(c.max_samples_per_chunk, 120);
        assert!(serde_yaml::from_str::<TsdbConfig>("retension: 1d\n").is_err());
    }
}
