//! Errors of the distributor and their one mapping to an HTTP response.
//!
//! Every variant becomes a status a remote-write client can act on: 4xx means
//! "do not retry this request" (Prometheus drops it), 429 and 5xx mean "retry
//! later". The body is plain text giving the precise reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DistributorError>;

/// Everything that can go wrong between receiving a remote-write request and
/// appending it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DistributorError {
    /// Multi-tenancy is on and the request has no `X-Scope-OrgID` header.
    #[error("no org id: multi-tenancy is enabled and the request has no X-Scope-OrgID header")]
    MissingTenant,
    /// The `X-Scope-OrgID` header is not a valid tenant id.
    #[error("{0}")]
    InvalidTenant(String),
    /// The compressed body (or its decompressed form) is larger than allowed.
    #[error("request body too large: {what} {} the limit of {limit} bytes", size_phrase(*size))]
    BodyTooLarge {
        /// Which size was over: `compressed body` or `decompressed body`.
        what: &'static str,
        /// The size, when known (declared by `Content-Length` or the snappy header).
        size: Option<u64>,
        /// The configured limit.
        limit: u64,
    },
    /// The request declares a content type or encoding this endpoint does not
    /// speak (an unknown `proto=` message name, or a compression other than snappy).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body could not be read from the connection.
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    /// The body is not a valid snappy block.
    #[error("cannot decompress request body as a snappy block: {0}")]
    Snappy(String),
    /// The decompressed body is not a valid `WriteRequest`.
    #[error("cannot decode request body as a protobuf WriteRequest: {0}")]
    Protobuf(String),
    /// A series failed validation; `message` names the series and the rule.
    #[error("{message}")]
    InvalidSeries {
        /// Short reason, as used in the `reason` label of discard metrics.
        reason: &'static str,
        /// The full message, naming the series.
        message: String,
    },
    /// The store rejected samples (out of order, duplicate timestamp).
    #[error("{message}")]
    SamplesRejected {
        /// How many samples of the request were rejected.
        count: usize,
        /// The message for the first rejected sample, naming series and timestamp.
        message: String,
    },
    /// The tenant's ingestion rate limit (token bucket) has no room for the request.
    #[error(
        "ingestion rate limit ({limit}) exceeded while adding {samples} samples for tenant {tenant} \
         (ingestion_rate {limit} samples/s, ingestion_burst_size {burst})"
    )]
    RateLimited {
        /// The tenant over its limit.
        tenant: String,
        /// The tenant's `ingestion_rate`, samples/s.
        limit: u64,
        /// The tenant's `ingestion_burst_size`.
        burst: u64,
        /// Samples in the rejected request.
        samples: usize,
    },
    /// A per-tenant limit (series count, sample age) rejected data; `message`
    /// names the limit, its value, the tenant and the series.
    #[error("{message}")]
    LimitExceeded {
        /// Short reason, as used in the `reason` label of discard metrics.
        reason: &'static str,
        /// The full message.
        message: String,
    },
    /// The request came from a non-elected HA replica and was dropped
    /// (answered 202, as Cortex does: the sender must not retry).
    #[error("{0}")]
    Deduplicated(String),
    /// The store cannot serve now; the client should retry.
    #[error("storage unavailable, retry later: {0}")]
    Unavailable(String),
    /// The store failed (I/O, corruption) or an internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The configuration is invalid (never returned to a client).
    #[error("invalid distributor config: {0}")]
    Config(String),
}

/// "is N bytes, over" when the size is known, else "exceeds".
fn size_phrase(size: Option<u64>) -> String {
    match size {
        Some(n) => format!("is {n} bytes, over"),
        None => "exceeds".to_string(),
    }
}

impl DistributorError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use DistributorError::*;
        match self {
            MissingTenant => StatusCode::UNAUTHORIZED,
            InvalidTenant(_) | BodyRead(_) | Snappy(_) | Protobuf(_) | InvalidSeries { .. } | SamplesRejected { .. }
            | LimitExceeded { .. } => {
                StatusCode::BAD_REQUEST
            }
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Deduplicated(_) => StatusCode::ACCEPTED,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) | Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for DistributorError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = format!("{self}\n");
        (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

impl From<aion_model::storage::StorageError> for DistributorError {
    fn from(e: aion_model::storage::StorageError) -> Self {
        use aion_model::storage::StorageError as S;
        match e {
            S::Unavailable(m) => DistributorError::Unavailable(m),
            other => DistributorError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::storage::StorageError;

    #[test]
    fn statuses_match_what_clients_act_on() {
        assert_eq!(DistributorError::MissingTenant.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(DistributorError::Snappy("x".into()).status(), StatusCode::BAD_REQUEST);
        let big = DistributorError::BodyTooLarge { what: "compressed body", size: Some(11), limit: 10 };
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.to_string(), "request body too large: compressed body is 11 bytes, over the limit of 10 bytes");
        let rl = DistributorError::RateLimited { tenant: "team-a".into(), limit: 10000, burst: 20000, samples: 2000 };
        assert_eq!(rl.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            rl.to_string().starts_with("ingestion rate limit (10000) exceeded while adding 2000 samples for tenant team-a"),
            "{rl}"
        );
        let le = DistributorError::LimitExceeded { reason: "r", message: "m".into() };
        assert_eq!(le.status(), StatusCode::BAD_REQUEST);
        let unavail: DistributorError = StorageError::Unavailable("down".into()).into();
        assert_eq!(unavail.status(), StatusCode::SERVICE_UNAVAILABLE);
        let io: DistributorError = StorageError::Io("disk".into()).into();
        assert_eq!(io.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(io.to_string().contains("disk"));
    }
}
