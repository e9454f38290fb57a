//! Range-vector kernels over the float samples of one series in one window.
//!
//! Input contract, for every function here: `samples` are the float samples
//! with `range_start < t <= range_end` (Prometheus 3's left-open window), in
//! time order, staleness markers already removed, histogram samples already
//! separated out by the caller. `None` means "no output for this series at
//! this step". Timestamps are milliseconds; rates are per second.
//!
//! This file holds the functions that look at how a series moves (`rate`,
//! `increase`, `delta`, `irate`, `idelta`, `deriv`, `predict_linear`,
//! `resets`, `changes`, `double_exponential_smoothing`); the statistics over
//! a window (`*_over_time`) live in [`over_time`].

pub mod over_time;

pub use over_time::*;

use super::aggregate::kahan_add;
use super::error::FunctionError;
use aion_model::Sample;

/// `rate` (`is_counter && is_rate`), `increase` (`is_counter && !is_rate`) and
/// `delta` (`!is_counter && !is_rate`), with Prometheus's extrapolation.
///
/// Needs at least two samples. For counters every decrease is taken as a
/// reset and the value before it is added back. The difference between the
/// first and last sample is then extrapolated towards both window edges:
/// all the way when the gap to the edge is below 1.1 × the average sample
/// interval, otherwise by half an average interval. A counter is never
/// extrapolated to below zero at the start. `rate` divides by the window
/// length `range_end_ms - range_start_ms` in seconds.
pub fn extrapolated_rate(
    samples: &[Sample],
    range_start_ms: i64,
    range_end_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let (first, last) = match samples {
        [first, .., last] => (*first, *last),
        _ => return None,
    };
    let mut result = last.v - first.v;
    if is_counter {
        result += counter_reset_correction(samples);
    }
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_interval = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_interval * 1.1;
    let mut to_start = (first.t - range_start_ms) as f64 / 1000.0;
    let mut to_end = (range_end_ms - last.t) as f64 / 1000.0;
    if to_start >= threshold {
        to_start = average_interval / 2.0;
    }
    if is_counter {
        // Where a straight line through the samples would cross zero: the
        // counter cannot have started before that.
        let to_zero = if result > 0.0 && first.v >= 0.0 {
            sampled_interval * (first.v / result)
        } else {
            to_start
        };
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_interval / 2.0;
    }
    let mut factor = (sampled_interval + to_start + to_end) / sampled_interval;
    if is_rate {
        factor /= (range_end_ms - range_start_ms) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// [`extrapolated_rate`] over the successive windows of one series, with
/// bit-identical results but less arithmetic. With a regular scrape,
/// successive windows have the same geometry — span and count of samples,
/// gaps to both edges, window length — so everything derived from it alone
/// (intervals, extrapolation, the final factor) is computed once and reused:
/// the same inputs through the same operations give the same floats. The
/// counter-reset scan is skipped for a series that never decreases.
#[derive(Debug, Clone)]
pub struct RateSweep {
    is_counter: bool,
    is_rate: bool,
    /// No decrease anywhere in the series: every window's correction is an empty sum.
    monotonic: bool,
    /// Geometry of the memoised window, and what it gave.
    key: Option<[i64; 5]>,
    sampled_interval: f64,
    /// Gap to the start after the threshold rule, before the counter zero rule.
    to_start: f64,
    to_end: f64,
    /// `to_start`/`to_end` extrapolation factor (divided by the window in seconds for `rate`).
    factor: f64,
    /// See [`RateSweep::memoise`].
    zero_guard: f64,
}

impl RateSweep {
    /// A sweep over `series` (all its samples, time order) for `rate`
    /// (`is_counter && is_rate`), `increase` or `delta`.
    // `!(b < a)`, not `b >= a`: a NaN pair is no reset, exactly as in the window scan.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn new(series: &[Sample], is_counter: bool, is_rate: bool) -> Self {
        let monotonic = is_counter && series.windows(2).all(|w| !(w[1].v < w[0].v));
        Self {
            is_counter,
            is_rate,
            monotonic,
            key: None,
            sampled_interval: 0.0,
            to_start: 0.0,
            to_end: 0.0,
            factor: 0.0,
            zero_guard: 0.0,
        }
    }

    /// [`extrapolated_rate`] of one window of the series.
    #[inline]
    pub fn window(&mut self, samples: &[Sample], range_start_ms: i64, range_end_ms: i64) -> Option<f64> {
        let (first, last) = match samples {
            [first, .., last] => (*first, *last),
            _ => return None,
        };
        let mut result = last.v - first.v;
        if self.is_counter {
            if self.monotonic {
                let none: f64 = std::iter::empty::<f64>().sum();
                result += none;
            } else {
                result += counter_reset_correction(samples);
            }
        }
        let key = [
            last.t - first.t,
            samples.len() as i64,
            first.t - range_start_ms,
            range_end_ms - last.t,
            range_end_ms - range_start_ms,
        ];
        // Element by element: an array `!=` may become a `memcmp` call.
        let same = self.key.is_some_and(|k| {
            k[0] == key[0] && k[1] == key[1] && k[2] == key[2] && k[3] == key[3] && k[4] == key[4]
        });
        if !same {
            self.memoise(key, samples.len(), first.t - range_start_ms, range_end_ms - last.t, range_end_ms - range_start_ms);
        }
        if self.is_counter {
            let to_zero = if result > 0.0 && first.v >= 0.0 {
                // A counter far above its increase (the usual case) is
                // certainly not extrapolated to zero: skip the division.
                let bound = result * self.zero_guard;
                if bound.is_normal() && first.v >= bound {
                    return Some(result * self.factor);
                }
                self.sampled_interval * (first.v / result)
            } else {
                self.to_start
            };
            if to_zero < self.to_start {
                let mut factor = (self.sampled_interval + to_zero + self.to_end) / self.sampled_interval;
                if self.is_rate {
                    factor /= (range_end_ms - range_start_ms) as f64 / 1000.0;
                }
                return Some(result * factor);
            }
        }
        Some(result * self.factor)
    }

    #[cold]
    fn memoise(&mut self, key: [i64; 5], n: usize, gap_start: i64, gap_end: i64, range: i64) {
        let sampled_interval = key[0] as f64 / 1000.0;
        let average_interval = sampled_interval / (n - 1) as f64;
        let threshold = average_interval * 1.1;
        let mut to_start = gap_start as f64 / 1000.0;
        let mut to_end = gap_end as f64 / 1000.0;
        if to_start >= threshold {
            to_start = average_interval / 2.0;
        }
        if to_end >= threshold {
            to_end = average_interval / 2.0;
        }
        let mut factor = (sampled_interval + to_start + to_end) / sampled_interval;
        if self.is_rate {
            factor /= range as f64 / 1000.0;
        }
        // `first >= result * zero_guard` implies `sampled * (first / result) >= to_start`
        // whatever the rounding (the margin is 1e-9, rounding a few 1e-16).
        let zero_guard = to_start / sampled_interval * (1.0 + 1e-9);
        *self = Self { key: Some(key), sampled_interval, to_start, to_end, factor, zero_guard, ..*self };
    }
}

/// Sum of the values just before each counter reset (each decrease).
fn counter_reset_correction(samples: &[Sample]) -> f64 {
    samples.windows(2).filter(|w| w[1].v < w[0].v).map(|w| w[0].v).sum()
}

/// `irate` (`is_rate`) and `idelta` (`!is_rate`): from the last two samples.
///
/// For `irate`, a decrease is a counter reset and the result is the last value
/// divided by the interval. `None` with fewer than two samples or when the two
/// share a timestamp.
pub fn instant_rate(samples: &[Sample], is_rate: bool) -> Option<f64> {
    let (prev, last) = match samples {
        [.., prev, last] => (*prev, *last),
        _ => return None,
    };
    let interval_ms = last.t - prev.t;
    if interval_ms == 0 {
        return None;
    }
    let value = if is_rate && last.v < prev.v { last.v } else { last.v - prev.v };
    if is_rate {
        Some(value / (interval_ms as f64 / 1000.0))
    } else {
        Some(value)
    }
}

/// Least-squares fit of `samples`: returns `(slope per second, intercept)`
/// with x measured in seconds from `intercept_time_ms`. Sums are
/// Kahan-compensated. A constant series has slope 0 (NaN, NaN if the
/// constant is infinite). Requires at least one sample.
fn linear_regression(samples: &[Sample], intercept_time_ms: i64) -> (f64, f64) {
    let first_v = samples[0].v;
    let constant = samples.iter().all(|s| s.v == first_v);
    if constant {
        return if first_v.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, first_v) };
    }
    let n = samples.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for s in samples {
        let x = (s.t - intercept_time_ms) as f64 / 1000.0;
        (sx, cx) = kahan_add(sx, cx, x);
        (sy, cy) = kahan_add(sy, cy, s.v);
        (sxy, cxy) = kahan_add(sxy, cxy, x * s.v);
        (sx2, cx2) = kahan_add(sx2, cx2, x * x);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// `deriv`: the per-second slope of the least-squares line. Needs two samples.
pub fn deriv(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    Some(linear_regression(samples, samples[0].t).0)
}

/// `predict_linear(v[range], horizon_s)`: the least-squares line's value
/// `horizon_s` seconds after `eval_t_ms`. `eval_t_ms` is the step's
/// evaluation time (not an `@` time on the selector). Needs two samples.
pub fn predict_linear(samples: &[Sample], eval_t_ms: i64, horizon_s: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(samples, eval_t_ms);
    Some(slope * horizon_s + intercept)
}

/// `resets`: how many times the value decreased. `None` when empty.
pub fn resets(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.windows(2).filter(|w| w[1].v < w[0].v).count() as f64)
}

