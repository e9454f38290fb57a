//! The query benchmark's data: a fleet of `targets` exporters scraped every
//! 60 s for 24 h, shaped like what dashboards query — request counters by
//! handler and code, classic latency histograms (`_bucket` with `le`), CPU
//! seconds by mode and a memory gauge. Encoded once into remote-write 1.0
//! bodies, one list per scrape step, so every target gets identical bytes.

use crate::workload::Body;
use aion_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use bytes::Bytes;
use prost::Message;

/// Handlers per target.
const HANDLERS: [&str; 4] = ["/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/metrics"];
/// Status codes per handler.
const CODES: [&str; 3] = ["200", "400", "500"];
/// Histogram bucket bounds (seconds); `+Inf` is added.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// CPU modes.
const MODES: [&str; 4] = ["user", "system", "idle", "iowait"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct DataConfig {
    /// Scrape targets (each ≈ 70 series).
    pub targets: usize,
    /// Scrape steps.
    pub steps: usize,
    /// Milliseconds between steps.
    pub interval_ms: i64,
    /// First timestamp, ms.
    pub start_ms: i64,
    /// Series per request.
    pub batch: usize,
}

/// One series: its labels and how its value evolves.
struct SeriesDef {
    labels: Vec<Label>,
    kind: ValueKind,
}

enum ValueKind {
    /// Counter growing by `rate` per step (± jitter below `rate`).
    Counter { seed: u64, rate: f64 },
    /// Cumulative histogram bucket: `share` of the handler's requests.
    Bucket { seed: u64, rate: f64, share: f64 },
    /// Gauge around `base`.
    Gauge { seed: u64, base: f64 },
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn label(name: &str, value: impl Into<String>) -> Label {
    Label { name: name.into(), value: value.into() }
}

/// Sorted labels: name, then target labels, then extra pairs.
fn labels_of(name: &str, t: usize, extra: &[(&str, String)]) -> Vec<Label> {
    let mut l = vec![
        label("__name__", name),
        label("env", if t.is_multiple_of(5) { "staging" } else { "prod" }),
        label("instance", format!("10.1.{}.{}:9100", (t >> 8) & 255, t & 255)),
        label("job", format!("svc-{}", t % 8)),
        label("region", format!("region-{}", t % 3)),
    ];
    l.extend(extra.iter().map(|(n, v)| label(n, v.clone())));
    l.sort_by(|a, b| a.name.cmp(&b.name));
    l
}

fn series_defs(targets: usize) -> Vec<SeriesDef> {
    let mut out = Vec::new();
    for t in 0..targets {
        for (h, handler) in HANDLERS.iter().enumerate() {
            let seed = mix((t * 31 + h) as u64);
            for (c, code) in CODES.iter().enumerate() {
                let rate = [50.0, 3.0, 0.5][c] * (1.0 + (seed % 7) as f64);
                out.push(SeriesDef {
                    labels: labels_of("bench_http_requests_total", t, &[("code", code.to_string()), ("handler", handler.to_string())]),
                    kind: ValueKind::Counter { seed: seed ^ c as u64, rate },
                });
            }
            let rate = 40.0 * (1.0 + (seed % 5) as f64);
            let n = BUCKETS.len() + 1;
            for b in 0..n {
                let le = BUCKETS.get(b).map(|v| v.to_string()).unwrap_or_else(|| "+Inf".into());
                let share = ((b + 1) as f64 / n as f64).powf(0.5 + (seed % 3) as f64 * 0.2);
                out.push(SeriesDef {
                    labels: labels_of("bench_http_request_duration_seconds_bucket", t, &[("handler", handler.to_string()), ("le", le)]),
                    kind: ValueKind::Bucket { seed, rate, share },
                });
            }
        }
        for cpu in 0..2 {
            for (m, mode) in MODES.iter().enumerate() {
                let rate = [12.0, 5.0, 40.0, 1.5][m];
                out.push(SeriesDef {
                    labels: labels_of("bench_cpu_seconds_total", t, &[("cpu", cpu.to_string()), ("mode", mode.to_string())]),
                    kind: ValueKind::Counter { seed: mix((t * 8 + cpu * 4 + m) as u64), rate },
                });
            }
        }
        out.push(SeriesDef {
            labels: labels_of("bench_memory_bytes", t, &[]),
            kind: ValueKind::Gauge { seed: mix(t as u64 ^ 0xABCD), base: ((t % 16) as f64 + 1.0) * 2.5e8 },
        });
    }
    out
}

fn value(kind: &ValueKind, step: usize) -> f64 {
    let s = step as f64;
    match *kind {
        ValueKind::Counter { seed, rate } => (s * rate + (mix(seed ^ step as u64) % 1000) as f64 * rate / 1000.0).floor(),
        // Jitter is the same for every bucket of a handler, so buckets stay cumulative.
        ValueKind::Bucket { seed, rate, share } => ((s * rate + (mix(seed ^ step as u64) % 1000) as f64 * rate / 1000.0) * share).floor(),
        ValueKind::Gauge { seed, base } => base + (mix(seed ^ step as u64) % 1_000_000) as f64 * 64.0,
    }
}

/// The encoded bodies, `steps[s]` = the requests of scrape step `s`, and the series count.
pub fn build(cfg: DataConfig) -> (Vec<Vec<Body>>, usize) {
    let defs = series_defs(cfg.targets);
    let mut encoder = snap::raw::Encoder::new();
    let steps = (0..cfg.steps)
        .map(|step| {
            let ts = cfg.start_ms + cfg.interval_ms * step as i64;
            defs.chunks(cfg.batch.max(1))
                .map(|chunk| {
                    let req = WriteRequest {
                        timeseries: chunk
                            .iter()
                            .map(|d| TimeSeries {
                                labels: d.labels.clone(),
                                samples: vec![Sample { value: value(&d.kind, step), timestamp: ts }],
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    };
                    let data = encoder
                        .compress_vec(&req.encode_to_vec())
                        .expect("BUG: snappy compression into a Vec cannot fail");
                    Body { data: Bytes::from(data), samples: chunk.len() }
                })
                .collect()
        })
        .collect();
    (steps, defs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_counters_monotonic() {
        let defs = series_defs(3);
        assert_eq!(defs.len(), 3 * (4 * 3 + 4 * 11 + 8 + 1));
        for step in 1..50 {
            for d in &defs {
                if !matches!(d.kind, ValueKind::Gauge { .. }) {
                    assert!(value(&d.kind, step) >= value(&d.kind, step - 1));
                }
            }
            // Buckets of one handler: non-decreasing in le order.
            let b: Vec<f64> = defs
                .iter()
                .filter(|d| d.labels.iter().any(|l| l.value == "bench_http_request_duration_seconds_bucket"))
                .take(11)
                .map(|d| value(&d.kind, step))
                .collect();
            assert!(b.windows(2).all(|w| w[0] <= w[1]), "{b:?}");
        }
    }

    #[test]
    fn labels_sorted() {
        for d in series_defs(2) {
            assert!(d.labels.windows(2).all(|w| w[0].name < w[1].name));
        }
    }
}
