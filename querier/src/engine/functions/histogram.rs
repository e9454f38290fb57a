//! Classic-histogram kernels: `histogram_quantile` / `histogram_quantiles`
//! and `histogram_fraction` over the `le` buckets of one histogram, plus the
//! parsing of `le` values and the formatting of the `histogram_quantiles`
//! output label.
//!
//! The caller groups the `*_bucket` series of one histogram (same labels but
//! `le`), parses each `le` with [`parse_bucket_bound`] (warning when it
//! fails) and passes cumulative counts in any order.

use super::aggregate::nan_first_cmp;

/// One cumulative classic bucket: how many observations were ≤ `upper_bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's `le`.
    pub upper_bound: f64,
    /// Cumulative count of observations up to `upper_bound`.
    pub count: f64,
}

impl Bucket {
    /// A bucket with the given bound and cumulative count.
    pub fn new(upper_bound: f64, count: f64) -> Self {
        Self { upper_bound, count }
    }
}

/// Result of [`histogram_quantile`]: the value plus what the caller turns
/// into annotations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramQuantile {
    /// The estimated quantile (NaN when it cannot be estimated).
    pub value: f64,
    /// Some bucket count was lower than a previous one and was raised to it
    /// (Prometheus reports an info annotation: "input to histogram_quantile
    /// needed to be fixed for monotonicity").
    pub forced_monotonicity: bool,
    /// Some counts differed only by floating-point noise (relative 1e-12) and
    /// were made equal; no annotation in Prometheus 3.
    pub fixed_precision: bool,
}

impl HistogramQuantile {
    fn plain(value: f64) -> Self {
        Self { value, forced_monotonicity: false, fixed_precision: false }
    }
}

/// Relative tolerance under which two neighbouring bucket counts are taken to
/// be equal (floating-point noise from `rate`/`sum`), as Prometheus 3.
pub const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// Parses an `le` label value the way Go's `strconv.ParseFloat` does for the
/// forms that occur (`0.1`, `.2`, `1e0`, `+Inf`, `+inf`, `NaN`). `None` when
/// it is not a number.
pub fn parse_bucket_bound(le: &str) -> Option<f64> {
    le.parse::<f64>().ok()
}

/// `histogram_quantile(q, ...)` over classic buckets. `buckets` is sorted and
/// merged in place (buckets with the same bound are summed).
///
/// `q` NaN gives NaN, `q < 0` −Inf, `q > 1` +Inf (the caller warns). Without
/// a +Inf bucket, with fewer than two distinct bounds or with no observations
/// the result is NaN. Otherwise counts are made monotonic, the bucket holding
/// rank `q · total` is found and the value interpolated linearly inside it;
/// the lowest bucket is taken to start at 0 unless its bound is ≤ 0, and a
/// rank in the +Inf bucket gives the highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &mut Vec<Bucket>) -> HistogramQuantile {
    if q.is_nan() {
        return HistogramQuantile::plain(f64::NAN);
    }
    if q < 0.0 {
        return HistogramQuantile::plain(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return HistogramQuantile::plain(f64::INFINITY);
    }
    if !sort_and_coalesce(buckets) {
        return HistogramQuantile::plain(f64::NAN);
    }
    let (forced_monotonicity, fixed_precision) = ensure_monotonic(buckets, SMALL_DELTA_TOLERANCE);
    let flagged = |value| HistogramQuantile { value, forced_monotonicity, fixed_precision };
    let n = buckets.len();
    if n < 2 {
        return flagged(f64::NAN);
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return flagged(f64::NAN);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|bk| bk.count < rank);
    if b == n - 1 {
        return flagged(buckets[n - 2].upper_bound);
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return flagged(buckets[0].upper_bound);
    }
    let end = buckets[b].upper_bound;
    let mut start = 0.0;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    flagged(start + (end - start) * (rank / count))
}

