//! Numerics shared by aggregation operators (`sum`, `avg`, `stddev`,
//! `stdvar`, `quantile`) and the `*_over_time` functions: Kahan–Neumaier
//! compensated sums, an overflow-safe mean, a compensated Welford variance and
//! the φ-quantile with linear interpolation.
//!
//! Prometheus computes these with compensated arithmetic, and several expected
//! values in the conformance scripts (e.g. `1 1e100 1 -1e100` summing to 2)
//! only come out with the same compensation, so it is reproduced exactly.

use std::cmp::Ordering;

/// One step of Kahan–Neumaier summation: adds `v` to the running `sum` with
/// compensation `c` and returns the new `(sum, c)`. The true sum is `sum + c`.
/// When the running sum becomes infinite the compensation is reset to 0, so
/// that an overflow or an infinite input is not turned into NaN by `c`.
#[inline]
pub fn kahan_add(sum: f64, c: f64, v: f64) -> (f64, f64) {
    let t = sum + v;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= v.abs() {
        c + ((sum - t) + v)
    } else {
        c + ((v - t) + sum)
    };
    (t, c)
}

/// Compensated sum of `values` (0 when empty), as `sum` and `sum_over_time`.
pub fn kahan_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_add(sum, c, v);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// Running arithmetic mean as Prometheus computes `avg` and `avg_over_time`:
/// a direct compensated sum divided by the count, switching to an incremental
/// (also compensated) mean only once the sum would overflow. Direct division
/// keeps e.g. the mean of many `52`s exactly `52`; the switch keeps the mean of
/// values near `f64::MAX` finite.
#[derive(Debug, Clone, Default)]
pub struct MeanAccumulator {
    count: f64,
    sum: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

impl MeanAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.sum = v;
            return;
        }
        if !self.incremental {
            let (sum, c) = kahan_add(self.sum, self.c, v);
            if !sum.is_infinite() {
                (self.sum, self.c) = (sum, c);
                return;
            }
            // The sum overflowed (or met an infinity): continue from the mean
            // of the values so far.
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_add(q * self.mean, q * self.c, v / self.count);
    }

    /// Number of values added.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// The mean, or `None` when nothing was added.
    pub fn value(&self) -> Option<f64> {
        if self.count == 0.0 {
            None
        } else if self.incremental {
            Some(self.mean + self.c)
        } else {
            Some(self.sum / self.count + self.c / self.count)
        }
    }
}

/// Overflow-safe mean of `values`, `None` when empty (see [`MeanAccumulator`]).
#[inline]
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut acc = MeanAccumulator::new();
    values.into_iter().for_each(|v| acc.add(v));
    acc.value()
}

/// Running population variance by Welford's method with compensated updates
/// of the mean and of the sum of squared deviations, as `stddev`, `stdvar`,
/// `stddev_over_time` and `stdvar_over_time`. Any NaN or infinity makes the
/// result NaN.
#[derive(Debug, Clone, Default)]
pub struct VarianceAccumulator {
    count: f64,
    mean: f64,
    c_mean: f64,
    aux: f64,
    c_aux: f64,
}

impl VarianceAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.count += 1.0;
        let delta = v - (self.mean + self.c_mean);
        (self.mean, self.c_mean) = kahan_add(self.mean, self.c_mean, delta / self.count);
        let dev = v - (self.mean + self.c_mean);
        (self.aux, self.c_aux) = kahan_add(self.aux, self.c_aux, delta * dev);
    }

    /// Number of values added.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Population variance, `None` when nothing was added.
    pub fn stdvar(&self) -> Option<f64> {
        (self.count > 0.0).then(|| (self.aux + self.c_aux) / self.count)
    }

    /// Population standard deviation, `None` when nothing was added.
    pub fn stddev(&self) -> Option<f64> {
        self.stdvar().map(f64::sqrt)
    }
}

/// Population variance of `values`, `None` when empty.
pub fn stdvar(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut acc = VarianceAccumulator::new();
    values.into_iter().for_each(|v| acc.add(v));
    acc.stdvar()
}

/// Population standard deviation of `values`, `None` when empty.
pub fn stddev(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    stdvar(values).map(f64::sqrt)
}

