//! Push-path throughput: snappy decode + protobuf decode + validation + append
//! into a `MemStore`, for a 2000-series × 1-sample request (Prometheus's
//! default `max_samples_per_send`), each iteration at a fresh timestamp.
//!
//! Run: `cargo bench -p aion-distributor --bench push`

use aion_distributor::{remote_write, Distributor, DistributorConfig};
use aion_model::memstore::MemStore;
use aion_model::TenantId;
use aion_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prometheus_client::registry::Registry;
use prost::Message;
use std::sync::Arc;

const SERIES: usize = 2000;

fn request(t: i64) -> WriteRequest {
    let timeseries = (0..SERIES)
        .map(|i| TimeSeries {
            labels: [
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i % 64).to_string()),
                ("instance", format!("host-{}:9100", i / 64)),
                ("job", "node".to_string()),
                ("mode", "user".to_string()),
            ]
            .into_iter()
            .map(|(n, v)| Label { name: n.to_string(), value: v })
            .collect(),
            samples: vec![Sample { value: i as f64, timestamp: t }],
            ..Default::default()
        })
        .collect();
    WriteRequest { timeseries, ..Default::default() }
}

fn bench_push(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
    let d = Distributor::new(DistributorConfig::default(), Arc::new(MemStore::new()), &mut Registry::default())
        .expect("default config is valid");
    let body = snap::raw::Encoder::new().compress_vec(&request(0).encode_to_vec()).expect("snappy");
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("decode_2000_series", |b| {
        b.iter(|| remote_write::decode(&body, 100 << 20).expect("decodes"));
    });
    let mut t = 0i64;
    g.bench_function("decode_validate_append_2000_series", |b| {
        b.iter(|| {
            t += 1000;
            let mut req = remote_write::decode(&body, 100 << 20).expect("decodes");
            req.timeseries.iter_mut().for_each(|s| s.samples[0].timestamp = t);
            rt.block_on(d.push(TenantId::anonymous(), req)).expect("accepted");
        });
    });
    g.finish();
}

criterion_group!(benches, bench_push);
criterion_main!(benches);
