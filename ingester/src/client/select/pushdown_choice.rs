//! Whether pushing an aggregation down pays, learned per query shape.
//!
//! A pushed-down aggregation moves each node's partial result — one value
//! per group and step — instead of its series' chunks. That wins by far when
//! many series fold into few groups (`sum by (job)`, a quantile's buckets),
//! but loses when groups are nearly as many as series (`topk(5, sum by
//! (instance) (…))` over a few series per instance): every node then sends,
//! and the querier decodes and merges, more values than the chunks hold
//! samples, and the evaluation was no cheaper on the nodes than here.
//!
//! [`PushdownChoices`] remembers, per tenant, expression and step, the last
//! pushed-down answer's partial points per sample the nodes loaded. At
//! [`DECLINE_RATIO`] or more the same aggregation is evaluated from the
//! chunks (the plain plan, whose result is the same) until
//! [`DECLINE_FOR`] has passed; then it is pushed down once more, to measure
//! again, since data changes. Unknown shapes are pushed down.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Partial points per sample loaded at which pushdown is declined. Measured
/// on 3 ingesters (16 shards, RF 3) against the plain plan, over the
/// dashboard benchmark's data: pushdown won at 0.04 points per sample
/// (`sum by (job)`, 600 series into 8 groups), 0.06 (a quantile's 2200
/// buckets into 44 groups) and 0.08 (a regex selection, 114 series into 3
/// groups), and lost at 0.18 (`avg by (region) (avg_over_time(…))`, 50
/// series into 3 groups, each as a sum and a count) and 0.50 (`sum by
/// (instance)`, 350 series into 50 groups) — `bench/README.md`.
pub const DECLINE_RATIO: f64 = 0.15;

/// How long a shape found not worth pushing down is evaluated from chunks.
pub const DECLINE_FOR: Duration = Duration::from_secs(60);

/// Most shapes remembered (the memory is cleared when full).
const MAX_SHAPES: usize = 4096;

/// A query shape: tenant, expression and step (0 = instant).
pub type Shape = (String, String, i64);

/// Per query shape, until when pushdown is declined.
#[derive(Debug, Default)]
pub struct PushdownChoices {
    declined_until: Mutex<HashMap<Shape, Instant>>,
}

impl PushdownChoices {
    /// Whether `shape` is, at `now`, evaluated from chunks instead.
    pub fn declines(&self, shape: &Shape, now: Instant) -> bool {
        let mut m = self.declined_until.lock();
        match m.get(shape) {
            Some(until) if now < *until => true,
            Some(_) => {
                m.remove(shape);
                false
            }
            None => false,
        }
    }

    /// Records a pushed-down answer of `points` partial points over
    /// `samples` samples the nodes loaded, at `now`.
    pub fn observe(&self, shape: Shape, points: u64, samples: u64, now: Instant) {
        let mut m = self.declined_until.lock();
        if !worth_declining(points, samples) {
            m.remove(&shape);
            return;
        }
        if m.len() >= MAX_SHAPES {
            m.clear();
        }
        m.insert(shape, now + DECLINE_FOR);
    }
}

/// True when an answer of `points` partial points over `samples` loaded
/// samples is no cheaper than the chunks (see [`DECLINE_RATIO`]).
pub fn worth_declining(points: u64, samples: u64) -> bool {
    samples > 0 && points as f64 >= DECLINE_RATIO * samples as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &str) -> Shape {
        ("anonymous".into(), e.into(), 60_000)
    }

    #[test]
    fn few_groups_keep_pushing_down_and_many_decline_until_measured_again() {
        let (c, t0) = (PushdownChoices::default(), Instant::now());
        assert!(!c.declines(&shape("a"), t0), "unknown shapes are pushed down");
        c.observe(shape("a"), 13_000, 164_000, t0);
        assert!(!c.declines(&shape("a"), t0), "0.08 points per sample");
        c.observe(shape("b"), 216_000, 432_000, t0);
        assert!(c.declines(&shape("b"), t0 + Duration::from_secs(1)), "0.5 points per sample");
        assert!(!c.declines(&shape("a"), t0 + Duration::from_secs(1)));
        assert!(!c.declines(&("other".into(), "b".into(), 60_000), t0), "per tenant");
        assert!(!c.declines(&("anonymous".into(), "b".into(), 0), t0), "per step");
        // After the window: pushed down once more, and the new answer decides.
        assert!(!c.declines(&shape("b"), t0 + DECLINE_FOR));
        assert!(!c.declines(&shape("b"), t0 + DECLINE_FOR), "until measured again");
        c.observe(shape("b"), 1_000, 504_000, t0 + DECLINE_FOR);
        assert!(!c.declines(&shape("b"), t0 + DECLINE_FOR + Duration::from_secs(1)));
    }

    #[test]
    fn nothing_loaded_is_no_reason_to_decline() {
        assert!(!worth_declining(0, 0));
        assert!(!worth_declining(10, 0));
        assert!(worth_declining(15, 100));
        assert!(!worth_declining(14, 100));
    }
}
