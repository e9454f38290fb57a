//! Printing: a human table, one machine-readable `BENCH ...` line per target,
//! the ratios of the first target to each other one (and of every other Aion
//! target to each non-Aion one), the goals, and a per-thread CPU
//! breakdown. A cluster target also gets an `<name> ingesters` row: the same
//! run with only its ingesters' CPU and summed RSS.

use crate::measure::Measurement;
use std::fmt::Write;

const MIB: f64 = 1024.0 * 1024.0;

/// Each measurement followed by its ingesters-only view, if it has one.
fn rows(ms: &[Measurement]) -> Vec<Measurement> {
    ms.iter()
        .flat_map(|m| std::iter::once(m.clone()).chain(m.ingesters_view()))
        .collect()
}

fn is_aion(m: &Measurement) -> bool {
    m.name.starts_with("aion")
}

/// The human-readable table.
pub fn table(ms: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>6} {:>7} {:>11} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8}",
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
    for m in &rows(ms) {
        let seen = m.series_seen.map_or("-".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>6} {:>7.2} {:>11.0} {:>8.2} {:>8.2} {:>12.0} {:>9.2} {:>9.1} {:>9.0} {:>9.0} {:>8}",
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

/// One `key=value` line per target, for scripts (cluster targets add `ingester_*` fields).
pub fn machine_line(m: &Measurement) -> String {
    let mut line = format!(
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
    );
    if let (Some(g), Some(v)) = (m.ingesters, m.ingesters_view()) {
        let _ = write!(
            line,
            " ingesters={} ingester_cpu_s={:.3} ingester_cpu_load_s={:.3} ingester_samples_per_cpu_s={:.0} \
             ingester_idle_rss_bytes={} ingester_peak_rss_bytes={} ingester_rss_bytes_per_series={:.0}",
            g.processes,
            g.cpu_total_s,
            g.cpu_load_s,
            v.samples_per_cpu_s(),
            g.idle_rss,
            g.peak_rss,
            v.rss_per_series()
        );
    }
    line
}

/// Ratios of the first row to each other one, then of every other Aion row
/// (another Aion target, a cluster's ingesters) to each non-Aion row. >1 means
/// the numerator is better for throughput and efficiency, and uses more memory
/// for RSS.
pub fn ratios(ms: &[Measurement]) -> String {
    let rows = rows(ms);
    let mut out = String::new();
    let Some((first, rest)) = rows.split_first() else {
        return out;
    };
    let own_view = format!("{} ", first.name);
    for o in rest.iter().filter(|o| !o.name.starts_with(&own_view)) {
        ratio_line(&mut out, first, o);
    }
    for a in rest.iter().filter(|m| is_aion(m)) {
        for o in rows.iter().filter(|m| !is_aion(m)) {
            ratio_line(&mut out, a, o);
        }
    }
    out
}

fn ratio_line(out: &mut String, a: &Measurement, o: &Measurement) {
    let _ = writeln!(
        out,
        "RATIO {}/{}: samples_per_s={:.2} samples_per_cpu_s={:.2} peak_rss={:.2} rss_growth={:.2}",
        a.name,
        o.name,
        a.load.samples_per_sec() / o.load.samples_per_sec().max(1e-9),
        a.samples_per_cpu_s() / o.samples_per_cpu_s().max(1e-9),
        a.peak_rss as f64 / (o.peak_rss as f64).max(1.0),
        a.rss_growth_per_series() / o.rss_growth_per_series().max(1e-9),
    );
}

/// Samples per CPU-second of a cluster's ingesters (summed) that the issue asks
/// for, as a fraction of VictoriaMetrics' (single node).
pub const RF3_GOAL_VS_VM: f64 = 0.5;

/// `GOAL` lines: each cluster target's ingesters-only samples per CPU-second
/// against VictoriaMetrics', and whether it meets [`RF3_GOAL_VS_VM`].
pub fn goals(ms: &[Measurement]) -> String {
    let mut out = String::new();
    let Some(vm) = ms.iter().find(|m| m.name == "victoria-metrics") else {
        return out;
    };
    for v in ms.iter().filter_map(Measurement::ingesters_view) {
        let r = v.samples_per_cpu_s() / vm.samples_per_cpu_s().max(1e-9);
        let _ = writeln!(
            out,
            "GOAL {}: samples_per_cpu_s = {:.2} x victoria-metrics (issue: >= {RF3_GOAL_VS_VM:.2}): {}",
            v.name,
            r,
            if r >= RF3_GOAL_VS_VM { "met" } else { "NOT met" }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadReport;
    use crate::measure::GroupUsage;
    use std::time::Duration;

    fn measurement(name: &str, cpu_s: f64, ingesters: Option<GroupUsage>) -> Measurement {
        Measurement {
            name: name.into(),
            load: LoadReport {
                ok_samples: 1_000_000,
                wall: Duration::from_secs(2),
                ..LoadReport::default()
            },
            series: 1000,
            cpu_load_s: cpu_s,
            cpu_total_s: cpu_s,
            generator_cpu_s: 0.0,
            idle_rss: 0,
            peak_rss: 1 << 20,
            series_seen: Some(1000),
            threads: Vec::new(),
            ingesters,
        }
    }

    fn sample_run() -> Vec<Measurement> {
        let ingesters = GroupUsage {
            processes: 3,
            cpu_load_s: 3.0,
            cpu_total_s: 3.0,
            idle_rss: 0,
            peak_rss: 3 << 20,
        };
        vec![
            measurement("aion-rf1", 1.0, None),
            measurement("aion-rf3", 4.0, Some(ingesters)),
            measurement("victoria-metrics", 2.0, None),
            measurement("prometheus", 5.0, None),
        ]
    }

    #[test]
    fn table_has_an_ingesters_row_for_the_cluster() {
        let t = table(&sample_run());
        let ing = t.lines().find(|l| l.starts_with("aion-rf3 ingesters"));
        // 1 M samples over 3 ingester CPU-s.
        assert!(ing.is_some_and(|l| l.contains("333333")), "{t}");
        assert_eq!(t.lines().count(), 6, "{t}");
    }

    #[test]
    fn ratios_include_the_cluster_against_victoria_metrics() {
        let r = ratios(&sample_run());
        assert!(r.contains("RATIO aion-rf1/aion-rf3:"), "{r}");
        assert!(
            r.contains(
                "RATIO aion-rf1/victoria-metrics: samples_per_s=1.00 samples_per_cpu_s=2.00"
            ),
            "{r}"
        );
        assert!(
            r.contains(
                "RATIO aion-rf3/victoria-metrics: samples_per_s=1.00 samples_per_cpu_s=0.50"
            ),
            "{r}"
        );
        assert!(r.contains("RATIO aion-rf3 ingesters/victoria-metrics: samples_per_s=1.00 samples_per_cpu_s=0.67 peak_rss=3.00"), "{r}");
        assert!(!r.contains("RATIO aion-rf3/aion-rf1"), "{r}");
        assert!(!r.contains("RATIO victoria-metrics/"), "{r}");
        let cluster_first = ratios(&sample_run()[1..]);
        assert!(
            !cluster_first.contains("RATIO aion-rf3/aion-rf3 ingesters"),
            "{cluster_first}"
        );
        assert!(
            cluster_first.contains("RATIO aion-rf3 ingesters/prometheus:"),
            "{cluster_first}"
        );
    }

    #[test]
    fn goal_compares_the_ingesters_with_victoria_metrics() {
        let g = goals(&sample_run());
        assert_eq!(
            g,
            "GOAL aion-rf3 ingesters: samples_per_cpu_s = 0.67 x victoria-metrics (issue: >= 0.50): met\n"
        );
        let mut slow = sample_run();
        if let Some(i) = slow[1].ingesters.as_mut() {
            i.cpu_total_s = 5.0;
        }
        assert!(goals(&slow).ends_with("0.40 x victoria-metrics (issue: >= 0.50): NOT met\n"));
        assert_eq!(goals(&slow[..2]), "");
    }
}
