//! The `*_over_time` statistics over the float samples of one window (same
//! input contract as the parent module). Each returns `None` for an empty
//! window; timestamps are returned in seconds.

use super::super::aggregate::{kahan_sum, mean, quantile, VarianceAccumulator};
use aion_model::Sample;

/// `avg_over_time`: overflow-safe compensated mean (see
/// [`MeanAccumulator`](super::super::aggregate::MeanAccumulator)).
pub fn avg_over_time(samples: &[Sample]) -> Option<f64> {
    let (first, rest) = samples.split_first()?;
    // As `MeanAccumulator`: the first value is the starting sum.
    let (sum, c) = finite_compensated_sum(first.v, rest);
    match sum {
        Some(sum) => {
            let n = samples.len() as f64;
            Some(sum / n + c / n)
        }
        None => mean(samples.iter().map(|s| s.v)),
    }
}

/// [`avg_over_time`] of many non-empty windows of one series
/// (`windows[k]` indexes `samples`), appended to `out` in order. Each
/// window gets exactly the operations of [`avg_over_time`], but four
/// windows are summed side by side: their additions are independent, so
/// the CPU overlaps them instead of waiting on one running sum at a time.
// Indexes, not iterators: the point is the same position across the lanes.
#[allow(clippy::needless_range_loop)]
pub fn avg_over_time_many(samples: &[Sample], windows: &[(usize, usize)], out: &mut Vec<f64>) {
    if exact_integer_sums(samples) {
        sliding_integer_avg(samples, windows, out);
        return;
    }
    const LANES: usize = 4;
    let mut groups = windows.chunks_exact(LANES);
    for g in groups.by_ref() {
        let w: [&[Sample]; LANES] = std::array::from_fn(|k| &samples[g[k].0..g[k].1]);
        let common = w.iter().map(|w| w.len()).min().unwrap_or(0);
        if common == 0 {
            out.extend(w.iter().map(|w| avg_over_time(w).unwrap_or(f64::NAN)));
            continue;
        }
        let mut sum: [f64; LANES] = std::array::from_fn(|k| w[k][0].v);
        let mut c = [0.0f64; LANES];
        for j in 1..common {
            for k in 0..LANES {
                compensated_add(&mut sum[k], &mut c[k], w[k][j].v);
            }
        }
        for k in 0..LANES {
            for s in &w[k][common..] {
                compensated_add(&mut sum[k], &mut c[k], s.v);
            }
            let n = w[k].len() as f64;
            out.push(if sum[k].is_finite() {
                sum[k] / n + c[k] / n
            } else {
                mean(w[k].iter().map(|s| s.v)).unwrap_or(f64::NAN)
            });
        }
    }
    for &(lo, hi) in groups.remainder() {
        out.push(avg_over_time(&samples[lo..hi]).unwrap_or(f64::NAN));
    }
}

/// True when every value is an integer so small that any sum of them is an
/// exact integer below 2^53 in magnitude (counters, byte gauges): each
/// addition is then exact, compensation adds +0 at every step, and every
/// order of summing gives the same sum.
fn exact_integer_sums(samples: &[Sample]) -> bool {
    let bound = (1u64 << 53) as f64 / samples.len().max(1) as f64;
    // `as i64` truncates in one instruction (`trunc` is a libm call on
    // baseline x86-64); below 2^53 it is exact, so the round trip keeps
    // exactly the integers.
    samples.iter().all(|s| s.v.abs() < bound && (s.v as i64) as f64 == s.v)
}

/// [`avg_over_time_many`] of an [`exact_integer_sums`] series: each window's
/// sum slides from the previous window's (adding what enters, subtracting
/// what leaves: exact), and the mean is formed as [`avg_over_time`] forms it,
/// `sum / n + c / n` with the compensation `c` = +0. Same bits as summing
/// every window afresh, in O(1) per window instead of O(window).
fn sliding_integer_avg(samples: &[Sample], windows: &[(usize, usize)], out: &mut Vec<f64>) {
    let (mut lo, mut hi, mut sum) = (0usize, 0usize, 0.0f64);
    for &(wlo, whi) in windows {
        if wlo < lo || whi < hi {
            // Not a forward slide (an `@` window repeats): start over.
            (lo, hi, sum) = (wlo, wlo, 0.0);
        }
        for s in samples.get(hi..whi).unwrap_or_default() {
            sum += s.v;
        }
        hi = hi.max(whi);
        for s in samples.get(lo..wlo).unwrap_or_default() {
            sum -= s.v;
        }
        lo = lo.max(wlo);
        // `c / n` with `c` = +0 and `n` >= 1 (windows are never empty) is
        // +0: added as such, without a second division.
        let n = (whi - wlo) as f64;
        out.push(sum / n + 0.0);
    }
}

