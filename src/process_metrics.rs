//! Process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_start_time_seconds`), read from `/proc/self` at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::time::{SystemTime, UNIX_EPOCH};

/// Collector of this process's resource usage.
#[derive(Debug)]
pub struct ProcessCollector {
    start_time: f64,
}

impl ProcessCollector {
    /// A collector; records the start time now.
    pub fn new() -> Self {
        let start_time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Self { start_time }
    }
}

/// (resident bytes, cpu seconds) from `/proc/self/stat`, if readable.
fn read_proc() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0; utime 11, stime 12, rss 21 (pages).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: f64 = fields.get(21)?.parse().ok()?;
    let ticks = 100.0; // USER_HZ is 100 on Linux.
    Some((rss_pages * 4096.0, (utime + stime) / ticks))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let start = ConstGauge::new(self.start_time);
        start.encode(encoder.encode_descriptor("process_start_time_seconds", "Start time of the process since unix epoch in seconds", None, start.metric_type())?)?;
        if let Some((rss, cpu)) = read_proc() {
            let g = ConstGauge::new(rss);
            g.encode(encoder.encode_descriptor("process_resident_memory_bytes", "Resident memory size in bytes", None, g.metric_type())?)?;
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor("process_cpu_seconds", "Total user and system CPU time spent in seconds", None, c.metric_type())?)?;
        }
        Ok(())
    }
}