/// Ordering Prometheus uses to sort values for quantiles: NaN sorts below
/// every number, NaNs are equal to each other.
pub fn nan_first_cmp(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The φ-quantile of `values` (sorted in place, NaN lowest) with linear
/// interpolation between the two closest ranks, as `quantile` and
/// `quantile_over_time`: `rank = q·(n−1)`. Empty input or NaN `q` gives NaN;
/// `q < 0` gives −Inf and `q > 1` gives +Inf (the caller warns about both).
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_unstable_by(nan_first_cmp);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // expected values as the scripts spell them
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() < 1e-9
    }

    #[test]
    fn kahan_keeps_small_terms_next_to_huge_ones() {
        // functions.test: sum_over_time of `1 1e100 1 -1e100` is 2.
        assert_eq!(kahan_sum([1.0, 1e100, 1.0, -1e100]), 2.0);
        assert_eq!(kahan_sum([f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(kahan_sum([f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(kahan_sum(std::iter::empty()), 0.0);
    }

    #[test]
    fn mean_matches_aggregators_test() {
        assert_eq!(mean([2.0, 8.0, 1e100, -1e100]), Some(2.5));
        let big = 9.988465674311579e307;
        assert_eq!(mean([big; 4]), Some(big));
        assert_eq!(mean([-big; 4]), Some(-big));
        assert_eq!(mean([-big, -big, big, big]), Some(0.0));
        assert_eq!(mean([0.0, f64::INFINITY, f64::INFINITY, 0.0]), Some(f64::INFINITY));
        assert_eq!(mean([f64::INFINITY, 0.0, f64::INFINITY]), Some(f64::INFINITY));
        assert_eq!(mean([f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0]), Some(f64::NEG_INFINITY));
        assert!(mean([f64::NEG_INFINITY, 0.0, f64::INFINITY]).unwrap_or(0.0).is_nan());
        assert!(mean([1.0, f64::NAN]).unwrap_or(0.0).is_nan());
        assert_eq!(mean(std::iter::empty()), None);
        // Exactly 52, not 52 ± 1 ulp.
        assert_eq!(mean([52.0; 12]), Some(52.0));
        assert_eq!(mean([52.0; 13]), Some(52.0));
    }

    #[test]
    fn mean_of_extreme_magnitudes_matches_functions_test() {
        let cases: [(&[f64], f64); 6] = [
            (&[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6], 1.6666666666666675e9),
            (&[1.78264e50, 0.76342771, 1.9592258, 7.69805412, 458.90154], 3.56528e49),
            (&[1.78264e50, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 458.90154], 3.76333333333333e219),
            (&[-1.78264e215, 0.76342771, 1.9592258, 2.258e220, 7.69805412, -458.90154], 3.76330362266667e219),
            (
                &[-1.78264e215, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 1.78264e215, -458.90154],
                3.225714285714286e219,
            ),
            (
                &[
                    -1.78264e219, 0.76342771, 1.9592258, 2.3757689e217, -2.3757689e217, 2.258e220, 7.69805412,
                    1.78264e219, -458.90154,
                ],
                2.5088888888888888e219,
            ),
        ];
        for (values, want) in cases {
            let got = mean(values.iter().copied()).unwrap_or(f64::NAN);
            assert!(((got - want) / want).abs() < 1e-6, "{values:?}: got {got}, want {want}");
        }
        let cancelling = [
            -2.258e220, -1.78264e219, 0.76342771, 1.9592258, 2.3757689e217, -2.3757689e217, 2.258e220, 7.69805412,
            1.78264e219, -458.90154,
        ];
        // The script expects 0 here (Kahan cannot recover the small values).
        assert_eq!(mean(cancelling), Some(0.0));
    }

    #[test]
    fn variance_matches_scripts() {
        assert!(close(stdvar([0.0, 8.0, 8.0, 2.0, 3.0]).unwrap_or(0.0), 10.56));
        assert!((stddev([0.0, 8.0, 8.0, 2.0, 3.0]).unwrap_or(0.0) - 3.249615).abs() < 1e-6);
        assert_eq!(stdvar([1.5990505637277868; 3]), Some(0.0));
        assert_eq!(stdvar([13.3; 3]), Some(0.0));
        assert_eq!(stddev([1.0, 2.0]), Some(0.5));
        assert!(stddev([1.0, 2.0, f64::INFINITY]).unwrap_or(0.0).is_nan());
        assert!(stddev([f64::INFINITY]).unwrap_or(0.0).is_nan());
        assert!(stdvar([f64::NAN, 1.0, 2.0]).unwrap_or(0.0).is_nan());
        assert_eq!(stddev([7.0]), Some(0.0));
        assert_eq!(stdvar(std::iter::empty()), None);
        // aggregators.test: stdvar(http_requests) at 50m is 52500.
        let vals: Vec<f64> = (1..=8).map(|i| f64::from(i) * 100.0).collect();
        assert!(close(stdvar(vals.iter().copied()).unwrap_or(0.0), 52500.0));
        assert!(close(stddev(vals).unwrap_or(0.0), 229.12878474779));
    }

    #[test]
    fn quantile_interpolates_and_sorts_nan_first() {
        assert!(close(quantile(0.8, &mut [1.0, 0.0]), 0.8));
        assert!(close(quantile(0.8, &mut [2.0, 0.0, 1.0]), 1.6));
        assert!(close(quantile(0.75, &mut [0.0, 1.0, 4.0]), 2.5));
        assert!(close(quantile(0.8, &mut [0.0, 1.0, f64::NAN]), 0.6));
        assert!(quantile(0.2, &mut [0.0, 1.0, f64::NAN]).is_nan());
        assert_eq!(quantile(0.0, &mut [0.0, 1.0, 4.0]), 0.0);
        assert_eq!(quantile(1.0, &mut [0.0, 1.0, 4.0]), 4.0);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
    }
}
