//! The client half of aggregation pushdown: one shard's `Pushdown.Aggregate`
//! call, one node's multi-shard call ([`aggregate_node`]), and the decoding
//! of their answers (step arrays or samples, `docs/format/pushdown.md`). The
//! fan-out over shards, leader routing and the merge are the read path's
//! ([`super::FanOutQueryable`]).

use crate::grpc::convert::labels_from_pb;
use aion_model::sample::Sample;
use aion_model::storage::{PartialSeries, PushdownRequest};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::pushdown_client::PushdownClient;
use tonic::transport::Channel;

/// One shard's partial aggregation: its series, and whether the shard's
/// evaluation raised annotations (then the caller must not use pushdown).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShardPartial {
    /// Output series over the shard's data.
    pub series: Vec<PartialSeries>,
    /// The shard's evaluation produced warnings or infos.
    pub annotated: bool,
    /// Label-set hashes of the series the evaluation selected (only under
    /// the request's `max_series`).
    pub series_hashes: Vec<u64>,
    /// Samples the evaluation loaded.
    pub samples: u64,
}

/// One node's answer to a multi-shard aggregation: the merged partial
/// result of the shards it answered, and the shards it did not.
#[derive(Debug, Clone, Default)]
pub struct NodePartial {
    /// Partial result over the answered shards (merged by the node).
    pub partial: ShardPartial,
    /// Shards covered by `partial`.
    pub answered: Vec<u64>,
    /// Shards the node could not answer, with the status it gave.
    pub failed: Vec<(u64, tonic::Status)>,
}

fn request(shard: u64, shards: Vec<u64>, tenant: &TenantId, req: &PushdownRequest) -> pb::AggregateRequest {
    pb::AggregateRequest {
        shard,
        tenant: tenant.to_string(),
        expr: req.expr.clone(),
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        step_ms: req.step_ms,
        lookback_ms: req.lookback_ms,
        shards,
        step_arrays: true,
        max_series: req.max_series,
        max_samples: req.max_samples,
    }
}

fn client(channel: Channel) -> PushdownClient<Channel> {
    PushdownClient::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
}

/// Asks the ingester behind `channel` to evaluate `req` over `shard`.
pub async fn aggregate_shard(
    channel: Channel,
    shard: u64,
    tenant: &TenantId,
    req: &PushdownRequest,
) -> Result<ShardPartial, tonic::Status> {
    let reply = client(channel).aggregate(request(shard, Vec::new(), tenant, req)).await?.into_inner();
    partial_from_pb(req, reply)
}

/// Asks the ingester behind `channel` to evaluate `req` over each of
/// `shards` (which it is believed to lead) and merge the results.
pub async fn aggregate_node(
    channel: Channel,
    shards: Vec<u64>,
    tenant: &TenantId,
    req: &PushdownRequest,
) -> Result<NodePartial, tonic::Status> {
    let asked = shards.clone();
    let mut reply = client(channel).aggregate(request(0, shards, tenant, req)).await?.into_inner();
    let failed: Vec<(u64, tonic::Status)> = std::mem::take(&mut reply.failed)
        .into_iter()
        .map(|f| (f.shard, tonic::Status::new(tonic::Code::from(f.code), f.message)))
        .collect();
    let covered = |s: &u64| reply.answered.contains(s) || failed.iter().any(|(f, _)| f == s);
    if !asked.iter().all(covered) || reply.answered.iter().any(|s| !asked.contains(s)) {
        // A server that ignores `shards` answers for `shard` 0 only.
        return Err(tonic::Status::unimplemented("the ingester does not answer multi-shard aggregations"));
    }
    let answered = std::mem::take(&mut reply.answered);
    let partial = partial_from_pb(req, reply)?;
    Ok(NodePartial { partial, answered, failed })
}

fn partial_from_pb(req: &PushdownRequest, reply: pb::AggregateResponse) -> Result<ShardPartial, tonic::Status> {
    let series = reply
        .series
        .into_iter()
        .map(|s| {
            let points = points_from_pb(req, &s).map_err(tonic::Status::data_loss)?;
            Ok(PartialSeries { labels: labels_from_pb(s.labels), points })
        })
        .collect::<Result<Vec<_>, tonic::Status>>()?;
    Ok(ShardPartial { series, annotated: reply.annotated, series_hashes: reply.series_hashes, samples: reply.samples })
}

/// A partial series' points: from its step arrays when it has them, else its samples.
fn points_from_pb(req: &PushdownRequest, s: &pb::PartialSeries) -> Result<Vec<Sample>, String> {
    if s.values.is_empty() && s.values_le.is_empty() && s.present.is_empty() {
        return Ok(s.samples.iter().map(|p| Sample::new(p.timestamp_ms, p.value)).collect());
    }
    if !s.values.is_empty() && !s.values_le.is_empty() {
        return Err("partial series: both values and values_le set".into());
    }
    if !s.values_le.len().is_multiple_of(8) {
        return Err(format!("partial series: values_le has {} bytes, not a multiple of 8", s.values_le.len()));
    }
    let raw = s.values_le.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    if s.values_le.is_empty() {
        on_grid(req, &s.present, s.values.iter().copied(), s.values.len())
    } else {
        on_grid(req, &s.present, raw, s.values_le.len() / 8)
    }
}

