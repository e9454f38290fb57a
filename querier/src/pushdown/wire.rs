//! The wire form of a partial aggregation's series (`pb::PartialSeries`):
//! on the evaluation's step grid as `values` plus a `present` bitmap (no
//! timestamps), or as plain `samples` when a point is off the grid or the
//! caller did not ask for step arrays. The layout is in
//! `docs/format/pushdown.md`; the querier side decodes it in
//! `ingester::client::pushdown`.

use aion_model::storage::{PartialSeries, PushdownRequest};
use aion_model::{Labels, Sample};
use aion_proto::ingester as pb;

/// Step index of point `t` on `req`'s grid, or `None` if it is off it.
#[inline]
fn grid_index(req: &PushdownRequest, t: i64) -> Option<usize> {
    let d = t.checked_sub(req.start_ms)?;
    if req.step_ms <= 0 {
        (d == 0).then_some(0)
    } else if d % req.step_ms == 0 && t <= req.end_ms {
        usize::try_from(d / req.step_ms).ok()
    } else {
        None
    }
}

/// `points` as a `present` bitmap and raw little-endian values, in one
/// pass; `None` if a point is off `req`'s grid or steps do not increase.
fn step_arrays_of(req: &PushdownRequest, points: &[Sample]) -> Option<(Vec<u8>, Vec<u8>)> {
    let last = grid_index(req, points.last()?.t)?;
    let mut present = vec![0u8; last / 8 + 1];
    let mut values_le = Vec::with_capacity(points.len() * 8);
    let mut prev: Option<usize> = None;
    for p in points {
        let i = grid_index(req, p.t)?;
        if prev.is_some_and(|q| q >= i) || i > last {
            return None;
        }
        prev = Some(i);
        present[i / 8] |= 1 << (i % 8);
        values_le.extend_from_slice(&p.v.to_le_bytes());
    }
    Some((present, values_le))
}

/// `s` for the wire: step arrays when `step_arrays` and every point is on
/// `req`'s grid, samples otherwise.
pub fn series_to_pb(req: &PushdownRequest, s: &PartialSeries, step_arrays: bool) -> pb::PartialSeries {
    let labels = labels_to_pb(&s.labels);
    if step_arrays {
        if s.points.is_empty() {
            return pb::PartialSeries { labels, samples: Vec::new(), values: Vec::new(), present: Vec::new(), values_le: Vec::new() };
        }
        if let Some((present, values_le)) = step_arrays_of(req, &s.points) {
            return pb::PartialSeries { labels, samples: Vec::new(), values: Vec::new(), present, values_le };
        }
    }
    let samples = s.points.iter().map(|p| pb::Sample { timestamp_ms: p.t, value: p.v }).collect();
    pb::PartialSeries { labels, samples, values: Vec::new(), present: Vec::new(), values_le: Vec::new() }
}

fn labels_to_pb(l: &Labels) -> Vec<pb::Label> {
    l.iter().map(|l| pb::Label { name: l.name.to_string(), value: l.value.to_string() }).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(step_ms: i64) -> PushdownRequest {
        PushdownRequest { expr: "sum(x)".into(), start_ms: 1_000, end_ms: 10_000, step_ms, lookback_ms: 300_000, max_series: 0, max_samples: 0 }
    }

    fn series(points: &[(i64, f64)]) -> PartialSeries {
        PartialSeries { labels: Labels::from_pairs([("a", "b")]), points: points.iter().map(|&(t, v)| Sample::new(t, v)).collect() }
    }

    #[test]
    fn on_grid_points_become_values_and_a_bitmap() {
        let s = series(&[(1_000, 1.5), (3_000, f64::NAN), (10_000, 4.0)]);
        let pb = series_to_pb(&req(1_000), &s, true);
        assert!(pb.samples.is_empty());
        assert_eq!(pb.present, vec![0b0000_0101, 0b0000_0010], "steps 0, 2 and 9");
        let values: Vec<f64> = pb.values_le.chunks(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
        assert!(pb.values.is_empty());
        assert_eq!(values.len(), 3);
        assert_eq!(values[0], 1.5);
        assert!(values[1].is_nan());
        // Instant evaluation: step 0 is the only grid point.
        let pb = series_to_pb(&req(0), &series(&[(1_000, 2.0)]), true);
        assert_eq!((pb.values_le, pb.present), (2.0f64.to_le_bytes().to_vec(), vec![1]));
    }

    #[test]
    fn off_grid_points_or_no_step_arrays_fall_back_to_samples() {
        for (s, step_arrays) in [
            (series(&[(1_000, 1.0), (1_500, 2.0)]), true),
            (series(&[(500, 1.0)]), true),
            (series(&[(11_000, 1.0)]), true),
            (series(&[(2_000, 1.0), (2_000, 2.0)]), true),
            (series(&[(1_000, 1.0)]), false),
        ] {
            let pb = series_to_pb(&req(1_000), &s, step_arrays);
            assert!(pb.values.is_empty() && pb.values_le.is_empty() && pb.present.is_empty());
            assert_eq!(pb.samples.len(), s.points.len());
        }
    }
}
