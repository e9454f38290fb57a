//! Errors raised by function kernels. Messages are Prometheus's own, because
//! the conformance scripts and API clients match on them.

use thiserror::Error;

/// Why a function call cannot be evaluated.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FunctionError {
    /// `label_replace` got a regular expression that does not compile.
    #[error("invalid regular expression in label_replace(): {regex}")]
    InvalidRegex {
        /// The regex text as the user wrote it (without our anchoring).
        regex: String,
    },
    /// A destination label name is not a valid label name.
    #[error("invalid destination label name in {function}(): {name}")]
    InvalidDestinationLabel {
        /// `label_replace` or `label_join`.
        function: &'static str,
        /// The offending name.
        name: String,
    },
    /// A `label_join` source label name is not a valid label name.
    #[error("invalid source label name in label_join(): {name}")]
    InvalidSourceLabel {
        /// The offending name.
        name: String,
    },
    /// A function produced two series with the same label set at one step.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    /// `double_exponential_smoothing` smoothing factor outside `(0, 1)`.
    #[error("invalid smoothing factor. Expected: 0 < sf < 1, got: {}", go_fixed6(*.value))]
    InvalidSmoothingFactor {
        /// The factor given.
        value: f64,
    },
    /// `double_exponential_smoothing` trend factor outside `(0, 1)`.
    #[error("invalid trend factor. Expected: 0 < tf < 1, got: {}", go_fixed6(*.value))]
    InvalidTrendFactor {
        /// The factor given.
        value: f64,
    },
}

/// Formats like Go's `%f` (six decimals; `NaN`, `+Inf`, `-Inf` spelled as Go does).
fn go_fixed6(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        format!("{v:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_prometheus() {
        let e = FunctionError::InvalidDestinationLabel { function: "label_replace", name: String::new() };
        assert_eq!(e.to_string(), "invalid destination label name in label_replace(): ");
        let e = FunctionError::InvalidSmoothingFactor { value: 1.0 };
        assert_eq!(e.to_string(), "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000");
        let e = FunctionError::InvalidTrendFactor { value: f64::INFINITY };
        assert_eq!(e.to_string(), "invalid trend factor. Expected: 0 < tf < 1, got: +Inf");
        assert_eq!(
            FunctionError::DuplicateLabelset.to_string(),
            "vector cannot contain metrics with the same labelset"
        );
    }
}
