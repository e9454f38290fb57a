//! Deterministic data for the PromQL differential test: five scrape targets over
//! 50 minutes at a 15 s interval, written as remote-write 1.0 requests.
//!
//! Families (76 series): `http_requests_total` counters with resets,
//! `node_temperature_celsius` gauges crossing zero, `memory_usage_bytes` random
//! walks, `up`, `build_info`, a classic histogram `request_duration_seconds`
//! (`_bucket{le}` incl. `+Inf`, `_sum`, `_count`), and a `batch` target whose
//! series stop for 10 minutes and restart with a reset.
//!
//! A counter that starts inside the data (the histograms at the first sample,
//! the batch counter after its gap) starts at 0. With a small non-zero first
//! value, `rate` would extrapolate towards the counter's zero point, and that
//! rule changed after 2.42 (Prometheus PR 13725: the zero point now only caps
//! the half-interval extrapolation); both versions agree when it starts at 0.
//!
//! Timestamps are never a multiple of 500 ms: the test evaluates at `.5` s
//! instants with whole-second ranges, steps and offsets, so no sample ever sits
//! on a range or lookback boundary (where Prometheus 2.x and 3.x differ).

use aion_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use std::collections::BTreeMap;

/// Scrape interval of the generated data.
pub const INTERVAL_MS: i64 = 15_000;
/// Samples per series (50 minutes).
pub const SAMPLES: i64 = 200;
/// Sample indices during which the `batch` target is down (10 minutes).
pub const GAP: std::ops::Range<i64> = 80..120;
/// Sample indices during which `up{instance="10.0.2.2:80"}` is 0.
pub const WEB2_DOWN: std::ops::Range<i64> = 140..160;
/// Bucket bounds of the histogram, as written into `le`.
pub const BUCKETS: [&str; 7] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

/// One generated series: sorted labels (incl. `__name__`) and samples `(t_ms, value)`.
#[derive(Debug, Clone)]
pub struct Series {
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// The whole data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Grid origin (whole second); sample `i` of a series lies near `start_ms + i * 15 s`.
    pub start_ms: i64,
    /// `start_ms` + 50 minutes; no sample lies after it.
    pub end_ms: i64,
    /// Every series.
    pub series: Vec<Series>,
}

/// splitmix64: small, seeded, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi).
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
}

/// A scrape target: its identity and the sample indices at which its process restarts.
struct Target {
    job: &'static str,
    instance: &'static str,
    version: &'static str,
    restarts: &'static [i64],
}

const TARGETS: [Target; 5] = [
    Target { job: "api", instance: "10.0.1.1:8080", version: "1.2.3", restarts: &[70] },
    Target { job: "api", instance: "10.0.1.2:8080", version: "1.2.3", restarts: &[] },
    Target { job: "web", instance: "10.0.2.1:80", version: "2.0.1", restarts: &[110, 160] },
    Target { job: "web", instance: "10.0.2.2:80", version: "2.0.1", restarts: &[150] },
    Target { job: "batch", instance: "10.0.3.1:9091", version: "0.9.0", restarts: &[] },
];

impl Target {
    fn is_batch(&self) -> bool {
        self.job == "batch"
    }

    /// Whether the target was scraped at sample index `i`.
    fn scraped(&self, i: i64) -> bool {
        !(self.is_batch() && GAP.contains(&i))
    }

    /// Whether the process restarted (counters reset) just before sample `i`.
    fn restarted_at(&self, i: i64) -> bool {
        self.restarts.contains(&i) || (self.is_batch() && i == GAP.end)
    }

    fn labels(&self, name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut l: Vec<(String, String)> = vec![
            ("__name__".into(), name.into()),
            ("instance".into(), self.instance.into()),
            ("job".into(), self.job.into()),
        ];
        l.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        l.sort();
        l
    }
}

/// Scrape timestamps of one (target, family): `(sample index, t_ms)`, with a fixed
/// offset plus jitter, never on a 500 ms boundary, strictly increasing.
fn scrape_times(rng: &mut Rng, start_ms: i64, target: &Target) -> Vec<(i64, i64)> {
    let offset = rng.int(1_000, 14_000);
    (0..SAMPLES)
        .filter(|i| target.scraped(*i))
        .map(|i| {
            let mut t = start_ms + i * INTERVAL_MS + offset + rng.int(-150, 150);
            if t % 500 == 0 {
                t += 7;
            }
            (i, t)
        })
        .collect()
}

/// Generates the data set for grid origin `start_ms` (whole second) from `seed`.
pub fn generate(seed: u64, start_ms: i64) -> Dataset {
    let mut rng = Rng(seed);
    let mut series = Vec::new();
    for target in &TARGETS {
        if !target.is_batch() {
            http_requests(&mut rng, start_ms, target, &mut series);
            temperatures(&mut rng, start_ms, target, &mut series);
            histogram(&mut rng, start_ms, target, &mut series);
        } else {
            batch_jobs(&mut rng, start_ms, target, &mut series);
        }
        memory(&mut rng, start_ms, target, &mut series);
        up_and_build_info(&mut rng, start_ms, target, &mut series);
    }
    Dataset { start_ms, end_ms: start_ms + SAMPLES * INTERVAL_MS, series }
}

