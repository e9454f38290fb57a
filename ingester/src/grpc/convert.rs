//! Conversions between the model's types and the `aion.ingester` protobuf
//! messages, and the NotLeader metadata convention of read errors.

use crate::raft::NodeId;
use aion_model::chunk::XorChunk;
use aion_model::labels::Labels;
use aion_model::matcher::{MatchOp, Matcher};
use aion_model::sample::Sample;
use aion_model::chunk::ChunkSeries;
use aion_model::storage::{SelectHints, SelectedSeries, Series, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;

/// One shard's part of a `PushEncodedMulti` answer: the `PushResponse` its
/// own `PushEncoded` returned, or that call's gRPC status code and message.
pub(crate) fn shard_push_answer(shard: u64, result: Result<tonic::Response<pb::PushResponse>, tonic::Status>) -> pb::ShardPushAnswer {
    match result {
        Ok(resp) => pb::ShardPushAnswer { shard, response: Some(resp.into_inner()), ..Default::default() },
        Err(st) => pb::ShardPushAnswer {
            shard,
            response: None,
            status_code: st.code() as i32,
            status_message: st.message().to_string(),
        },
    }
}

/// Metadata key naming the leader's node id on a read refused by a follower.
pub const LEADER_ID_KEY: &str = "aion-leader-id";
/// Metadata key naming the leader's gRPC address on a read refused by a follower.
pub const LEADER_ADDR_KEY: &str = "aion-leader-addr";
/// Samples per XOR chunk in a Select response.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// A request field that does not convert to the model.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The tenant id is not valid.
    #[error("invalid tenant {tenant:?}: {reason}")]
    Tenant {
        /// The tenant as sent.
        tenant: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A label matcher is not valid (bad regex, unknown type).
    #[error("invalid matcher {name}{op}{value:?}: {reason}")]
    Matcher {
        /// Label name.
        name: String,
        /// Operator code as sent.
        op: i32,
        /// Value as sent.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A start after an end.
    #[error("invalid time range: start {start} > end {end}")]
    TimeRange {
        /// Start as sent.
        start: i64,
        /// End as sent.
        end: i64,
    },
    /// A chunk did not decode.
    #[error("corrupt chunk [{min_t}, {max_t}] of series {labels}: {reason}")]
    Chunk {
        /// The series.
        labels: String,
        /// The chunk's first timestamp.
        min_t: i64,
        /// The chunk's last timestamp.
        max_t: i64,
        /// The decoder's message.
        reason: String,
    },
}

/// Parses a tenant id.
pub fn tenant(s: &str) -> Result<TenantId, ConvertError> {
    TenantId::new(s).map_err(|e| ConvertError::Tenant {
        tenant: s.to_string(),
        reason: e.to_string(),
    })
}

/// Protobuf labels to model labels (sorted; empty values dropped).
pub fn labels_from_pb(labels: Vec<pb::Label>) -> Labels {
    Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
}

/// Model labels to protobuf labels.
pub fn labels_to_pb(labels: &Labels) -> Vec<pb::Label> {
    labels
        .iter()
        .map(|l| pb::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// A Push request's payload as a model write batch.
pub fn write_batch_from_pb(
    tenant_id: &str,
    series: Vec<pb::SeriesSamples>,
) -> Result<WriteBatch, ConvertError> {
    let series = series
        .into_iter()
        .map(|s| SeriesSamples {
            labels: labels_from_pb(s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| Sample::new(x.timestamp_ms, x.value))
                .collect(),
        })
        .collect();
    Ok(WriteBatch {
        tenant: tenant(tenant_id)?,
        series,
    })
}

/// A model write batch as Push series.
pub fn write_batch_to_pb(batch: &WriteBatch) -> Vec<pb::SeriesSamples> {
    batch
        .series
        .iter()
        .map(|s| pb::SeriesSamples {
            labels: labels_to_pb(&s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| pb::Sample {
                    timestamp_ms: x.t,
                    value: x.v,
                })
                .collect(),
        })
        .collect()
}

/// Protobuf matchers to model matchers (regexes compiled).
pub fn matchers_from_pb(ms: &[pb::LabelMatcher]) -> Result<Vec<Matcher>, ConvertError> {
    ms.iter()
        .map(|m| {
            let err = |reason: String| ConvertError::Matcher {
                name: m.name.clone(),
                op: m.r#type,
                value: m.value.clone(),
                reason,
            };
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::Regex,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(e) => return Err(err(e.to_string())),
            };
            Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| err(e.to_string()))
        })
        .collect()
}

/// A model matcher as a protobuf matcher.
pub fn matcher_to_pb(m: &Matcher) -> pb::LabelMatcher {
    let t = match m.op {
        MatchOp::Equal => pb::label_matcher::Type::Eq,
        MatchOp::NotEqual => pb::label_matcher::Type::Neq,
        MatchOp::Regex => pb::label_matcher::Type::Re,
        MatchOp::NotRegex => pb::label_matcher::Type::Nre,
    };
    pb::LabelMatcher {
        r#type: t as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// Validates an inclusive time range.
pub fn hints(start: i64, end: i64) -> Result<SelectHints, ConvertError> {
    if start > end {
        return Err(ConvertError::TimeRange { start, end });
    }
    Ok(SelectHints { start, end })
}

/// A series as XOR chunks of at most [`SAMPLES_PER_CHUNK`] samples.
pub fn series_to_pb(s: &Series) -> pb::ChunkedSeries {
    let chunks = s
        .samples
        .chunks(SAMPLES_PER_CHUNK)
        .filter_map(|run| {
            let (first, last) = (run.first()?, run.last()?);
            let mut c = XorChunk::new();
            for x in run {
                c.append(x.t, x.v);
            }
            Some(pb::Chunk {
                min_time_ms: first.t,
                max_time_ms: last.t,
                data: c.into_bytes(),
            })
        })
        .collect();
    pb::ChunkedSeries {
        labels: labels_to_pb(&s.labels),
        chunks,
    }
}

/// Decodes a chunked series back into samples.
pub fn series_from_pb(s: pb::ChunkedSeries) -> Result<Series, ConvertError> {
    let labels = labels_from_pb(s.labels);
    let mut samples = Vec::new();
    for c in &s.chunks {
        let decoded = XorChunk::decode_all(&c.data).map_err(|e| ConvertError::Chunk {
            labels: labels.to_string(),
            min_t: c.min_time_ms,
            max_t: c.max_time_ms,
            reason: e.to_string(),
        })?;
        samples.extend(decoded);
    }
    Ok(Series { labels, samples })
}

/// A selected series as a Select answer. A still-encoded series goes out
/// as its stored chunks when `unclipped` (the caller asked for
/// `SelectRequest.unclipped_chunks` and clips to `hints` itself; the
/// chunks' min/max times are then `hints`), else it is decoded and sent as
/// chunks of its in-range samples, like [`series_to_pb`].
pub fn selected_to_pb(s: &SelectedSeries, hints: &SelectHints, unclipped: bool) -> Result<pb::ChunkedSeries, ConvertError> {
    match s {
        SelectedSeries::Decoded(series) => Ok(series_to_pb(series)),
        SelectedSeries::Encoded(c) if unclipped => Ok(pb::ChunkedSeries {
            labels: labels_to_pb(&c.labels),
            chunks: c
                .chunks()
                .map(|data| pb::Chunk { min_time_ms: hints.start, max_time_ms: hints.end, data: data.to_vec() })
                .collect(),
        }),
        SelectedSeries::Encoded(c) => {
            let samples = c.decode().map_err(|e| ConvertError::Chunk {
                labels: c.labels.to_string(),
                min_t: hints.start,
                max_t: hints.end,
                reason: e.to_string(),
            })?;
            Ok(series_to_pb(&Series { labels: c.labels.clone(), samples }))
        }
    }
}

/// A Select answer's series, left encoded for the reader to decode (and
/// clip to `hints`) where it consumes it. `None` for a series without
/// chunks (no sample in range: omitted, as `select` omits it).
pub fn selected_from_pb(s: pb::ChunkedSeries, hints: &SelectHints) -> Option<SelectedSeries> {
    if s.chunks.is_empty() {
        return None;
    }
    let mut c = ChunkSeries::new(labels_from_pb(s.labels), hints.start, hints.end);
    for chunk in &s.chunks {
        c.push_chunk(&chunk.data);
    }
    Some(SelectedSeries::Encoded(c))
}

/// The leader named by a read's `FAILED_PRECONDITION` status, if any.
pub fn not_leader_from_status(status: &tonic::Status) -> Option<(NodeId, String)> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    let md = status.metadata();
    let id = md.get(LEADER_ID_KEY)?.to_str().ok()?.parse().ok()?;
    let addr = md.get(LEADER_ADDR_KEY)?.to_str().ok()?.to_string();
    Some((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_round_trip_through_chunks() {
        let s = Series {
            labels: Labels::from_pairs([("__name__", "m"), ("a", "b")]),
            samples: (0..300)
                .map(|i| Sample::new(i * 15_000, i as f64 * 0.5))
                .collect(),
        };
        let pb = series_to_pb(&s);
        assert_eq!(pb.chunks.len(), 3);
        assert_eq!(
            (pb.chunks[1].min_time_ms, pb.chunks[1].max_time_ms),
            (120 * 15_000, 239 * 15_000)
        );
        assert_eq!(series_from_pb(pb).unwrap(), s);
    }

    #[test]
    fn bad_matchers_tenants_and_ranges_are_rejected() {
        let m = pb::LabelMatcher {
            r#type: 2,
            name: "a".into(),
            value: "(".into(),
        };
        assert!(matches!(
            matchers_from_pb(&[m]),
            Err(ConvertError::Matcher { .. })
        ));
        let m = pb::LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "x".into(),
        };
        assert!(matchers_from_pb(&[m]).is_err());
        assert!(write_batch_from_pb("", vec![]).is_err());
        assert!(hints(5, 4).is_err());
        let eq = Matcher::equal("job", "x");
        assert_eq!(matchers_from_pb(&[matcher_to_pb(&eq)]).unwrap(), vec![eq]);
    }
}
