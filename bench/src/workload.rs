//! The benchmark's data: N active series scraped every 15 s for a number of
//! steps, cut into remote-write 1.0 requests of `batch` series × 1 sample the
//! way Prometheus's queue manager sends them, encoded and snappy-compressed
//! once up front so that sending costs the generator almost nothing.
//!
//! Series look like a fleet of exporters: `metrics_per_target` metric names per
//! `instance`, labels `__name__`, `env`, `instance`, `job`, `region` (sorted, as
//! the spec requires). Values: a quarter integer counters, a quarter float
//! counters, a quarter integer gauges (bytes-like), a quarter float gauges
//! (ratios) — so every target's float compression sees a realistic mix.

use aion_proto::prometheus::{Label, Sample, TimeSeries};
use bytes::Bytes;
use prost::Message;

/// Distinct metric names per scrape target (`instance`).
pub const METRICS_PER_TARGET: usize = 100;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Active series.
    pub series: usize,
    /// Scrape steps (samples per series).
    pub steps: usize,
    /// Series per request.
    pub batch: usize,
    /// Milliseconds between steps.
    pub interval_ms: i64,
    /// Timestamp of the first step, in ms since the epoch.
    pub start_ms: i64,
}

impl WorkloadConfig {
    /// Total samples.
    pub fn samples(&self) -> usize {
        self.series * self.steps
    }

    /// Requests per step.
    pub fn batches(&self) -> usize {
        self.series.div_ceil(self.batch.max(1))
    }
}

/// One pre-encoded request body.
#[derive(Debug, Clone)]
pub struct Body {
    /// Snappy-compressed `WriteRequest`.
    pub data: Bytes,
    /// Samples it carries.
    pub samples: usize,
}

/// Every body, step-major: `steps[s][b]` is batch `b` of step `s`. Batch `b`
/// always holds the same series, so sending a batch's steps in order on one
/// connection keeps every series in order.
#[derive(Debug)]
pub struct Workload {
    /// What was generated.
    pub config: WorkloadConfig,
    /// The bodies.
    pub steps: Vec<Vec<Body>>,
    /// Sum of the compressed body sizes.
    pub compressed_bytes: usize,
    /// Sum of the uncompressed protobuf sizes.
    pub raw_bytes: usize,
}

impl Workload {
    /// Timestamp of the last step, ms.
    pub fn last_ms(&self) -> i64 {
        self.config.start_ms + self.config.interval_ms * (self.config.steps.max(1) as i64 - 1)
    }
}

/// SplitMix64: a deterministic hash for per-series parameters and noise.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The sorted label set of series `i`.
pub fn series_labels(i: usize) -> Vec<Label> {
    let (target, metric) = (i / METRICS_PER_TARGET, i % METRICS_PER_TARGET);
    let name = match metric % 4 {
        0 | 1 => format!("bench_requests_{metric}_total"),
        _ => format!("bench_gauge_{metric}"),
    };
    let instance = format!(
        "10.{}.{}.{}:9100",
        (target >> 16) & 255,
        (target >> 8) & 255,
        target & 255
    );
    let l = |name: &str, value: String| Label {
        name: name.to_string(),
        value,
    };
    vec![
        l("__name__", name),
        l(
            "env",
            if target % 5 == 0 {
                "staging".into()
            } else {
                "prod".into()
            },
        ),
        l("instance", instance),
        l("job", format!("bench_job_{}", target % 10)),
        l("region", format!("region-{}", target % 3)),
    ]
}

/// The value of series `i` at step `step`.
pub fn series_value(i: usize, step: usize) -> f64 {
    let h = mix(i as u64);
    let noise = mix(h ^ step as u64);
    match (i % METRICS_PER_TARGET) % 4 {
        // Integer counter: base plus a per-series rate with jitter.
        // The rate (>= 5) exceeds the jitter (< 5), so it never decreases.
        0 => ((h % 10_000) + step as u64 * (h % 50 + 5) + noise % 5) as f64,
        // Float counter (seconds-like).
        1 => {
            (h % 1000) as f64 * 0.25
                + step as f64 * ((h % 97) as f64 * 0.013 + 0.01)
                + (noise % 100) as f64 * 1e-4
        }
        // Integer gauge (bytes-like), wandering around a base.
        2 => ((h % (1 << 30)) + (noise % 4096) * 4096) as f64,
        // Float gauge in [0, 1).
        _ => (noise >> 11) as f64 / (1u64 << 53) as f64,
    }
}

