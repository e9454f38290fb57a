//! Errors of the ingester's TSDB.

use aion_model::storage::StorageError;
use thiserror::Error;

/// Everything that can go wrong opening, writing or reading the TSDB.
#[derive(Debug, Error)]
pub enum IngesterError {
    /// A RocksDB call failed.
    #[error("RocksDB error while {op}: {source}")]
    RocksDb {
        /// What the TSDB was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: rocksdb::Error,
    },
    /// The data directory could not be created or opened (missing
    /// permissions, or another process holds its lock).
    #[error("cannot open the TSDB directory {dir}: {reason}")]
    Open {
        /// The data directory.
        dir: String,
        /// What failed.
        reason: String,
    },
    /// Persisted bytes that do not decode.
    #[error("corrupt {what}: {detail}")]
    Corruption {
        /// Which kind of record (e.g. "WAL record 17", "series 42").
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A configuration value out of range.
    #[error("invalid TSDB config: {0}")]
    InvalidConfig(String),
    /// The data directory was written by an incompatible format version.
    #[error(
        "data directory {dir} has TSDB format version {found}, this build reads versions 1 to {expected}"
    )]
    FormatVersion {
        /// The data directory.
        dir: String,
        /// Version found on disk.
        found: u8,
        /// Version this build understands.
        expected: u8,
    },
    /// An earlier write failed half-way; the TSDB refuses writes until restarted
    /// (restart replays the WAL and repairs the state).
    #[error("TSDB is read-only after an earlier write failure: {0}")]
    Failed(String),
    /// The background checkpoint thread could not be started.
    #[error("failed to start the TSDB background thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl IngesterError {
    /// Wraps a RocksDB error with what was being done.
    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> IngesterError {
        move |source| IngesterError::RocksDb { op, source }
    }

    /// A corruption error for record `what`.
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> IngesterError {
        IngesterError::Corruption {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl From<IngesterError> for StorageError {
    fn from(e: IngesterError) -> Self {
        match e {
            IngesterError::RocksDb { .. } => StorageError::Io(e.to_string()),
            IngesterError::Corruption { .. } | IngesterError::FormatVersion { .. } => {
                StorageError::Corruption(e.to_string())
            }
            IngesterError::InvalidConfig(_)
            | IngesterError::Open { .. }
            | IngesterError::Failed(_)
            | IngesterError::Thread(_) => StorageError::Unavailable(e.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, IngesterError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_storage_error_kinds() {
        let e: StorageError = IngesterError::corrupt("WAL record 3", "bad checksum").into();
        assert_eq!(
            e,
            StorageError::Corruption("corrupt WAL record 3: bad checksum".into())
        );
        let e: StorageError = IngesterError::Failed("x".into()).into();
        assert!(matches!(e, StorageError::Unavailable(_)));
    }
}
