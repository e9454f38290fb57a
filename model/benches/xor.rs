//! XOR chunk codec: encode and decode throughput on a realistic scrape mix,
//! plus the mix's encoded size in bytes per sample (printed before the runs).
//!
//! Run: `CARGO_TARGET_DIR=/root/.cache/aion/target-model cargo bench -p aion-model --bench xor`

use aion_model::chunk::testdata::{
    realistic_mix, size_report, Jitter, MixSeries, SAMPLES_PER_CHUNK,
};
use aion_model::chunk::{decode_chunks_range_into, XorChunk};
use aion_model::Sample;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// Ten targets of ~82 series each, two chunks of 120 samples per series.
fn mix(jitter: Jitter) -> Vec<MixSeries> {
    realistic_mix(42, 10, 2 * SAMPLES_PER_CHUNK, jitter)
}

fn encode_all(mix: &[MixSeries]) -> Vec<XorChunk> {
    let mut out = Vec::new();
    for s in mix {
        for part in s.samples.chunks(SAMPLES_PER_CHUNK) {
            let mut c = XorChunk::new();
            for smp in part {
                c.append(smp.t, smp.v);
            }
            out.push(c);
        }
    }
    out
}

/// CPU time this thread has run, from Linux's schedstat (None elsewhere).
/// The bench machine is often shared, so wall-clock throughput understates
/// the codec; CPU ns/sample is the steadier number.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn cpu_ns_per_sample(samples: usize, reps: usize, mut f: impl FnMut()) -> Option<f64> {
    let start = thread_cpu_ns()?;
    for _ in 0..reps {
        f();
    }
    Some((thread_cpu_ns()? - start) as f64 / (samples * reps) as f64)
}

fn decode_sum(chunks: &[XorChunk]) -> u64 {
    let mut acc = 0u64;
    for c in chunks {
        for s in c.iter().flatten() {
            acc = acc.wrapping_add(s.t as u64 ^ s.v.to_bits());
        }
    }
    acc
}

/// The query path's decode: every chunk into a reused buffer, in one loop.
fn decode_range_all(chunks: &[XorChunk], buf: &mut Vec<Sample>) -> usize {
    let mut n = 0;
    for c in chunks {
        buf.clear();
        if c.iter().decode_range_into(i64::MIN, i64::MAX, buf).is_ok() {
            n += buf.len();
        }
    }
    n
}

/// The same, two chunks at a time (each series' chunks in one call).
fn decode_range_pairs(chunks: &[XorChunk], buf: &mut Vec<Sample>) -> usize {
    let mut n = 0;
    for pair in chunks.chunks(2) {
        buf.clear();
        if decode_chunks_range_into(pair.iter().map(XorChunk::bytes), i64::MIN, i64::MAX, buf).is_ok() {
            n += buf.len();
        }
    }
    n
}

fn bench_xor(c: &mut Criterion) {
    let realistic = mix(Jitter::Realistic);
    let harsh = mix(Jitter::Uniform(3));
    println!(
        "realistic jitter (0-5 ms scheduling delay):\n{}",
        size_report(&realistic)
    );
    println!("harsh jitter (uniform ±3 ms):\n{}", size_report(&harsh));

    let samples: usize = realistic.iter().map(|s| s.samples.len()).sum();
    let chunks = encode_all(&realistic);
    let enc = cpu_ns_per_sample(samples, 50, || {
        black_box(encode_all(&realistic));
    });
    let dec = cpu_ns_per_sample(samples, 50, || {
        black_box(decode_sum(&chunks));
    });
    let mut buf = Vec::new();
    let range = cpu_ns_per_sample(samples, 50, || {
        black_box(decode_range_all(&chunks, &mut buf));
    });
    // Timestamps at exact intervals (remote-write replays, synthetic loads):
    // every delta-of-delta is zero.
    let regular = encode_all(&mix(Jitter::Uniform(0)));
    let range_regular = cpu_ns_per_sample(samples, 50, || {
        black_box(decode_range_all(&regular, &mut buf));
    });
    let pairs = cpu_ns_per_sample(samples, 50, || {
        black_box(decode_range_pairs(&chunks, &mut buf));
    });
    let pairs_regular = cpu_ns_per_sample(samples, 50, || {
        black_box(decode_range_pairs(&regular, &mut buf));
    });
    if let (Some(enc), Some(dec), Some(range), Some(regular), Some(pairs), Some(pairs_regular)) =
        (enc, dec, range, range_regular, pairs, pairs_regular)
    {
        println!(
            "CPU time: encode {enc:.1} ns/sample ({:.0} M samples/s), decode {dec:.1} ns/sample ({:.0} M samples/s), \
             range decode {range:.1} ns/sample ({regular:.1} with exact intervals), \
             two chunks at a time {pairs:.1} ({pairs_regular:.1})\n",
            1e3 / enc,
            1e3 / dec
        );
    }
    let mut g = c.benchmark_group("xor");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("encode_mix", |b| {
        b.iter(|| encode_all(black_box(&realistic)))
    });
    g.bench_function("decode_mix_iter", |b| {
        b.iter(|| decode_sum(black_box(&chunks)))
    });
    g.bench_function("decode_mix_range_into", |b| {
        let mut buf = Vec::new();
        b.iter(|| decode_range_all(black_box(&chunks), &mut buf))
    });
    g.bench_function("decode_mix_decode_all", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| XorChunk::decode_all(black_box(c.bytes())).map_or(0, |v| v.len()))
                .sum::<usize>()
        })
    });
    g.bench_function("from_bytes_mix", |b| {
        b.iter(|| {
            chunks
                .iter()
                .filter(|c| XorChunk::from_bytes(c.bytes().to_vec()).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_xor);
criterion_main!(benches);
