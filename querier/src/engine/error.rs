//! Engine errors, each mapping to a Prometheus API `errorType`.

use aion_model::storage::StorageError;
use thiserror::Error;

/// Why a query failed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The query text does not parse (`bad_data`, HTTP 400).
    #[error("{0}")]
    Parse(String),
    /// A problem found while evaluating, e.g. many-to-many matching (`execution`, HTTP 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its timeout (`timeout`, HTTP 503).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The query would hold more samples than allowed (`execution`, HTTP 422).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
    /// The query was cancelled by its caller (`canceled`, HTTP 503).
    #[error("query was canceled in {0}")]
    Canceled(String),
    /// Storage failed (`internal` or `unavailable`).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl EngineError {
    /// The Prometheus API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            EngineError::Parse(_) => "bad_data",
            EngineError::Execution(_) | EngineError::TooManySamples(_) => "execution",
            EngineError::Timeout(_) => "timeout",
            EngineError::Canceled(_) => "canceled",
            EngineError::Storage(StorageError::Unavailable(_)) => "unavailable",
            EngineError::Storage(StorageError::LimitExceeded { .. }) => "execution",
            EngineError::Storage(_) => "internal",
        }
    }
}