/// `changes`: how many times the value changed (NaN to NaN is no change).
/// `None` when empty.
pub fn changes(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let changed = |a: f64, b: f64| !(a == b || (a.is_nan() && b.is_nan()));
    Some(samples.windows(2).filter(|w| changed(w[0].v, w[1].v)).count() as f64)
}

/// Checks the `double_exponential_smoothing` factors: both must lie strictly
/// between 0 and 1. Call once per query, before evaluating any step.
pub fn check_smoothing_factors(sf: f64, tf: f64) -> Result<(), FunctionError> {
    if !(sf > 0.0 && sf < 1.0) {
        return Err(FunctionError::InvalidSmoothingFactor { value: sf });
    }
    if !(tf > 0.0 && tf < 1.0) {
        return Err(FunctionError::InvalidTrendFactor { value: tf });
    }
    Ok(())
}

/// `double_exponential_smoothing(v[range], sf, tf)` (formerly `holt_winters`):
/// Holt's linear smoothing with smoothing factor `sf` and trend factor `tf`,
/// both in `(0, 1)` (checked by [`check_smoothing_factors`]). The trend
/// starts as the difference of the first two samples. Needs two samples.
pub fn double_exponential_smoothing(samples: &[Sample], sf: f64, tf: f64) -> Result<Option<f64>, FunctionError> {
    check_smoothing_factors(sf, tf)?;
    if samples.len() < 2 {
        return Ok(None);
    }
    let mut prev_smoothed = 0.0;
    let mut smoothed = samples[0].v;
    let mut trend = samples[1].v - samples[0].v;
    for (i, s) in samples.iter().enumerate().skip(1) {
        if i > 1 {
            trend = tf * (smoothed - prev_smoothed) + (1.0 - tf) * trend;
        }
        let next = sf * s.v + (1.0 - sf) * (smoothed + trend);
        prev_smoothed = smoothed;
        smoothed = next;
    }
    Ok(Some(smoothed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Samples `first, first+step, ...` every `interval_ms` from t = 0.
    fn series(interval_ms: i64, values: &[f64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, v)| Sample::new(i as i64 * interval_ms, *v)).collect()
    }

    /// Samples of `series` inside `(end - range, end]`.
    fn window(s: &[Sample], end: i64, range: i64) -> Vec<Sample> {
        s.iter().filter(|x| x.t > end - range && x.t <= end).copied().collect()
    }

    /// The memoised sweep gives bit-identical results to the plain kernel
    /// over every window: regular and jittered scrapes, resets, values near
    /// zero (the counter zero rule), gaps, NaN.
    #[test]
    fn rate_sweep_matches_extrapolated_rate_bit_for_bit() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..40 {
            let mut t = 0i64;
            let mut v = if case % 3 == 0 { 0.0 } else { 1e6 };
            let mut pts = Vec::new();
            for i in 0..400 {
                t += 15_000 + if case % 2 == 0 { 0 } else { (rnd() % 40) as i64 - 20 };
                if case % 5 == 1 && i % 37 == 0 {
                    t += 120_000; // a gap
                }
                v += (rnd() % 100) as f64 * 0.25;
                if case % 4 == 2 && i % 53 == 0 {
                    v = (rnd() % 10) as f64; // a reset
                }
                if case == 7 && i == 100 {
                    v = f64::NAN;
                }
                // Subnormal increases, where a guard product could underflow.
                let scale = if case % 7 == 3 { 1e-315 } else { 1.0 };
                pts.push(Sample::new(t, if case % 6 == 5 { -v } else { v * scale }));
            }
            for (is_counter, is_rate) in [(true, true), (true, false), (false, false)] {
                let mut sweep = RateSweep::new(&pts, is_counter, is_rate);
                for end in (0..t + 60_000).step_by(7_500) {
                    let w = window(&pts, end, 5 * MIN);
                    let want = extrapolated_rate(&w, end - 5 * MIN, end, is_counter, is_rate);
                    let got = sweep.window(&w, end - 5 * MIN, end);
                    assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "case {case} end {end}");
                }
            }
        }
    }

    fn linear(start: f64, step: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| start + step * i as f64).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || ((a - b) / b).abs() < 1e-9
    }

    fn rate_at(values: &[f64], interval: i64, end: i64, range: i64, counter: bool, is_rate: bool) -> Option<f64> {
        let s = series(interval, values);
        extrapolated_rate(&window(&s, end, range), end - range, end, counter, is_rate)
    }

    #[test]
    fn increase_extrapolates_but_not_below_zero() {
        // functions.test `increase(http_requests_total[100m])` at 50m.
        let inc = |v: &[f64]| rate_at(v, 5 * MIN, 50 * MIN, 100 * MIN, true, false);
        assert_eq!(inc(&linear(0.0, 10.0, 11)), Some(100.0));
        let mut bar = linear(0.0, 18.0, 6);
        bar.extend(linear(0.0, 18.0, 5));
        assert!(close(inc(&bar).unwrap_or(0.0), 162.0));
        assert!(close(inc(&linear(10.0, 10.0, 11)).unwrap_or(0.0), 105.0));
        assert!(close(inc(&linear(1.0, 10.0, 11)).unwrap_or(0.0), 101.0));
        // `increase(...[50m])`: the t=0 sample is outside the left-open window.
        let inc50 = |v: &[f64]| rate_at(v, 5 * MIN, 50 * MIN, 50 * MIN, true, false);
        assert!(close(inc50(&linear(0.0, 10.0, 11)).unwrap_or(0.0), 100.0));
        assert!(close(inc50(&bar).unwrap_or(0.0), 160.0));
        // Counter reset: 0 1 2 3 2 3 4 increases by 7 over [30m] at 30m.
        let v = [0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0];
        assert!(close(rate_at(&v, 5 * MIN, 30 * MIN, 30 * MIN, true, false).unwrap_or(0.0), 7.0));
    }

    #[test]
    fn rate_matches_functions_test() {
        let mut v = linear(0.0, 27.0, 5);
        v.extend(linear(0.0, 27.0, 6));
        assert!(close(rate_at(&v, 5 * MIN, 50 * MIN, 50 * MIN, true, true).unwrap_or(0.0), 0.08));
        let mut end = linear(0.0, 10.0, 10);
        end.extend([0.0, 10.0]);
        assert_eq!(rate_at(&end, 5 * MIN, 50 * MIN, 5 * MIN, true, true), None);
        assert_eq!(rate_at(&end, 5 * MIN, 50 * MIN, 6 * MIN, true, true), Some(0.0));
        let r = rate_at(&linear(0.0, 80.0, 11), 5 * MIN, 50 * MIN, 50 * MIN, true, true);
        assert!(close(r.unwrap_or(0.0), 0.26666666666666666));
        // Zero cutoff: 4m interval, rate(...[20m]) at 10m.
        let want = [0.5, 0.55, 0.6, 0.6, 0.6, 0.6];
        for (k, w) in want.iter().enumerate() {
            let vals = linear(60.0 * k as f64, 240.0, 11);
            let got = rate_at(&vals, 4 * MIN, 10 * MIN, 20 * MIN, true, true).unwrap_or(0.0);
            assert!(close(got, *w), "start={k}m: {got} != {w}");
            let got = rate_at(&vals, 4 * MIN, 50 * MIN, 20 * MIN, true, true).unwrap_or(0.0);
            assert!(close(got, 0.6), "start={k}m at 50m: {got}");
        }
    }

    #[test]
    fn delta_is_not_a_counter() {
        let d = |v: &[f64]| rate_at(v, 5 * MIN, 20 * MIN, 20 * MIN, false, false);
        assert!(close(d(&[0.0, 50.0, 100.0, 150.0, 200.0]).unwrap_or(0.0), 200.0));
        assert!(close(d(&[200.0, 150.0, 100.0, 50.0, 0.0]).unwrap_or(0.0), -200.0));
        assert_eq!(extrapolated_rate(&[Sample::new(0, 1.0)], -1000, 0, false, false), None);
    }

    #[test]
    fn irate_and_idelta() {
        let s = series(5 * MIN, &linear(0.0, 10.0, 11));
        assert!(close(instant_rate(&window(&s, 50 * MIN, 50 * MIN), true).unwrap_or(0.0), 0.0333333333333333));
        let mut bar = linear(0.0, 10.0, 6);
        bar.extend(linear(0.0, 10.0, 5));
        let s = series(5 * MIN, &bar);
        assert_eq!(instant_rate(&window(&s, 30 * MIN, 50 * MIN), true), Some(0.0));
        let nan = series(5 * MIN, &[1.0, f64::NAN, f64::NAN, 5.0, 11.0]);
        let range = 15 * MIN + 1000;
        assert_eq!(instant_rate(&window(&nan, 0, range), true), None);
        assert!(instant_rate(&window(&nan, 15 * MIN, range), true).unwrap_or(0.0).is_nan());
        assert!(close(instant_rate(&window(&nan, 20 * MIN, range), true).unwrap_or(0.0), 0.02));
        assert_eq!(instant_rate(&window(&nan, 20 * MIN, range), false), Some(6.0));
        let s = series(5 * MIN, &[0.0, 50.0, 100.0, 50.0]);
        assert_eq!(instant_rate(&s, false), Some(-50.0));
        assert_eq!(instant_rate(&[Sample::new(1, 1.0), Sample::new(1, 2.0)], true), None);
    }

    #[test]
    fn deriv_and_predict_linear() {
        let mut v = linear(0.0, 10.0, 5);
        v.extend(linear(0.0, 10.0, 6));
        let s = series(5 * MIN, &v);
        let d = deriv(&window(&s, 50 * MIN, 100 * MIN)).unwrap_or(0.0);
        assert!(close(d, 0.010606060606060607));
        let w = window(&s, 50 * MIN, 55 * MIN);
        assert!(close(predict_linear(&w, 50 * MIN, 3600.0).unwrap_or(0.0), 76.81818181818181));
        assert!(close(predict_linear(&w, 10 * MIN, 3600.0).unwrap_or(0.0), 51.36363636363637));
        assert!(close(predict_linear(&w, 70 * MIN, 3600.0).unwrap_or(0.0), 89.54545454545455));
        let w = window(&s, 50 * MIN, 50 * MIN);
        assert!(close(predict_linear(&w, 50 * MIN, 3600.0).unwrap_or(0.0), 70.0));
        let s = series(5 * MIN, &linear(0.0, 80.0, 11));
        assert!(close(deriv(&window(&s, 50 * MIN, 50 * MIN)).unwrap_or(0.0), 0.26666666666666666));
        let mut inf = vec![f64::NEG_INFINITY];
        inf.extend(linear(0.0, 80.0, 11));
        inf.push(f64::INFINITY);
        let s = series(5 * MIN, &inf);
        assert!(deriv(&window(&s, 100 * MIN, 100 * MIN)).unwrap_or(0.0).is_nan());
        assert!(predict_linear(&window(&s, 100 * MIN, 100 * MIN), 100 * MIN, 6000.0).unwrap_or(0.0).is_nan());
        assert_eq!(deriv(&s[..1]), None);
        assert_eq!(deriv(&series(1000, &[3.0, 3.0])), Some(0.0));
        assert!(deriv(&series(1000, &[f64::INFINITY, f64::INFINITY])).unwrap_or(0.0).is_nan());
    }

    #[test]
    fn resets_and_changes() {
        let foo = series(5 * MIN, &[1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0]);
        let bar = series(5 * MIN, &[1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let biz = series(5 * MIN, &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let at = |s: &[Sample], r: i64, f: fn(&[Sample]) -> Option<f64>| f(&window(s, 50 * MIN, r * MIN));
        assert_eq!(at(&foo, 5, resets), None);
        assert_eq!(at(&foo, 20, resets), Some(1.0));
        assert_eq!(at(&foo, 32, resets), Some(2.0));
        assert_eq!(at(&bar, 32, resets), Some(1.0));
        assert_eq!(at(&foo, 50, resets), Some(3.0));
        assert_eq!(at(&foo, 20, changes), Some(2.0));
        assert_eq!(at(&bar, 30, changes), Some(4.0));
        assert_eq!(at(&foo, 50, changes), Some(7.0));
        assert_eq!(at(&bar, 50, changes), Some(8.0));
        assert_eq!(at(&biz, 50, changes), Some(1.0));
        assert_eq!(changes(&series(5 * MIN, &[f64::NAN; 3])), Some(0.0));
        assert_eq!(changes(&series(5 * MIN, &[0.0, f64::NAN, 0.0])), Some(2.0));
    }

    #[test]
    fn double_exponential_smoothing_matches_functions_test() {
        let des = |start: f64, step: f64| {
            let s: Vec<Sample> = (795..=800).map(|i| Sample::new(i * 10_000, start + step * i as f64)).collect();
            double_exponential_smoothing(&s, 0.01, 0.1).ok().flatten().unwrap_or(f64::NAN)
        };
        // http_requests 0+10x1000 ... at 8000s over [1m]: 8000, 16000, 24000, 32000.
        assert!(close(des(0.0, 10.0), 8000.0));
        assert!(close(des(0.0, 20.0), 16000.0));
        assert!(close(des(0.0, 40.0), 32000.0));
        assert!(des(8000.0, -10.0).abs() < 1e-6);
        assert!(close(des(0.0, -20.0), -16000.0));
        let one = [Sample::new(0, 1.0)];
        assert_eq!(double_exponential_smoothing(&one, 0.5, 0.5), Ok(None));
        assert_eq!(
            double_exponential_smoothing(&one, 1.0, 0.5),
            Err(FunctionError::InvalidSmoothingFactor { value: 1.0 })
        );
        assert_eq!(double_exponential_smoothing(&one, 0.5, 0.0), Err(FunctionError::InvalidTrendFactor { value: 0.0 }));
        assert!(check_smoothing_factors(f64::NAN, 0.5).is_err());
    }
}