/// One step of [`finite_compensated_sum`].
#[inline(always)]
fn compensated_add(sum: &mut f64, c: &mut f64, v: f64) {
    let t = *sum + v;
    *c += if sum.abs() >= v.abs() { (*sum - t) + v } else { (v - t) + *sum };
    *sum = t;
}

/// `sum_over_time`: Kahan–Neumaier compensated sum.
pub fn sum_over_time(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    // As `kahan_sum`: from 0 (so a lone -0 sums to 0).
    let (sum, c) = finite_compensated_sum(0.0, samples);
    Some(sum.map_or_else(|| kahan_sum(samples.iter().map(|s| s.v)), |sum| sum + c))
}

/// The Kahan–Neumaier sum of `init` and the values as `(sum, compensation)`
/// without the overflow handling of
/// [`kahan_add`](super::super::aggregate::kahan_add): the running sum can
/// only leave the finite numbers for good (an infinity stays infinite or
/// becomes NaN), so when the final sum is finite no step overflowed and
/// every step did exactly what `kahan_add` does. The sum is `None` when it
/// is not finite (the caller then takes the exact slow path). Without the
/// per-step checks the loop is much cheaper; windows are summed once per step.
#[inline]
fn finite_compensated_sum(init: f64, samples: &[Sample]) -> (Option<f64>, f64) {
    let (mut sum, mut c) = (init, 0.0f64);
    for s in samples {
        compensated_add(&mut sum, &mut c, s.v);
    }
    (sum.is_finite().then_some(sum), c)
}

/// Keeps the first sample for which `replace(candidate, current)` never
/// held, NaN being replaced by anything.
fn pick(samples: &[Sample], replace: impl Fn(f64, f64) -> bool) -> Option<Sample> {
    let (first, rest) = samples.split_first()?;
    let mut cur = *first;
    for s in rest {
        if replace(s.v, cur.v) || cur.v.is_nan() {
            cur = *s;
        }
    }
    Some(cur)
}

/// `min_over_time`: the smallest value; NaN only when every value is NaN.
pub fn min_over_time(samples: &[Sample]) -> Option<f64> {
    pick(samples, |v, cur| v < cur).map(|s| s.v)
}

/// `max_over_time`: the largest value; NaN only when every value is NaN.
pub fn max_over_time(samples: &[Sample]) -> Option<f64> {
    pick(samples, |v, cur| v > cur).map(|s| s.v)
}

/// `ts_of_min_over_time`: timestamp (seconds) of the last sample holding the
/// minimum value.
pub fn ts_of_min_over_time(samples: &[Sample]) -> Option<f64> {
    pick(samples, |v, cur| v <= cur).map(|s| seconds(s.t))
}

/// `ts_of_max_over_time`: timestamp (seconds) of the last sample holding the
/// maximum value.
pub fn ts_of_max_over_time(samples: &[Sample]) -> Option<f64> {
    pick(samples, |v, cur| v >= cur).map(|s| seconds(s.t))
}

/// `count_over_time`: number of samples.
pub fn count_over_time(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty()).then_some(samples.len() as f64)
}

/// `present_over_time`: 1 when the window holds any sample (NaN included).
pub fn present_over_time(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty()).then_some(1.0)
}

/// `last_over_time`: the value of the newest sample.
pub fn last_over_time(samples: &[Sample]) -> Option<f64> {
    samples.last().map(|s| s.v)
}

/// `first_over_time`: the value of the oldest sample.
pub fn first_over_time(samples: &[Sample]) -> Option<f64> {
    samples.first().map(|s| s.v)
}

/// `ts_of_last_over_time`: timestamp (seconds) of the newest sample. When
/// histogram samples also exist, the caller passes the newer of the two.
pub fn ts_of_last_over_time(samples: &[Sample]) -> Option<f64> {
    samples.last().map(|s| seconds(s.t))
}

/// `ts_of_first_over_time`: timestamp (seconds) of the oldest sample.
pub fn ts_of_first_over_time(samples: &[Sample]) -> Option<f64> {
    samples.first().map(|s| seconds(s.t))
}

