//! The query benchmark's dashboard queries (`bench/src/query/queries.rs`)
//! over the same shape of data — a fleet of 50 exporters, 3250 series, 24 h
//! at a 1 m scrape — held as XOR chunks of 120 samples in memory, so the
//! engine's whole range-query path runs (selection left encoded, decode,
//! windows, aggregation) without RocksDB or HTTP. Range queries over the
//! 24 h at a 1 m step, as `aion-bench query` sends them.
//!
//! Run: `CARGO_TARGET_DIR=/root/.cache/aion/target cargo bench -p aion-querier --bench dashboard --profile dev`
//! (add `-- <name>` for one query). Throughput = samples stored. With
//! `DASHBOARD_CPU=1`, prints CPU ms per query instead (steadier on a busy
//! machine); with `DASHBOARD_EAGER=1` the store decodes in `select_chunks`.

use aion_model::chunk::{ChunkSeries, XorChunk};
use aion_model::matcher::matches_all;
use aion_model::storage::{Queryable, SelectHints, SelectedSeries, Series, StorageError};
use aion_model::{Labels, Matcher, Sample, TenantId};
use aion_querier::engine::{Engine, EngineOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::BTreeSet;
use std::time::Duration;

const STEP_MS: i64 = 60_000;
const STEPS: i64 = 24 * 60;
const FLEET: usize = 50;
const CHUNK_SAMPLES: usize = 120;

/// Series as XOR chunks, sorted by labels.
struct ChunkStore {
    series: Vec<(Labels, Vec<Vec<u8>>)>,
    /// Decode in `select_chunks` too (`DASHBOARD_EAGER=1`): the path of a
    /// storage that does not leave series encoded, for comparison.
    eager: bool,
}

impl ChunkStore {
    fn matching<'a>(
        &'a self,
        hints: &'a SelectHints,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = ChunkSeries> + 'a {
        self.series.iter().filter(move |(l, _)| matches_all(matchers, l)).map(move |(l, chunks)| {
            let mut c = ChunkSeries::new(l.clone(), hints.start, hints.end);
            chunks.iter().for_each(|b| c.push_chunk(b));
            c
        })
    }
}

impl Queryable for ChunkStore {
    fn select(&self, _: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.select_chunks(&TenantId::anonymous(), hints, matchers)?
            .into_iter()
            .map(SelectedSeries::into_series)
            .filter(|s| s.as_ref().map_or(true, |s| !s.samples.is_empty()))
            .collect()
    }

    fn select_chunks(
        &self,
        _: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>, StorageError> {
        let all = self.matching(hints, matchers).map(SelectedSeries::Encoded);
        if self.eager {
            return all.map(|s| s.into_series().map(SelectedSeries::Decoded)).collect();
        }
        Ok(all.collect())
    }

    fn label_names(&self, _: &TenantId, _: &SelectHints, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let names: BTreeSet<&str> = self.series.iter().flat_map(|(l, _)| l.iter().map(|p| p.name.as_str())).collect();
        Ok(names.into_iter().map(str::to_string).collect())
    }

    fn label_values(
        &self,
        _: &TenantId,
        name: &str,
        _: &SelectHints,
        _: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let values: BTreeSet<&str> = self.series.iter().filter_map(|(l, _)| l.get(name)).collect();
        Ok(values.into_iter().map(str::to_string).collect())
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A series' value at scrape `i`.
type ValueFn = Box<dyn Fn(i64) -> f64>;

/// Label sets and value functions shaped like `bench/src/query/data.rs`.
fn fleet() -> Vec<(Labels, ValueFn)> {
    let mut out: Vec<(Labels, ValueFn)> = Vec::new();
    let les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
    for t in 0..FLEET {
        let base = |name: &str| {
            vec![
                ("__name__".to_string(), name.to_string()),
                ("env".into(), if t % 5 == 0 { "staging" } else { "prod" }.into()),
                ("instance".into(), format!("10.1.{}.{}:9100", (t >> 8) & 255, t & 255)),
                ("job".into(), format!("svc-{}", t % 8)),
                ("region".into(), format!("region-{}", t % 3)),
            ]
        };
        for (h, handler) in ["/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/metrics"].iter().enumerate() {
            let seed = mix((t * 31 + h) as u64);
            for (c, code) in ["200", "400", "500"].iter().enumerate() {
                let rate = [50.0, 3.0, 0.5][c] * (1.0 + (seed % 7) as f64);
                let mut l = base("bench_http_requests_total");
                l.push(("code".into(), code.to_string()));
                l.push(("handler".into(), handler.to_string()));
                let s = seed ^ c as u64;
                out.push((Labels::from_pairs(l), Box::new(move |i| counter(s, rate, i))));
            }
            let rate = 40.0 * (1.0 + (seed % 5) as f64);
            for (b, le) in les.iter().enumerate() {
                let share = ((b + 1) as f64 / les.len() as f64).powf(0.5 + (seed % 3) as f64 * 0.2);
                let mut l = base("bench_http_request_duration_seconds_bucket");
                l.push(("handler".into(), handler.to_string()));
                l.push(("le".into(), le.to_string()));
                out.push((Labels::from_pairs(l), Box::new(move |i| (counter(seed, rate, i) * share).floor())));
            }
        }
        for cpu in 0..2 {
            for (m, mode) in ["user", "system", "idle", "iowait"].iter().enumerate() {
                let mut l = base("bench_cpu_seconds_total");
                l.push(("cpu".into(), cpu.to_string()));
                l.push(("mode".into(), mode.to_string()));
                let (s, rate) = (mix((t * 8 + cpu * 4 + m) as u64), [12.0, 5.0, 40.0, 1.5][m]);
                out.push((Labels::from_pairs(l), Box::new(move |i| counter(s, rate, i))));
            }
        }
        let (s, base_v) = (mix(t as u64 ^ 0xABCD), ((t % 16) as f64 + 1.0) * 2.5e8);
        out.push((Labels::from_pairs(base("bench_memory_bytes")), Box::new(move |i| base_v + (mix(s ^ i as u64) % 1_000_000) as f64 * 64.0)));
    }
    out
}

fn counter(seed: u64, rate: f64, i: i64) -> f64 {
    (i as f64 * rate + (mix(seed ^ i as u64) % 1000) as f64 * rate / 1000.0).floor()
}

fn store() -> (ChunkStore, u64) {
    let mut series: Vec<(Labels, Vec<Vec<u8>>)> = fleet()
        .into_iter()
        .map(|(labels, value)| {
            let samples: Vec<Sample> = (0..STEPS).map(|i| Sample::new(i * STEP_MS, value(i))).collect();
            let chunks = samples
                .chunks(CHUNK_SAMPLES)
                .map(|part| {
                    let mut c = XorChunk::new();
                    part.iter().for_each(|s| c.append(s.t, s.v));
                    c.into_bytes()
                })
                .collect();
            (labels, chunks)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let n = series.len() as u64 * STEPS as u64;
    let eager = std::env::var_os("DASHBOARD_EAGER").is_some();
    (ChunkStore { series, eager }, n)
}

/// The range queries of `bench/src/query/queries.rs`.
const QUERIES: &[(&str, &str)] = &[
    ("sum_by_job_rate", r#"sum by (job) (rate(bench_http_requests_total[5m]))"#),
    (
        "error_ratio",
        r#"sum by (job) (rate(bench_http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(bench_http_requests_total[5m]))"#,
    ),
    (
        "p99_latency",
        r#"histogram_quantile(0.99, sum by (le, handler) (rate(bench_http_request_duration_seconds_bucket[5m])))"#,
    ),
    ("topk_cpu", r#"topk(5, sum by (instance) (rate(bench_cpu_seconds_total{mode!="idle"}[5m])))"#),
    ("regex_selector", r#"sum by (region) (rate(bench_http_requests_total{job=~"svc-[1-3]",handler=~".*query.*"}[5m]))"#),
    ("memory_avg_over_time", r#"avg by (region) (avg_over_time(bench_memory_bytes[10m]))"#),
];

/// CPU time of this process (user + system), ms, from `/proc/self/stat`
/// (Linux clock ticks of 10 ms); `None` elsewhere.
fn process_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) * 10)
}

/// Before criterion's wall-clock runs: CPU ms per query over a fixed number
/// of runs, which other processes on the machine disturb much less.
fn cpu_per_query(store: &ChunkStore, engine: &Engine, tenant: &TenantId) {
    const RUNS: u64 = 20;
    for (name, q) in QUERIES {
        let run = || engine.range_query(store, tenant, q, 0, (STEPS - 1) * STEP_MS, STEP_MS).expect("BUG: bench query must run");
        let series = run().value;
        let (cpu0, wall0) = (process_cpu_ms(), std::time::Instant::now());
        for _ in 0..RUNS {
            criterion::black_box(run());
        }
        let wall = wall0.elapsed().as_secs_f64() * 1000.0 / RUNS as f64;
        let cpu = match (cpu0, process_cpu_ms()) {
            (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / RUNS as f64),
            _ => "-".into(),
        };
        let n = match series {
            aion_querier::engine::Value::Matrix(m) => m.len(),
            _ => 0,
        };
        println!("CPU name={name} cpu_ms={cpu} wall_ms={wall:.1} series={n}");
    }
}

fn bench_dashboard(c: &mut Criterion) {
    let (store, n) = store();
    let engine = Engine::new(EngineOptions::default());
    let tenant = TenantId::anonymous();
    if std::env::var_os("DASHBOARD_CPU").is_some() {
        cpu_per_query(&store, &engine, &tenant);
        return;
    }
    let mut g = c.benchmark_group("dashboard");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(n));
    for (name, q) in QUERIES {
        g.bench_function(*name, |b| {
            b.iter(|| {
                engine
                    .range_query(&store, &tenant, q, 0, (STEPS - 1) * STEP_MS, STEP_MS)
                    .expect("BUG: bench query must run")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_dashboard);
criterion_main!(benches);