/// Sorts by bound and merges equal bounds. False when there is no bucket or
/// the highest bound is not +Inf (no quantile can be computed).
fn sort_and_coalesce(buckets: &mut Vec<Bucket>) -> bool {
    buckets.sort_by(|a, b| nan_first_cmp(&a.upper_bound, &b.upper_bound));
    match buckets.last() {
        Some(last) if last.upper_bound == f64::INFINITY => {}
        _ => return false,
    }
    buckets.dedup_by(|later, kept| {
        if later.upper_bound == kept.upper_bound {
            kept.count += later.count;
            true
        } else {
            false
        }
    });
    true
}

/// Raises every count to at least the previous one; counts within relative
/// `tolerance` of the previous are set equal to it. Returns
/// `(forced_monotonicity, fixed_precision)`.
fn ensure_monotonic(buckets: &mut [Bucket], tolerance: f64) -> (bool, bool) {
    let (mut forced, mut fixed) = (false, false);
    let Some(first) = buckets.first() else { return (false, false) };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) {
            b.count = prev;
            fixed = true;
        } else if curr < prev {
            b.count = prev;
            forced = true;
        } else {
            prev = curr;
        }
    }
    (forced, fixed)
}

/// Relative float comparison with an absolute floor near zero (NaN equals NaN).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE; // 2^-1022
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// `histogram_fraction(lower, upper, ...)` over classic buckets: the
/// estimated share of observations in `[lower, upper]`, interpolating
/// linearly inside finite buckets. The lowest bucket starts at 0 when its
/// bound is positive (else at −Inf); a point inside an infinitely wide
/// bucket counts as being at its finite edge (no interpolation). NaN without
/// a +Inf bucket, with no observations or with a NaN bound; 0 when
/// `lower >= upper`. `buckets` is sorted and merged in place.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if !sort_and_coalesce(buckets) {
        return f64::NAN;
    }
    let total = buckets[buckets.len() - 1].count;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    (rank_at(buckets, upper) - rank_at(buckets, lower)) / total
}

/// Estimated number of observations ≤ `v` (see [`bucket_fraction`]).
fn rank_at(buckets: &[Bucket], v: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.count);
    if v == f64::INFINITY {
        return total;
    }
    let mut prev_bound = if buckets.first().is_some_and(|b| b.upper_bound > 0.0) { 0.0 } else { f64::NEG_INFINITY };
    let mut prev_count = 0.0;
    for b in buckets {
        if v <= prev_bound {
            return prev_count;
        }
        if v < b.upper_bound {
            return if prev_bound == f64::NEG_INFINITY {
                b.count
            } else if b.upper_bound == f64::INFINITY {
                prev_count
            } else {
                prev_count + (b.count - prev_count) * (v - prev_bound) / (b.upper_bound - prev_bound)
            };
        }
        prev_bound = b.upper_bound;
        prev_count = b.count;
    }
    total
}

