//! A query limit hit on an ingester, as a gRPC status: RESOURCE_EXHAUSTED
//! with metadata naming the limit, its maximum and the value that passed it
//! (`AggregateRequest.max_series` / `max_samples` in `ingester.proto`), so
//! the querier can answer exactly as if it had hit the limit itself.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key naming the limit.
pub const LIMIT_KEY: &str = "aion-limit";
/// Metadata key with the limit's maximum.
pub const LIMIT_MAX_KEY: &str = "aion-limit-max";
/// Metadata key with the value that passed it.
pub const LIMIT_VALUE_KEY: &str = "aion-limit-value";

/// The limits a node reports, by the name the querier's API uses.
pub const KNOWN_LIMITS: [&str; 2] = ["max_series_per_query", "max_samples_per_query"];

/// A query limit hit on an ingester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitHit {
    /// One of [`KNOWN_LIMITS`].
    pub limit: &'static str,
    /// The limit's maximum.
    pub max: u64,
    /// The value that passed it (`max + 1` where the node stops counting
    /// at the limit).
    pub value: u64,
}

impl LimitHit {
    /// As a RESOURCE_EXHAUSTED status whose message starts with `context`.
    pub fn to_status(self, context: &str) -> Status {
        let mut s = Status::resource_exhausted(format!(
            "{context}: query limit {} exceeded ({} > {})",
            self.limit, self.value, self.max
        ));
        let md = s.metadata_mut();
        md.insert(LIMIT_KEY, MetadataValue::from_static(self.limit));
        md.insert(LIMIT_MAX_KEY, MetadataValue::from(self.max));
        md.insert(LIMIT_VALUE_KEY, MetadataValue::from(self.value));
        s
    }

    /// The limit a status reports, if it is one from [`Self::to_status`].
    pub fn from_status(s: &Status) -> Option<Self> {
        if s.code() != Code::ResourceExhausted {
            return None;
        }
        let md = s.metadata();
        let name = md.get(LIMIT_KEY)?.to_str().ok()?;
        let limit = KNOWN_LIMITS.into_iter().find(|l| *l == name)?;
        let num = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        Some(Self { limit, max: num(LIMIT_MAX_KEY)?, value: num(LIMIT_VALUE_KEY)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_survives_the_status_and_nothing_else_reads_as_one() {
        let hit = LimitHit { limit: "max_samples_per_query", max: 10, value: 12 };
        let s = hit.to_status("shards [1, 2]");
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("max_samples_per_query") && s.message().starts_with("shards [1, 2]"), "{}", s.message());
        assert_eq!(LimitHit::from_status(&s), Some(hit));
        assert_eq!(LimitHit::from_status(&Status::resource_exhausted("message too large")), None);
        let mut unknown = hit.to_status("x");
        unknown.metadata_mut().insert(LIMIT_KEY, MetadataValue::from_static("max_fun"));
        assert_eq!(LimitHit::from_status(&unknown), None);
        let mut wrong_code = Status::invalid_argument("x");
        *wrong_code.metadata_mut() = hit.to_status("x").metadata().clone();
        assert_eq!(LimitHit::from_status(&wrong_code), None);
    }
}