/// `stdvar_over_time`: population variance.
pub fn stdvar_over_time(samples: &[Sample]) -> Option<f64> {
    variance(samples).stdvar()
}

/// `stddev_over_time`: population standard deviation.
pub fn stddev_over_time(samples: &[Sample]) -> Option<f64> {
    variance(samples).stddev()
}

fn variance(samples: &[Sample]) -> VarianceAccumulator {
    let mut acc = VarianceAccumulator::new();
    samples.iter().for_each(|s| acc.add(s.v));
    acc
}

/// `quantile_over_time(q, v[range])`: the φ-quantile with linear
/// interpolation (NaN values sort lowest); `q` outside `[0, 1]` gives ∓Inf,
/// NaN `q` gives NaN (the caller warns).
pub fn quantile_over_time(q: f64, samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    Some(quantile(q, &mut values))
}

/// `mad_over_time`: median absolute deviation from the median. Any NaN
/// sample makes the result NaN.
pub fn mad_over_time(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    if samples.iter().any(|s| s.v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    let median = quantile(0.5, &mut values);
    values.iter_mut().for_each(|v| *v = (*v - median).abs());
    Some(quantile(0.5, &mut values))
}

fn seconds(t_ms: i64) -> f64 {
    t_ms as f64 / 1000.0
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // expected values as the scripts spell them
mod tests {
    use super::*;

    fn series(interval_ms: i64, values: &[f64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, v)| Sample::new(i as i64 * interval_ms, *v)).collect()
    }

    fn window(s: &[Sample], end: i64, range: i64) -> Vec<Sample> {
        s.iter().filter(|x| x.t > end - range && x.t <= end).copied().collect()
    }

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;

    /// A deterministic pseudo-random sequence (xorshift64).
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn same(a: Option<f64>, b: f64) -> bool {
        matches!(a, Some(a) if (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() < 1e-9)
    }

    #[test]
    fn integer_series_slide_to_the_same_bits_as_one_window_at_a_time() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        // Counters, gauges crossing zero, -0, and values near the bound
        // (2^53 / 400 ≈ 2.25e13) that make rounding likely were it not exact.
        let kinds: [fn(u64, usize) -> f64; 4] = [
            |r, i| (i * 7 + (r % 5) as usize) as f64,
            |r, _| (r % 2001) as f64 - 1000.0,
            |r, i| if i % 3 == 0 { -0.0 } else { (r % 3) as f64 - 1.0 },
            |r, _| (r % 22_000_000_000_000) as f64 - 11_000_000_000_000.0,
        ];
        for kind in kinds {
            let values: Vec<f64> = (0..400).map(|i| kind(next(), i)).collect();
            let s = series(1_000, &values);
            assert!(exact_integer_sums(&s));
            // Forward-sliding windows of varying length, then repeated and backward ones.
            let mut windows = Vec::new();
            let (mut lo, mut hi) = (0usize, 1usize);
            while hi <= s.len() {
                windows.push((lo, hi));
                hi += 1 + (next() % 3) as usize;
                lo = (lo + (next() % 3) as usize).min(hi.saturating_sub(1));
            }
            windows.extend([(5, 9), (5, 9), (2, 30), (0, 1)]);
            let mut got = Vec::new();
            avg_over_time_many(&s, &windows, &mut got);
            assert_eq!(got.len(), windows.len());
            for (&(lo, hi), g) in windows.iter().zip(&got) {
                let want = avg_over_time(&s[lo..hi]).unwrap_or(f64::NAN);
                assert_eq!(g.to_bits(), want.to_bits(), "window {lo}..{hi}: {g} vs {want}");
            }
        }
        // A fraction or a value past the bound keeps the summing path.
        assert!(!exact_integer_sums(&series(1_000, &[1.0, 2.5])));
        assert!(!exact_integer_sums(&series(1_000, &[1.0, 9.1e15])));
        assert!(!exact_integer_sums(&series(1_000, &[1.0, INF])));
        assert!(!exact_integer_sums(&series(1_000, &[1.0, NAN])));
    }

    #[test]
    fn avg_over_time_many_is_bit_identical_to_one_window_at_a_time() {
        // Values with cancellation, huge magnitudes (overflow to the slow
        // path), infinities and NaN; windows of every length, overlapping.
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let values: Vec<f64> = (0..500)
            .map(|i| match next() % 23 {
                0 => 1.7e308,
                1 => -1.6e308,
                2 => INF,
                3 if i % 5 == 0 => NAN,
                r => (next() % 1_000_000) as f64 * 1e-3 * if r % 2 == 0 { 1.0 } else { -1e12 },
            })
            .collect();
        let s = series(1_000, &values);
        let windows: Vec<(usize, usize)> = (0..700)
            .map(|_| {
                let lo = (next() % 480) as usize;
                (lo, lo + 1 + (next() % 19) as usize)
            })
            .collect();
        let mut got = Vec::new();
        avg_over_time_many(&s, &windows, &mut got);
        assert_eq!(got.len(), windows.len());
        for (&(lo, hi), g) in windows.iter().zip(&got) {
            let want = avg_over_time(&s[lo..hi]).unwrap_or(0.0);
            assert_eq!(g.to_bits(), want.to_bits(), "window {lo}..{hi}: {g} vs {want}");
        }
    }

    #[test]
    fn avg_over_time_handles_infinities_and_overflow() {
        let avg = |v: &[f64]| avg_over_time(&window(&series(10_000, v), 55_000, 60_000));
        assert_eq!(avg_over_time(&window(&series(10_000, &[1.0, 2.0, 3.0, 4.0, 5.0]), 55_000, 10_000)), None);
        assert!(same(avg(&[1.0, 2.0, 3.0, 4.0, 5.0]), 3.0));
        assert!(same(avg(&[1.0, 2.0, 3.0, 4.0, INF]), INF));
        assert!(same(avg(&[1.0, 2.0, 3.0, 4.0, -INF]), -INF));
        assert!(same(avg(&[1.0, 2.0, 3.0, INF, -INF]), NAN));
        assert!(same(avg(&[INF, 0.0, INF]), INF));
        assert!(same(avg(&[INF, INF, INF, -INF]), NAN));
        assert!(same(avg(&[-INF, 0.0, -INF]), -INF));
        assert!(same(avg(&[1.0, 2.0, -INF, -INF, INF]), NAN));
        let big = 9.988465674311579e307;
        assert!(same(avg(&[big, big]), big));
        assert!(same(avg(&[-big, -big, -big]), -big));
        assert!(same(avg(&[-big, big]), 0.0));
        assert!(same(sum_over_time(&series(1, &[big, big])), INF));
        let nan = series(10_000, &[1.0, 2.0, 3.0, NAN, NAN]);
        assert!(same(avg_over_time(&window(&nan, 20_000, 60_000)), 2.0));
        assert!(same(avg_over_time(&window(&nan, 30_000, 60_000)), NAN));
        let big_small = series(10_000, &[1.0, 1e100, 1.0, -1e100]);
        assert!(same(sum_over_time(&window(&big_small, 60_000, 120_000)), 2.0));
        assert!(same(avg_over_time(&window(&big_small, 60_000, 120_000)), 0.5));
        // foo 52+0x100: exactly 52 for any window length.
        let foo = series(10_000, &[52.0; 101]);
        for r in [100_000, 110_000, 120_000, 130_000] {
            assert_eq!(avg_over_time(&window(&foo, 600_000, r)), Some(52.0));
        }
    }

    #[test]
    fn dense_sum_over_time() {
        let s = series(1, &vec![1.0; 4001]);
        for r in [1000, 1001, 1002, 1003, 2000, 3003] {
            assert_eq!(sum_over_time(&window(&s, 4000, r)), Some(r as f64));
        }
    }

    #[test]
    fn min_max_first_last_count() {
        let end = 60_000;
        let w = |v: &[f64]| window(&series(10_000, v), end, 120_000);
        let cases: [(&[f64], f64, f64, f64, f64); 5] = [
            (&[2.0, 0.0, 3.0], 0.0, 3.0, 2.0, 3.0),
            (&[2.0, 0.0, NAN], 0.0, 2.0, 2.0, NAN),
            (&[2.0, NAN, 1.0], 1.0, 2.0, 2.0, 1.0),
            (&[NAN, 0.0, 1.0], 0.0, 1.0, NAN, 1.0),
            (&[NAN, NAN, NAN], NAN, NAN, NAN, NAN),
        ];
        for (v, min, max, first, last) in cases {
            let s = w(v);
            assert!(same(min_over_time(&s), min), "{v:?}");
            assert!(same(max_over_time(&s), max), "{v:?}");
            assert!(same(first_over_time(&s), first), "{v:?}");
            assert!(same(last_over_time(&s), last), "{v:?}");
            assert_eq!(count_over_time(&s), Some(3.0));
            assert_eq!(present_over_time(&s), Some(1.0));
        }
        assert_eq!(min_over_time(&[]), None);
        assert_eq!(count_over_time(&[]), None);
        assert_eq!(present_over_time(&[]), None);
    }

    #[test]
    fn timestamps_of_extremes() {
        let s = series(10_053, &[1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 2.0, 1.0, 4.0]);
        let w = window(&s, 90_000, 90_000);
        assert_eq!(ts_of_min_over_time(&w), Some(30.159));
        assert_eq!(ts_of_max_over_time(&w), Some(50.265));
        assert_eq!(ts_of_last_over_time(&window(&s[..3], 90_000, 90_000)), Some(20.106));
        assert_eq!(ts_of_first_over_time(&w), Some(10.053));
        // Ties go to the newest sample.
        let tie = series(1000, &[1.0, 3.0, 1.0, 3.0]);
        assert_eq!(ts_of_min_over_time(&tie), Some(2.0));
        assert_eq!(ts_of_max_over_time(&tie), Some(3.0));
        assert_eq!(ts_of_max_over_time(&[]), None);
    }

    #[test]
    fn stddev_stdvar_over_time() {
        let s = window(&series(10_000, &[0.0, 8.0, 8.0, 2.0, 3.0]), 60_000, 120_000);
        assert!(same(stdvar_over_time(&s), 10.56));
        assert!((stddev_over_time(&s).unwrap_or(0.0) - 3.249615).abs() < 1e-6);
        let c = series(10_000, &[1.5990505637277868; 3]);
        assert_eq!(stdvar_over_time(&c), Some(0.0));
        assert_eq!(stddev_over_time(&c), Some(0.0));
        assert_eq!(stddev_over_time(&[]), None);
    }

    #[test]
    fn quantile_and_mad_over_time() {
        let uneven = series(10_000, &[0.0, 1.0, 4.0]);
        let want = [(0.0, 0.0), (0.5, 1.0), (0.75, 2.5), (0.8, 2.8), (1.0, 4.0), (-1.0, -INF), (2.0, INF)];
        for (q, w) in want {
            assert!(same(quantile_over_time(q, &uneven), w), "q={q}");
        }
        assert!(same(quantile_over_time(0.8, &series(1, &[0.0, 1.0])), 0.8));
        assert_eq!(quantile_over_time(0.5, &[]), None);
        let m = series(10_000, &[4.0, 6.0, 2.0, 1.0, 999.0, 1.0, 2.0]);
        assert_eq!(mad_over_time(&window(&m, 70_000, 70_000)), Some(1.0));
        assert_eq!(mad_over_time(&series(10_000, &[1.0, 2.0, 3.0, 4.0, 5.0])), Some(1.0));
        assert_eq!(mad_over_time(&series(10_000, &[7.0; 5])), Some(0.0));
        assert_eq!(mad_over_time(&series(10_000, &[5.0])), Some(0.0));
        assert!(same(mad_over_time(&series(10_000, &[1.0, 2.0, NAN, 4.0])), NAN));
        assert_eq!(mad_over_time(&[]), None);
    }

    /// The unchecked sum gives bit for bit what the overflow-checked
    /// accumulators give, and hands non-finite sums to them.
    #[test]
    fn fast_sum_and_mean_are_bit_identical() {
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specials = [0.0, -0.0, 1e308, -1e308, f64::MAX, INF, -INF, NAN, 1e-300, 5e-324];
        for case in 0..3000 {
            let n = 1 + (next() % 12) as usize;
            let values: Vec<f64> = (0..n)
                .map(|_| match case % 3 {
                    0 => (next() % 2_000_000) as f64 * 0.37 - 1e5,
                    1 => f64::from_bits(next() >> 2) * if next() % 2 == 0 { 1.0 } else { -1.0 },
                    _ => specials[(next() % specials.len() as u64) as usize],
                })
                .collect();
            let s = series(1000, &values);
            assert_eq!(bits(avg_over_time(&s)), bits(mean(values.iter().copied())), "avg {values:?}");
            assert_eq!(bits(sum_over_time(&s)), Some(kahan_sum(values.iter().copied()).to_bits()), "sum {values:?}");
        }
        assert_eq!(sum_over_time(&series(1000, &[-0.0])).map(f64::to_bits), Some(0.0f64.to_bits()));
        assert_eq!(avg_over_time(&series(1000, &[f64::MAX, f64::MAX])), Some(f64::MAX));
    }
}
