//! Printing: a human table, one machine-readable `BENCH ...` line per target,
//! the ratios of the first target to each other one, and a per-thread CPU
//! breakdown.

use crate::measure::Measurement;
use std::fmt::Write;

const MIB: f64 = 1024.0 * 1024.0;

/// The human-readable table.
pub fn table(ms: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:>10} {:>6} {:>7} {:>11} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "target",
        "samples",
        "failed",
        "wall_s",
        "samples/s",
        "cpu_s",
        "cpu_ld_s",
        "samples/cpu",
        "cpu/Msmp",
        "peak_MiB",
        "B/series",
        "dB/series",
        "series"
    );
    for m in ms {
        let seen = m.series_seen.map_or("-".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:<17} {:>10} {:>6} {:>7.2} {:>11.0} {:>8.2} {:>8.2} {:>12.0} {:>9.2} {:>9.1} {:>9.0} {:>9.0} {:>8}",
            m.name,
            m.load.ok_samples,
            m.load.failed_requests,
            m.load.wall.as_secs_f64(),
            m.load.samples_per_sec(),
            m.cpu_total_s,
            m.cpu_load_s,
            m.samples_per_cpu_s(),
            m.cpu_s_per_msample(),
            m.peak_rss as f64 / MIB,
            m.rss_per_series(),
            m.rss_growth_per_series(),
            seen
        );
    }
    out
}

/// One `key=value` line per target, for scripts.
pub fn machine_line(m: &Measurement) -> String {
    format!(
        "BENCH target={} ok_samples={} failed_requests={} failed_samples={} unsent_samples={} wall_s={:.3} \
         samples_per_s={:.0} cpu_s={:.3} cpu_load_s={:.3} samples_per_cpu_s={:.0} cpu_s_per_msample={:.3} \
         idle_rss_bytes={} peak_rss_bytes={} rss_bytes_per_series={:.0} rss_growth_bytes_per_series={:.0} \
         series={} series_seen={} generator_cpu_s={:.3}",
        m.name,
        m.load.ok_samples,
        m.load.failed_requests,
        m.load.failed_samples,
        m.load.unsent_samples,
        m.load.wall.as_secs_f64(),
        m.load.samples_per_sec(),
        m.cpu_total_s,
        m.cpu_load_s,
        m.samples_per_cpu_s(),
        m.cpu_s_per_msample(),
        m.idle_rss,
        m.peak_rss,
        m.rss_per_series(),
        m.rss_growth_per_series(),
        m.series,
        m.series_seen.map_or("-".to_string(), |s| s.to_string()),
        m.generator_cpu_s
    )
}

/// Ratios of the first measurement to each other one (>1 means the first is
/// better for throughput and efficiency, and uses more memory for RSS).
pub fn ratios(ms: &[Measurement]) -> String {
    let mut out = String::new();
    let Some((first, rest)) = ms.split_first() else {
        return out;
    };
    for o in rest {
        let _ = writeln!(
            out,
            "RATIO {}/{}: samples_per_s={:.2} samples_per_cpu_s={:.2} peak_rss={:.2} rss_growth={:.2}",
            first.name,
            o.name,
            first.load.samples_per_sec() / o.load.samples_per_sec().max(1e-9),
            first.samples_per_cpu_s() / o.samples_per_cpu_s().max(1e-9),
            first.peak_rss as f64 / (o.peak_rss as f64).max(1.0),
            first.rss_growth_per_series() / o.rss_growth_per_series().max(1e-9),
        );
    }
    out
}

/// The top threads (by CPU seconds) of each target.
pub fn threads(ms: &[Measurement], top: usize) -> String {
    let mut out = String::new();
    for m in ms {
        let parts: Vec<String> = m
            .threads
            .iter()
            .take(top)
            .map(|(n, s)| format!("{n}={s:.2}s"))
            .collect();
        let _ = writeln!(out, "THREADS {}: {}", m.name, parts.join(" "));
    }
    out
}

/// Failures worth showing.
pub fn errors(ms: &[Measurement]) -> String {
    let mut out = String::new();
    for m in ms {
        if let Some(e) = &m.load.first_error {
            let _ = writeln!(out, "FIRST ERROR {}: {e}", m.name);
        }
        if m.load.unsent_samples > 0 {
            let _ = writeln!(
                out,
                "DEADLINE {}: {} samples not sent before the deadline",
                m.name, m.load.unsent_samples
            );
        }
        if let Some(seen) = m.series_seen.filter(|&s| s != m.series as u64) {
            let _ = writeln!(
                out,
                "VERIFY {}: query counted {seen} series, expected {}",
                m.name, m.series
            );
        }
    }
    out
}
