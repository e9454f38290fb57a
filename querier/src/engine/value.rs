//! Query results: the four PromQL value types plus annotations.

use aion_model::storage::Series;
use aion_model::Labels;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Series labels (the metric name may have been dropped by a function).
    pub labels: Labels,
    /// Evaluation timestamp, milliseconds.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// A PromQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at evaluation time `t`.
    Scalar {
        /// Evaluation timestamp, milliseconds.
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string literal result.
    String {
        /// Evaluation timestamp, milliseconds.
        t: i64,
        /// Value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (instant query of a matrix selector) or any range query's result.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The result of a query with its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warning annotations (`PromQL warning: ...`).
    pub warnings: Vec<String>,
    /// Info annotations (`PromQL info: ...`).
    pub infos: Vec<String>,
    /// Samples the evaluation touched (for `stats`).
    pub total_samples: u64,
}
