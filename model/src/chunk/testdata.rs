//! Deterministic, realistic sample data for codec tests and benchmarks.
//! Not part of the stable API.
//!
//! One "target" is what a typical instrumented service exposes, scraped every
//! 15 s with a few milliseconds of jitter (all its series share a scrape's
//! timestamp, as in Prometheus): request counters increasing by small integers,
//! resident-memory gauges drifting by a few pages, float ratio gauges that change
//! every scrape, and latency histograms (12 cumulative buckets + `_count` +
//! `_sum`) of busy to nearly idle endpoints, whose buckets mostly stay unchanged.

use crate::chunk::XorChunk;
use crate::sample::Sample;

/// Scrape interval of the mix.
pub const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// Largest scheduling delay of a scrape in [`Jitter::Realistic`].
pub const MAX_DELAY_MS: i64 = 5;

/// How far scrape timestamps stray from the 15 s grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Each scrape starts late by a scheduling delay of 0..=5 ms, each extra
    /// millisecond half as likely as the previous (mean about 1 ms): what a
    /// ticker-driven scraper on a reasonably loaded host records.
    Realistic,
    /// Uniform in `-ms..=ms` (a harsher, noisier scraper).
    Uniform(i64),
}

impl Jitter {
    fn sample(self, rng: &mut SplitMix64) -> i64 {
        match self {
            Jitter::Uniform(ms) => rng.range(-ms, ms),
            Jitter::Realistic => {
                let mut d = 0;
                while d < MAX_DELAY_MS && rng.next_u64() & 1 == 1 {
                    d += 1;
                }
                d
            }
        }
    }
}
/// Samples per chunk, as the head cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Upper bounds (seconds) of the finite histogram buckets (Prometheus defaults);
/// a `+Inf` bucket follows.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Counters per target and their mean increase per scrape.
const COUNTER_RATES: [f64; 20] = [
    0.05, 0.1, 0.1, 0.2, 0.3, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 3.0, 4.0, 5.0, 0.02, 0.05, 0.2,
    0.8, 8.0,
];
/// Resident-memory gauges per target.
const MEMORY_GAUGES: usize = 4;
/// Float ratio gauges per target.
const RATIO_GAUGES: usize = 2;
/// Histograms per target and their mean observations per scrape.
const HISTOGRAM_RATES: [f64; 4] = [4.0, 1.0, 0.2, 0.05];

/// A small deterministic PRNG (SplitMix64), good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
    /// Poisson-distributed count with mean `mean` (Knuth; fine for small means).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, self.unit());
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }
}

/// What a generated series represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeriesKind {
    /// Monotonic counter increasing by small integers.
    Counter,
    /// Resident memory in bytes, drifting by a few 4 KiB pages.
    MemoryGauge,
    /// A ratio in (0, 1) that changes every scrape.
    RatioGauge,
    /// A cumulative histogram bucket (`_bucket{le=...}`).
    HistogramBucket,
    /// A histogram's `_count`.
    HistogramCount,
    /// A histogram's `_sum` (float seconds).
    HistogramSum,
}

/// One generated series.
#[derive(Debug, Clone)]
pub struct MixSeries {
    /// What it represents.
    pub kind: SeriesKind,
    /// Its samples, timestamps strictly increasing.
    pub samples: Vec<Sample>,
}

/// Generates `targets` scrape targets with `scrapes` samples per series.
pub fn realistic_mix(seed: u64, targets: usize, scrapes: usize, jitter: Jitter) -> Vec<MixSeries> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for _ in 0..targets {
        let start = 1_700_000_000_000 + rng.range(0, SCRAPE_INTERVAL_MS - 1);
        let ts: Vec<i64> = (0..scrapes as i64)
            .map(|i| start + i * SCRAPE_INTERVAL_MS + jitter.sample(&mut rng))
            .collect();
        counters(&mut rng, &ts, &mut out);
        gauges(&mut rng, &ts, &mut out);
        for &rate in &HISTOGRAM_RATES {
            histogram(&mut rng, &ts, rate, &mut out);
        }
    }
    out
}

fn series(kind: SeriesKind, ts: &[i64], values: impl IntoIterator<Item = f64>) -> MixSeries {
    MixSeries {
        kind,
        samples: ts
            .iter()
            .zip(values)
            .map(|(&t, v)| Sample::new(t, v))
            .collect(),
    }
}