/// Builds every body. Labels are protobuf-encoded once per series; each
/// request concatenates them with the step's sample (protobuf merges the two
/// halves of a `TimeSeries`), so building 2M samples takes a second or two.
pub fn build(cfg: WorkloadConfig) -> Workload {
    let labels: Vec<Vec<u8>> = (0..cfg.series)
        .map(|i| {
            TimeSeries {
                labels: series_labels(i),
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(cfg.steps.max(1));
    let mut steps: Vec<Vec<Body>> = (0..cfg.steps).map(|_| Vec::new()).collect();
    std::thread::scope(|scope| {
        for (t, chunk) in steps
            .chunks_mut(cfg.steps.div_ceil(threads).max(1))
            .enumerate()
        {
            let labels = &labels;
            let first_step = t * cfg.steps.div_ceil(threads).max(1);
            scope.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    *slot = build_step(&cfg, labels, first_step + k);
                }
            });
        }
    });
    let compressed_bytes = steps.iter().flatten().map(|b| b.data.len()).sum();
    let raw_bytes = raw_size(&cfg, &labels);
    Workload {
        config: cfg,
        steps,
        compressed_bytes,
        raw_bytes,
    }
}

fn raw_size(cfg: &WorkloadConfig, labels: &[Vec<u8>]) -> usize {
    let per_step: usize = labels.iter().map(|l| l.len() + 22).sum();
    per_step * cfg.steps
}

fn build_step(cfg: &WorkloadConfig, labels: &[Vec<u8>], step: usize) -> Vec<Body> {
    let ts = cfg.start_ms + cfg.interval_ms * step as i64;
    let batch = cfg.batch.max(1);
    let mut out = Vec::with_capacity(cfg.batches());
    let mut raw = Vec::new();
    let mut series_buf = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    for first in (0..cfg.series).step_by(batch) {
        raw.clear();
        let last = (first + batch).min(cfg.series);
        for (i, label_bytes) in labels.iter().enumerate().take(last).skip(first) {
            series_buf.clear();
            series_buf.extend_from_slice(label_bytes);
            let sample = TimeSeries {
                samples: vec![Sample {
                    value: series_value(i, step),
                    timestamp: ts,
                }],
                ..Default::default()
            };
            sample
                .encode(&mut series_buf)
                .expect("BUG: encoding into a Vec cannot run out of space");
            // WriteRequest field 1 (timeseries), length-delimited.
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut raw);
            prost::encoding::encode_varint(series_buf.len() as u64, &mut raw);
            raw.extend_from_slice(&series_buf);
        }
        let data = encoder
            .compress_vec(&raw)
            .expect("BUG: snappy compression into a Vec cannot fail");
        out.push(Body {
            data: Bytes::from(data),
            samples: last - first,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_proto::prometheus::WriteRequest;

    fn cfg() -> WorkloadConfig {
        WorkloadConfig {
            series: 250,
            steps: 3,
            batch: 100,
            interval_ms: 15_000,
            start_ms: 1_000_000,
        }
    }

    #[test]
    fn bodies_decode_to_the_expected_series_and_samples() {
        let w = build(cfg());
        assert_eq!(w.steps.len(), 3);
        assert_eq!(w.steps[0].len(), 3, "250 series in batches of 100");
        assert_eq!(
            w.steps.iter().flatten().map(|b| b.samples).sum::<usize>(),
            750
        );
        for (s, step) in w.steps.iter().enumerate() {
            let mut seen = 0;
            for body in step {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&body.data)
                    .expect("snappy");
                let req = WriteRequest::decode(raw.as_slice()).expect("protobuf");
                assert_eq!(req.timeseries.len(), body.samples);
                for ts in &req.timeseries {
                    assert_eq!(
                        ts.labels,
                        series_labels(seen),
                        "batches hold consecutive series"
                    );
                    assert_eq!(ts.samples.len(), 1);
                    assert_eq!(ts.samples[0].timestamp, 1_000_000 + 15_000 * s as i64);
                    assert_eq!(ts.samples[0].value, series_value(seen, s));
                    seen += 1;
                }
            }
            assert_eq!(seen, 250);
        }
        assert_eq!(w.last_ms(), 1_030_000);
    }

    #[test]
    fn labels_are_sorted_and_unique_per_series() {
        let mut all = std::collections::HashSet::new();
        for i in 0..2000 {
            let l = series_labels(i);
            assert!(
                l.windows(2).all(|w| w[0].name < w[1].name),
                "sorted names for series {i}"
            );
            assert!(
                all.insert(format!("{l:?}")),
                "series {i} duplicates another"
            );
        }
    }

    #[test]
    fn counters_never_decrease() {
        for i in (0..400).filter(|i| (i % METRICS_PER_TARGET) % 4 < 2) {
            for s in 1..30 {
                assert!(
                    series_value(i, s) >= series_value(i, s - 1),
                    "series {i} step {s}"
                );
            }
        }
    }
}
