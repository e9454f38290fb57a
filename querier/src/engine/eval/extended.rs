//! Extended range selectors (Prometheus's experimental `anchored` and
//! `smoothed` modifiers). `anchored` windows also hold the last sample at or
//! before the window start and are not extrapolated; `smoothed` values are
//! interpolated linearly at the window edges (and at the evaluation time for
//! instant selectors) from the samples on either side.

use crate::engine::EngineError;
use aion_model::Sample;

/// The modifier of a selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtMode {
    Anchored,
    Smoothed,
}

/// Name of the placeholder matcher that carries the modifier through the parser.
pub(crate) const EXT_MARKER: &str = "__aion_range_modifier__";

impl ExtMode {
    /// The mode a marker value names.
    pub fn from_marker(v: &str) -> Option<ExtMode> {
        match v {
            "anchored" => Some(ExtMode::Anchored),
            "smoothed" => Some(ExtMode::Smoothed),
            _ => None,
        }
    }

    /// Fails unless `func` supports this modifier (Prometheus's messages).
    pub fn check_function(self, func: &str) -> Result<(), EngineError> {
        let (allowed, list, name) = match self {
            ExtMode::Anchored => (
                matches!(func, "changes" | "delta" | "increase" | "rate" | "resets"),
                "changes, delta, increase, rate, resets",
                "anchored",
            ),
            ExtMode::Smoothed => (matches!(func, "delta" | "increase" | "rate"), "delta, increase, rate", "smoothed"),
        };
        if allowed {
            Ok(())
        } else {
            Err(EngineError::Execution(format!("{name} modifier can only be used with: {list} - not with {func}")))
        }
    }
}

/// Samples of an anchored window `(start, end]` plus the last one at or
/// before `start` (within `lookback`); `None` when the window itself is empty.
pub(crate) fn anchored_window(s: &[Sample], start: i64, end: i64, lookback: i64) -> Option<&[Sample]> {
    let lo = s.partition_point(|p| p.t <= start);
    let hi = s.partition_point(|p| p.t <= end);
    if hi <= lo {
        return None;
    }
    let from = if lo > 0 && s[lo - 1].t > start - lookback { lo - 1 } else { lo };
    Some(&s[from..hi])
}

/// `increase`/`rate`/`delta` over an anchored window: no extrapolation.
pub(crate) fn anchored_change(w: &[Sample], counter: bool) -> f64 {
    let (Some(first), Some(last)) = (w.first(), w.last()) else { return 0.0 };
    let mut d = last.v - first.v;
    if counter {
        d += w.windows(2).filter(|p| p[1].v < p[0].v).map(|p| p[0].v).sum::<f64>();
    }
    d
}

/// Value at `t` interpolated between the samples around it (`smoothed`
/// instant selector): the sample at `t`, else the line between its
/// neighbours, else the previous sample within `lookback`.
pub(crate) fn smoothed_value(s: &[Sample], t: i64, lookback: i64) -> Option<f64> {
    let i = s.partition_point(|p| p.t <= t);
    let prev = s[..i].last().filter(|p| p.t > t - lookback)?;
    if prev.t == t {
        return Some(prev.v);
    }
    match s.get(i).filter(|n| n.t < t + lookback) {
        Some(next) => Some(interpolate(prev, next.v, next.t, t)),
        None => Some(prev.v),
    }
}

fn interpolate(prev: &Sample, next_v: f64, next_t: i64, t: i64) -> f64 {
    prev.v + (next_v - prev.v) * (t - prev.t) as f64 / (next_t - prev.t) as f64
}

/// `increase` (`counter`) or `delta` over `(start, end]` with values
/// interpolated at both edges; counter resets are taken out first.
pub(crate) fn smoothed_change(s: &[Sample], start: i64, end: i64, lookback: i64, counter: bool) -> Option<f64> {
    let lo = s.partition_point(|p| p.t <= start);
    let hi = s.partition_point(|p| p.t <= end);
    let from = if lo > 0 && s[lo - 1].t > start - lookback { lo - 1 } else { lo };
    let to = if hi < s.len() && s[hi].t < end + lookback { hi + 1 } else { hi };
    let inside = hi > lo;
    let has_before = from < lo;
    let has_after = to > hi;
    if !(inside || (has_before && has_after)) {
        return None;
    }
    // Samples around the window, made monotonic across counter resets.
    let mut adj: Vec<Sample> = Vec::with_capacity(to - from);
    let mut offset = 0.0;
    for (k, p) in s[from..to].iter().enumerate() {
        if counter && k > 0 && p.v < s[from + k - 1].v {
            offset += s[from + k - 1].v;
        }
        adj.push(Sample::new(p.t, p.v + offset));
    }
    let at = |t: i64| -> f64 {
        let i = adj.partition_point(|p| p.t <= t);
        match (i.checked_sub(1).and_then(|j| adj.get(j)), adj.get(i)) {
            (Some(p), _) if p.t == t => p.v,
            (Some(p), Some(n)) => interpolate(p, n.v, n.t, t),
            (Some(p), None) => p.v,
            (None, Some(n)) => n.v,
            (None, None) => f64::NAN,
        }
    };
    Some(at(end) - at(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter().map(|(t, v)| Sample::new(*t, *v)).collect()
    }

    #[test]
    fn smoothed_interpolates_across_resets() {
        let d = s(&[(0, 9.0), (60, 8.0), (120, 5.0), (180, 4.0)]);
        assert_eq!(smoothed_change(&d, 15, 135, 300, true), Some(12.0));
        let d = s(&[(0, 100.0), (15, 10.0)]);
        let inc = smoothed_change(&d, 2, 12, 300, true).unwrap_or(0.0);
        assert!((inc - 20.0 / 3.0).abs() < 1e-9);
        assert_eq!(smoothed_value(&s(&[(0, 1.0), (10, 2.0)]), 5, 300), Some(1.5));
    }

    #[test]
    fn anchored_adds_the_sample_before_the_window() {
        let d = s(&[(0, 1.0), (60, 2.0), (180, 4.0)]);
        assert_eq!(anchored_window(&d, 60, 120, 300), None);
        let w = anchored_window(&d, 30, 90, 300).unwrap_or(&[]);
        assert_eq!(anchored_change(w, true), 1.0);
        assert!(ExtMode::Smoothed.check_function("resets").is_err());
    }
}