fn http_requests(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    for method in ["get", "post"] {
        for code in ["200", "500"] {
            let per_s = if code == "200" { rng.range(2.0, 10.0) } else { rng.range(0.05, 0.5) };
            let mut v = rng.range(100.0, 10_000.0).floor();
            let mut samples = Vec::with_capacity(times.len());
            for &(i, t) in &times {
                let inc = (per_s * 15.0 * rng.range(0.5, 1.5)).round();
                v = if target.restarted_at(i) { inc } else { v + inc };
                samples.push((t, v));
            }
            out.push(Series { labels: target.labels("http_requests_total", &[("code", code), ("method", method)]), samples });
        }
    }
}

fn temperatures(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    for zone in ["a", "b"] {
        let base = rng.range(-15.0, 20.0);
        let phase = rng.range(0.0, 6.0);
        let samples = times
            .iter()
            .map(|&(i, t)| (t, base + 8.0 * (i as f64 / 20.0 + phase).sin() + rng.range(-1.5, 1.5)))
            .collect();
        out.push(Series { labels: target.labels("node_temperature_celsius", &[("zone", zone)]), samples });
    }
}

fn memory(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    let mut v = rng.range(1.5e8, 5.5e8).round();
    let samples = times
        .iter()
        .map(|&(_, t)| {
            v = (v + rng.range(-6e6, 6.5e6)).round().max(5e7);
            (t, v)
        })
        .collect();
    out.push(Series { labels: target.labels("memory_usage_bytes", &[]), samples });
}

fn up_and_build_info(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    let down = |i: i64| target.instance == "10.0.2.2:80" && WEB2_DOWN.contains(&i);
    let up = times.iter().map(|&(i, t)| (t, if down(i) { 0.0 } else { 1.0 })).collect();
    out.push(Series { labels: target.labels("up", &[]), samples: up });
    let info = times.iter().filter(|(i, _)| !down(*i)).map(|&(_, t)| (t, 1.0)).collect();
    out.push(Series { labels: target.labels("build_info", &[("version", target.version)]), samples: info });
}

fn batch_jobs(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    let mut v = 500.0;
    let samples = times
        .iter()
        .map(|&(i, t)| {
            let inc = rng.int(0, 9) as f64;
            v = if target.restarted_at(i) { 0.0 } else { v + inc };
            (t, v)
        })
        .collect();
    out.push(Series { labels: target.labels("batch_jobs_processed_total", &[]), samples });
}

/// Classic histogram: cumulative `_bucket` counts, `_sum`, `_count`, sharing scrape times.
fn histogram(rng: &mut Rng, start_ms: i64, target: &Target, out: &mut Vec<Series>) {
    let times = scrape_times(rng, start_ms, target);
    let bounds: Vec<f64> = BUCKETS.iter().map(|b| if *b == "+Inf" { f64::INFINITY } else { b.parse().unwrap_or(f64::NAN) }).collect();
    let mean = if target.job == "api" { rng.range(0.15, 0.3) } else { rng.range(0.4, 0.8) };
    let (mut counts, mut sum) = (vec![0.0f64; bounds.len()], 0.0f64);
    let mut rows: Vec<Vec<(i64, f64)>> = vec![Vec::with_capacity(times.len()); bounds.len() + 2];
    for &(i, t) in &times {
        if target.restarted_at(i) {
            counts.iter_mut().for_each(|c| *c = 0.0);
            sum = 0.0;
        }
        let observations = if i == 0 { 0 } else { rng.int(20, 60) };
        for _ in 0..observations {
            let d = -mean * (1.0 - rng.unit()).ln();
            sum += d;
            counts.iter_mut().zip(&bounds).filter(|(_, b)| d <= **b).for_each(|(c, _)| *c += 1.0);
        }
        for (row, c) in rows.iter_mut().zip(&counts) {
            row.push((t, *c));
        }
        rows[bounds.len()].push((t, sum));
        rows[bounds.len() + 1].push((t, counts[bounds.len() - 1]));
    }
    let mut rows = rows.into_iter();
    for le in BUCKETS {
        let samples = rows.next().expect("BUG: one row per bucket");
        out.push(Series { labels: target.labels("request_duration_seconds_bucket", &[("le", le)]), samples });
    }
    for suffix in ["sum", "count"] {
        let samples = rows.next().expect("BUG: rows for _sum and _count");
        out.push(Series { labels: target.labels(&format!("request_duration_seconds_{suffix}"), &[]), samples });
    }
}