fn counters(rng: &mut SplitMix64, ts: &[i64], out: &mut Vec<MixSeries>) {
    for &rate in &COUNTER_RATES {
        let mut v = rng.range(0, 2_000_000) as f64;
        let vals: Vec<f64> = ts
            .iter()
            .map(|_| {
                v += rng.poisson(rate) as f64;
                v
            })
            .collect();
        out.push(series(SeriesKind::Counter, ts, vals));
    }
}

fn gauges(rng: &mut SplitMix64, ts: &[i64], out: &mut Vec<MixSeries>) {
    const PAGE: i64 = 4096;
    for _ in 0..MEMORY_GAUGES {
        let mut pages = rng.range(5_000, 1_000_000);
        let vals: Vec<f64> = ts
            .iter()
            .map(|_| {
                if rng.unit() < 0.7 {
                    pages = (pages + rng.range(-32, 32)).max(1);
                }
                (pages * PAGE) as f64
            })
            .collect();
        out.push(series(SeriesKind::MemoryGauge, ts, vals));
    }
    for _ in 0..RATIO_GAUGES {
        let mut v = rng.unit();
        let vals: Vec<f64> = ts
            .iter()
            .map(|_| {
                v = (v + (rng.unit() - 0.5) * 0.02).clamp(0.0, 1.0);
                v
            })
            .collect();
        out.push(series(SeriesKind::RatioGauge, ts, vals));
    }
}

fn histogram(rng: &mut SplitMix64, ts: &[i64], rate: f64, out: &mut Vec<MixSeries>) {
    let n = BUCKETS.len() + 1;
    let base = rng.range(0, 10_000) as f64;
    let mut counts: Vec<f64> = (1..=n)
        .map(|i| (base * i as f64 / n as f64).round())
        .collect();
    let mut sum = base * 0.3;
    let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(ts.len()); n + 2];
    for _ in ts {
        for _ in 0..rng.poisson(rate) {
            // Latencies log-uniform between 1 ms and 20 s.
            let secs = 0.001 * (rng.unit() * (20_000f64).ln()).exp();
            let first = BUCKETS
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(BUCKETS.len());
            for c in &mut counts[first..] {
                *c += 1.0;
            }
            sum += secs;
        }
        for (col, &c) in cols.iter_mut().zip(&counts) {
            col.push(c);
        }
        cols[n].push(counts[n - 1]);
        cols[n + 1].push(sum);
    }
    for (i, col) in cols.into_iter().enumerate() {
        let kind = match i {
            i if i < n => SeriesKind::HistogramBucket,
            i if i == n => SeriesKind::HistogramCount,
            _ => SeriesKind::HistogramSum,
        };
        out.push(series(kind, ts, col));
    }
}

/// Encoded size of a set of series cut into chunks of [`SAMPLES_PER_CHUNK`]:
/// returns (total chunk bytes including headers, number of samples).
pub fn encoded_size<'a>(series: impl IntoIterator<Item = &'a MixSeries>) -> (usize, usize) {
    let (mut bytes, mut samples) = (0, 0);
    for s in series {
        for chunk in s.samples.chunks(SAMPLES_PER_CHUNK) {
            let mut c = XorChunk::new();
            for smp in chunk {
                c.append(smp.t, smp.v);
            }
            bytes += c.bytes().len();
            samples += chunk.len();
        }
    }
    (bytes, samples)
}

/// Human-readable bytes/sample report: overall and per series kind.
pub fn size_report(mix: &[MixSeries]) -> String {
    let (b, n) = encoded_size(mix);
    let mut out = format!(
        "all: {:.3} bytes/sample ({b} bytes, {n} samples, {} series)\n",
        b as f64 / n as f64,
        mix.len()
    );
    let mut kinds: Vec<SeriesKind> = mix.iter().map(|s| s.kind).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        let sel: Vec<&MixSeries> = mix.iter().filter(|s| s.kind == k).collect();
        let (b, n) = encoded_size(sel.iter().copied());
        out += &format!(
            "  {k:?}: {:.3} bytes/sample ({} series)\n",
            b as f64 / n as f64,
            sel.len()
        );
    }
    out
}