/// Formats a quantile for the label `histogram_quantiles` adds, as
/// OpenMetrics floats are written: Go's shortest `%g` form with `.0` added to
/// integers (`0.0`, `0.25`, `1.0`, `1e-05`), and `NaN`, `+Inf`, `-Inf`.
pub fn format_quantile_label(q: f64) -> String {
    if q.is_nan() {
        return "NaN".to_string();
    }
    if q.is_infinite() {
        return if q > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() };
    }
    let mut s = go_format_g(q);
    if !s.contains(['.', 'e']) {
        s.push_str(".0");
    }
    s
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for finite `v`: shortest
/// round-trip digits, exponent form when the decimal exponent is < −4 or ≥ 6.
fn go_format_g(v: f64) -> String {
    let sci = format!("{:e}", v.abs()); // e.g. "1.2345e-5", "0e0"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() { String::new() } else { format!(".{tail}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{frac}e{esign}{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        let (int, frac) = digits.split_at(int_len);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hq(q: f64, b: &[(f64, f64)]) -> HistogramQuantile {
        let mut v: Vec<Bucket> = b.iter().map(|(u, c)| Bucket::new(*u, *c)).collect();
        histogram_quantile(q, &mut v)
    }

    fn frac(lower: f64, upper: f64, b: &[(f64, f64)]) -> f64 {
        let mut v: Vec<Bucket> = b.iter().map(|(u, c)| Bucket::new(*u, *c)).collect();
        bucket_fraction(lower, upper, &mut v)
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() < 1e-9
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn quantiles_of_testhistogram3() {
        let pos = [(0.0, 0.0), (0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 110.0)];
        let neg = [(-0.25, 0.0), (-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 20.0)];
        let want = [(0.0, 0.0, -0.25), (0.25, 0.055, -0.225), (0.5, 0.125, -0.2), (0.75, 0.45, -0.15), (1.0, 1.0, -0.1)];
        for (q, p, n) in want {
            assert!(close(hq(q, &pos).value, p), "pos q={q}: {}", hq(q, &pos).value);
            assert!(close(hq(q, &neg).value, n), "neg q={q}: {}", hq(q, &neg).value);
            assert!(!hq(q, &pos).forced_monotonicity);
        }
    }

    #[test]
    fn quantiles_of_testhistogram_in_any_order() {
        let pos = [(1.0, 110.0), (INF, 120.0), (0.1, 50.0), (0.2, 70.0)];
        let neg = [(0.3, 20.0), (-0.2, 10.0), (INF, 30.0), (-0.1, 20.0)];
        let want = [(0.0, 0.0, -0.2), (1.0, 1.0, 0.3), (0.2, 0.048, -0.2), (0.5, 0.15, -0.15), (0.8, 0.72, 0.3)];
        for (q, p, n) in want {
            assert!(close(hq(q, &pos).value, p), "pos q={q}: {}", hq(q, &pos).value);
            assert!(close(hq(q, &neg).value, n), "neg q={q}: {}", hq(q, &neg).value);
        }
        assert_eq!(hq(-0.1, &pos).value, f64::NEG_INFINITY);
        assert_eq!(hq(1.01, &pos).value, INF);
        assert!(hq(f64::NAN, &pos).value.is_nan());
        let two = [(0.0, 0.0), (2.0, 1.0), (4.0, 2.0), (6.0, 3.0), (INF, 3.0)];
        assert!(close(hq(1.0 / 6.0, &two).value, 1.0));
        assert!(close(hq(0.5, &two).value, 3.0));
        assert!(close(hq(5.0 / 6.0, &two).value, 5.0));
    }

    #[test]
    fn nonmonotonic_buckets_are_fixed_and_flagged() {
        let b = [(0.1, 20.0), (1.0, 10.0), (10.0, 50.0), (100.0, 40.0), (1000.0, 90.0), (INF, 80.0)];
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            let r = hq(q, &b);
            assert!(close(r.value, want), "q={q}: {}", r.value);
            assert!(r.forced_monotonicity && !r.fixed_precision);
        }
        let noisy = [(1.0, 10.0), (2.0, 10.0 - 1e-14), (INF, 20.0)];
        let r = hq(0.5, &noisy);
        assert!(r.fixed_precision && !r.forced_monotonicity);
        assert!(close(r.value, 1.0));
    }

    #[test]
    fn degenerate_inputs_give_nan() {
        let mixed = [(0.1, 1.0), (0.2, 1.0), (0.2, 1.0), (0.2, 1.0), (INF, 4.0)];
        assert!(close(hq(0.5, &mixed).value, 0.15));
        assert!(close(hq(0.75, &mixed).value, 0.2));
        assert!(close(hq(1.0, &mixed).value, 0.2));
        assert!(hq(0.5, &[(INF, 0.0), (INF, 0.0)]).value.is_nan());
        assert!(hq(0.5, &[(INF, 5.0)]).value.is_nan());
        assert!(hq(0.5, &[(0.1, 1.0), (1.0, 2.0)]).value.is_nan());
        assert!(hq(1.0, &[(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (INF, 0.0)]).value.is_nan());
        assert!(hq(0.5, &[]).value.is_nan());
    }

    #[test]
    fn fractions_match_histograms_test() {
        let two = [(0.0, 0.0), (2.0, 10.0), (4.0, 20.0), (6.0, 30.0), (INF, 30.0)];
        assert!(close(frac(0.0, 4.0, &two), 0.6666666666666666));
        assert!(close(frac(0.0, 6.0, &two), 1.0));
        assert!(close(frac(0.0, 3.5, &two), 0.5833333333333334));
        let pos3 = [(0.0, 0.0), (0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 110.0)];
        let neg3 = [(-0.25, 0.0), (-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 20.0)];
        assert!(close(frac(0.0, 0.2, &pos3), 0.6363636363636364));
        assert_eq!(frac(0.0, 0.2, &neg3), 0.0);
        let p = [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (INF, 100.0)];
        let n = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (INF, 100.0)];
        type Case<'a> = (f64, f64, &'a [(f64, f64)], f64);
        let cases: [Case<'_>; 14] = [
            (0.0, 1.5, &p, 0.02),
            (-4.0, -2.0, &n, 0.02),
            (f64::NEG_INFINITY, -1.5, &n, 0.135),
            (f64::NEG_INFINITY, INF, &p, 1.0),
            (f64::NEG_INFINITY, INF, &n, 1.0),
            (4.0, 5.0, &p, 0.0),
            (0.0, 1.0, &n, 0.0),
            (2.0, 5.0, &p, 0.03),
            (400.0, INF, &p, 0.94),
            (2.0, 2.0, &p, 0.0),
            (3.0, 2.0, &p, 0.0),
            (2.0, 3.5, &p, 0.03),
            (0.5, 2.0, &p, 0.025),
            (1.0, 3.0, &p, 0.05),
        ];
        for (lo, hi, b, want) in cases {
            assert!(close(frac(lo, hi, b), want), "({lo}, {hi}) over {b:?}: {}", frac(lo, hi, b));
        }
    }

    #[test]
    fn fraction_edge_cases() {
        assert_eq!(frac(0.0, 1.0, &[(INF, 100.0)]), 0.0);
        assert!(frac(0.0, 5.0, &[(1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (INF, 0.0)]).is_nan());
        let f = [(0.5, 2.5), (1.0, 7.5), (INF, 100.0)];
        assert!(close(frac(0.1, 0.75, &f), 0.045));
        let z = [(-2.0, 5.0), (-1.0, 10.0), (0.0, 15.0), (1.0, 20.0), (INF, 100.0)];
        assert!(close(frac(-1.0, 1.0, &z), 0.1));
        let s = [(1.0, 1.0), (INF, 100.0)];
        assert!(frac(f64::NAN, 1.0, &s).is_nan());
        assert!(frac(0.0, f64::NAN, &s).is_nan());
        let r = [(1.0, 1.0), (2.0, 3.0), (INF, 10.0)];
        assert_eq!(frac(-10.0, -5.0, &r), 0.0);
        assert_eq!(frac(5.0, 10.0, &r), 0.0);
        assert!(frac(0.0, 1.0, &[(1.0, 1.0)]).is_nan());
    }

    #[test]
    fn le_parsing_and_quantile_labels() {
        for (le, want) in [("0.1", 0.1), (".2", 0.2), ("1e0", 1.0), ("2.0e-1", 0.2), ("+Inf", INF), ("+inf", INF)] {
            assert_eq!(parse_bucket_bound(le), Some(want), "{le}");
        }
        assert!(parse_bucket_bound("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_bucket_bound("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_bucket_bound("Hello World"), None);
        assert_eq!(parse_bucket_bound(""), None);
        assert_eq!(parse_bucket_bound("++1"), None);
        let labels = [
            (0.0, "0.0"),
            (0.25, "0.25"),
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-0.1, "-0.1"),
            (1.01, "1.01"),
            (0.01, "0.01"),
            (0.99, "0.99"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456.0, "123456.0"),
            (1234567.0, "1.234567e+06"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (INF, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (q, want) in labels {
            assert_eq!(format_quantile_label(q), want);
        }
    }
}
