//! PromQL engine benchmarks over an in-memory store.
//!
//! Run: `CARGO_TARGET_DIR=/root/.cache/aion/target-engine cargo bench -p aion-querier --bench engine --profile release`
//!
//! - `sum by (job) (rate(x[5m]))`: 10k counter series × 1h at 15s, range query
//!   over the hour at a 15s step (throughput = samples stored); plus
//!   `x / on(job, instance) x` over the same data (one-to-one matching).
//! - `histogram_quantile(0.99, sum by (le) (rate(b[5m])))`: 100 histograms × 12
//!   classic buckets × 1h at 15s, same range query.

use aion_model::memstore::MemStore;
use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
use aion_model::{Labels, Sample, TenantId};
use aion_querier::engine::{Engine, EngineOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const HOUR_MS: i64 = 3_600_000;
const SCRAPE_MS: i64 = 15_000;

fn samples(seed: u64) -> Vec<Sample> {
    let mut v = 0.0;
    (0..=HOUR_MS / SCRAPE_MS)
        .map(|i| {
            v += ((seed + i as u64) % 7) as f64;
            Sample::new(i * SCRAPE_MS, v)
        })
        .collect()
}

fn load(store: &MemStore, series: Vec<Labels>) -> u64 {
    let mut n = 0;
    let batch = WriteBatch {
        tenant: TenantId::anonymous(),
        series: series
            .into_iter()
            .enumerate()
            .map(|(i, labels)| {
                let samples = samples(i as u64);
                n += samples.len() as u64;
                SeriesSamples { labels, samples }
            })
            .collect(),
    };
    store.append(batch).expect("BUG: bench data must load");
    n
}

fn bench_rate(c: &mut Criterion) {
    let store = MemStore::new();
    let series = (0..10_000)
        .map(|i| {
            let job = format!("job{}", i % 10);
            let inst = format!("inst{i}");
            Labels::from_pairs([("__name__", "x"), ("job", job.as_str()), ("instance", inst.as_str())])
        })
        .collect();
    let n = load(&store, series);
    let engine = Engine::new(EngineOptions::default());
    let tenant = TenantId::anonymous();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("sum_by_job_rate_10k_series_1h_15s", |b| {
        b.iter(|| {
            engine
                .range_query(&store, &tenant, "sum by (job) (rate(x[5m]))", 0, HOUR_MS, SCRAPE_MS)
                .expect("BUG: bench query must run")
        })
    });
    g.bench_function("binary_one_to_one_10k_series_1h_15s", |b| {
        b.iter(|| {
            engine
                .range_query(&store, &tenant, "x / on(job, instance) x", 0, HOUR_MS, SCRAPE_MS)
                .expect("BUG: bench query must run")
        })
    });
    g.finish();
}

fn bench_histogram(c: &mut Criterion) {
    let store = MemStore::new();
    let les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let mut series = Vec::new();
    for i in 0..100 {
        let inst = format!("inst{i}");
        for le in les {
            series.push(Labels::from_pairs([("__name__", "b"), ("instance", inst.as_str()), ("le", le)]));
        }
    }
    let n = load(&store, series);
    let engine = Engine::new(EngineOptions::default());
    let tenant = TenantId::anonymous();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("histogram_quantile_sum_by_le_rate_1200_series_1h_15s", |b| {
        b.iter(|| {
            engine
                .range_query(
                    &store,
                    &tenant,
                    "histogram_quantile(0.99, sum by (le) (rate(b[5m])))",
                    0,
                    HOUR_MS,
                    SCRAPE_MS,
                )
                .expect("BUG: bench query must run")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_rate, bench_histogram);
criterion_main!(benches);