impl Dataset {
    /// Remote-write requests in time order, one per `window_ms` of data; each
    /// carries every series with a sample in its window.
    pub fn write_requests(&self, window_ms: i64) -> Vec<WriteRequest> {
        let mut by_window: BTreeMap<i64, Vec<TimeSeries>> = BTreeMap::new();
        for s in &self.series {
            let mut per: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
            for &(t, v) in &s.samples {
                per.entry((t - self.start_ms).div_euclid(window_ms)).or_default().push(Sample { timestamp: t, value: v });
            }
            for (w, samples) in per {
                let labels = s.labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect();
                by_window.entry(w).or_default().push(TimeSeries { labels, samples, ..Default::default() });
            }
        }
        by_window.into_values().map(|timeseries| WriteRequest { timeseries, ..Default::default() }).collect()
    }

    /// Total number of samples.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_700_000_000_000;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let (a, b) = (generate(7, START), generate(7, START));
        assert_eq!(a.series.len(), 76);
        assert_eq!(a.series.len(), b.series.len());
        for (x, y) in a.series.iter().zip(&b.series) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.samples, y.samples);
        }
        assert_ne!(generate(8, START).series[0].samples, a.series[0].samples, "the seed matters");
    }

    #[test]
    fn samples_are_off_grid_ordered_and_in_range() {
        let d = generate(42, START);
        for s in &d.series {
            assert!(s.samples.windows(2).all(|w| w[0].0 < w[1].0), "{:?} not increasing", s.labels);
            for &(t, _) in &s.samples {
                assert_ne!(t % 500, 0, "{t} sits on a 500 ms boundary");
                assert!(t > d.start_ms && t <= d.end_ms, "{t} outside the data window");
            }
        }
    }

    #[test]
    fn counters_reset_and_batch_has_a_gap() {
        let d = generate(42, START);
        let get = |name: &str, inst: &str| {
            d.series
                .iter()
                .find(|s| s.labels.contains(&("__name__".into(), name.into())) && s.labels.contains(&("instance".into(), inst.into())))
                .expect("series exists")
        };
        let resets = |s: &Series| s.samples.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert_eq!(resets(get("http_requests_total", "10.0.2.1:80")), 2);
        assert_eq!(resets(get("request_duration_seconds_count", "10.0.1.1:8080")), 1);
        let batch = get("batch_jobs_processed_total", "10.0.3.1:9091");
        assert_eq!(batch.samples.len() as i64, SAMPLES - (GAP.end - GAP.start));
        let gap = batch.samples.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0);
        assert!(gap > 10 * 60_000, "largest gap {gap} ms");
        let after_gap = batch.samples.windows(2).find(|w| w[1].0 - w[0].0 > 10 * 60_000).map(|w| w[1].1);
        assert_eq!(after_gap, Some(0.0), "a counter starting inside the data starts at 0");
        assert_eq!(get("request_duration_seconds_count", "10.0.2.2:80").samples[0].1, 0.0);
        let temps = d.series.iter().filter(|s| s.labels[0].1 == "node_temperature_celsius").flat_map(|s| &s.samples);
        let (neg, pos) = temps.fold((0, 0), |(n, p), s| if s.1 < 0.0 { (n + 1, p) } else { (n, p + 1) });
        assert!(neg > 100 && pos > 100, "gauges cross zero: {neg} negative, {pos} positive");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let d = generate(42, START);
        let buckets: Vec<&Series> = d
            .series
            .iter()
            .filter(|s| s.labels[0].1 == "request_duration_seconds_bucket" && s.labels.iter().any(|l| l.1 == "10.0.1.2:8080"))
            .collect();
        assert_eq!(buckets.len(), BUCKETS.len());
        for i in 0..buckets[0].samples.len() {
            let col: Vec<f64> = buckets.iter().map(|b| b.samples[i].1).collect();
            assert!(col.windows(2).all(|w| w[0] <= w[1]), "not cumulative at {i}: {col:?}");
        }
    }

    #[test]
    fn write_requests_cover_every_sample_in_time_order() {
        let d = generate(3, START);
        let reqs = d.write_requests(2 * 60_000);
        assert_eq!(reqs.len(), 25, "50 minutes in 2-minute windows");
        let n: usize = reqs.iter().flat_map(|r| &r.timeseries).map(|ts| ts.samples.len()).sum();
        assert_eq!(n, d.sample_count());
        let max_t = |r: &WriteRequest| r.timeseries.iter().flat_map(|ts| &ts.samples).map(|s| s.timestamp).max().unwrap_or(0);
        let min_t = |r: &WriteRequest| r.timeseries.iter().flat_map(|ts| &ts.samples).map(|s| s.timestamp).min().unwrap_or(0);
        assert!(reqs.windows(2).all(|w| max_t(&w[0]) < min_t(&w[1])));
    }
}