/// True when `present` sets exactly the first `count` steps.
fn first_steps_only(present: &[u8], count: usize) -> bool {
    let (full, rest) = (count / 8, count % 8);
    let tail_ok = match present.get(full) {
        Some(&b) => b == ((1u16 << rest) - 1) as u8,
        None => rest == 0,
    };
    present.len() >= full
        && present[..full].iter().all(|&b| b == 0xff)
        && tail_ok
        && present.get(full + 1..).is_none_or(|r| r.iter().all(|&b| b == 0))
}

/// `values` placed on `req`'s step grid at the steps set in `present`.
fn on_grid(req: &PushdownRequest, present: &[u8], mut values: impl Iterator<Item = f64>, count: usize) -> Result<Vec<Sample>, String> {
    let step = req.step_ms.max(0);
    if first_steps_only(present, count) {
        // A value at every step from the first (the usual case): no bit walk.
        let out: Vec<Sample> = values
            .by_ref()
            .take(count)
            .enumerate()
            .map(|(i, v)| Sample::new(req.start_ms + i as i64 * step, v))
            .collect();
        if out.len() < count {
            return Err("partial series: fewer values than present steps".into());
        }
        if values.next().is_some() {
            return Err("partial series: more values than present steps".into());
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(count);
    for (byte_i, &byte) in present.iter().enumerate() {
        let mut bits = byte;
        while bits != 0 {
            let i = byte_i * 8 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let v = values.next().ok_or("partial series: fewer values than present steps")?;
            out.push(Sample::new(req.start_ms + i as i64 * step, v));
        }
    }
    if values.next().is_some() {
        return Err("partial series: more values than present steps".into());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(step_ms: i64) -> PushdownRequest {
        PushdownRequest { expr: "sum(x)".into(), start_ms: 1_000, end_ms: 20_000, step_ms, lookback_ms: 1, max_series: 0, max_samples: 0 }
    }

    #[test]
    fn step_arrays_decode_onto_the_grid() {
        let s = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![1.0, 2.0, 3.0], present: vec![0b1000_0001, 0b0000_0100], values_le: vec![] };
        let got = points_from_pb(&req(1_000), &s).unwrap();
        assert_eq!(got, vec![Sample::new(1_000, 1.0), Sample::new(8_000, 2.0), Sample::new(11_000, 3.0)]);
        let le: Vec<u8> = [1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![], present: vec![0b1000_0001, 0b0000_0100], values_le: le };
        assert_eq!(points_from_pb(&req(1_000), &raw).unwrap(), got);
        let instant = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![5.0], present: vec![1], values_le: vec![] };
        assert_eq!(points_from_pb(&req(0), &instant).unwrap(), vec![Sample::new(1_000, 5.0)]);
    }

    #[test]
    fn samples_are_used_without_step_arrays_and_bad_arrays_are_rejected() {
        let s = pb::PartialSeries { labels: vec![], samples: vec![pb::Sample { timestamp_ms: 7, value: 1.0 }], values: vec![], present: vec![], values_le: vec![] };
        assert_eq!(points_from_pb(&req(1_000), &s).unwrap(), vec![Sample::new(7, 1.0)]);
        let short = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![1.0], present: vec![0b11], values_le: vec![] };
        assert!(points_from_pb(&req(1_000), &short).is_err());
        let long = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![1.0, 2.0], present: vec![0b1], values_le: vec![] };
        assert!(points_from_pb(&req(1_000), &long).is_err());
        let ragged = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![], present: vec![0b1], values_le: vec![0; 7] };
        assert!(points_from_pb(&req(1_000), &ragged).unwrap_err().contains("multiple of 8"));
        let both = pb::PartialSeries { labels: vec![], samples: vec![], values: vec![1.0], present: vec![0b1], values_le: vec![0; 8] };
        assert!(points_from_pb(&req(1_000), &both).is_err());
    }

    #[test]
    fn a_full_grid_takes_the_fast_path_with_the_same_result_and_checks() {
        for n in [1usize, 7, 8, 9, 16, 19] {
            let values: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
            let mut present = vec![0u8; n.div_ceil(8)];
            for i in 0..n {
                present[i / 8] |= 1 << (i % 8);
            }
            assert!(first_steps_only(&present, n), "{n}");
            let want: Vec<Sample> = values.iter().enumerate().map(|(i, &v)| Sample::new(1_000 + i as i64 * 1_000, v)).collect();
            let s = pb::PartialSeries { labels: vec![], samples: vec![], values: values.clone(), present: present.clone(), values_le: vec![] };
            assert_eq!(points_from_pb(&req(1_000), &s).unwrap(), want, "{n}");
            // One more step present than values: not the fast path, and an error.
            let mut more = present.clone();
            if n % 8 == 0 {
                more.push(1);
            } else {
                more[n / 8] |= 1 << (n % 8);
            }
            assert!(!first_steps_only(&more, n));
            let s = pb::PartialSeries { labels: vec![], samples: vec![], values, present: more, values_le: vec![] };
            assert!(points_from_pb(&req(1_000), &s).is_err(), "{n}");
        }
        assert!(!first_steps_only(&[0xff, 0, 1], 8));
        assert!(first_steps_only(&[0xff, 0, 0], 8));
        assert!(!first_steps_only(&[0xfe], 7));
    }
}
