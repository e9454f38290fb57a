//! Process accounting from `/proc`: CPU time (utime + stime of every thread,
//! from `/proc/PID/stat`), resident memory (`VmRSS`, `VmHWM` from
//! `/proc/PID/status`) and a per-thread-name CPU breakdown
//! (`/proc/PID/task/*/stat`) that stands in for a profiler.

use crate::error::{BenchError, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Clock ticks per second for `/proc/*/stat` times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| BenchError::Proc {
        path: path.to_string(),
        why: e.to_string(),
    })
}

/// `(comm, utime + stime)` from the text of a `stat` file.
pub fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After ") ": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks consumed so far by process `pid` (all its threads, live and exited).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = read(&path)?;
    parse_stat(&text).map(|(_, t)| t).ok_or(BenchError::Proc {
        path,
        why: "unexpected format".into(),
    })
}

/// A `kB` field (e.g. `VmRSS`) of a `status` file, in bytes.
pub fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Current and peak resident set size of `pid`, bytes.
pub fn rss(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = read(&path)?;
    let cur = parse_status_kb(&text, "VmRSS").ok_or_else(|| BenchError::Proc {
        path: path.clone(),
        why: "no VmRSS".into(),
    })?;
    let hwm = parse_status_kb(&text, "VmHWM").unwrap_or(cur);
    Ok((cur, hwm))
}

/// CPU ticks per thread name (threads of the same name summed) of `pid`.
/// Threads that exit between two snapshots drop out of the breakdown.
pub fn threads(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        if let Some((comm, t)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            *out.entry(comm).or_insert(0) += t;
        }
    }
    out
}

/// Per-thread-name ticks spent between two [`threads`] snapshots, largest first.
pub fn thread_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = after
        .iter()
        .map(|(k, &a)| {
            (
                k.clone(),
                a.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Polls the summed `VmRSS` of a set of processes on a thread until stopped,
/// keeping the maximum (the sum of `VmHWM`s over-counts when processes peak at
/// different times; for one process the two agree up to the poll interval).
pub struct RssPoller {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssPoller {
    /// Starts polling `pids` every `every`.
    pub fn start(pids: Vec<u32>, every: Duration) -> RssPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let sum: u64 = pids
                    .iter()
                    .filter_map(|&p| rss(p).ok())
                    .map(|(cur, _)| cur)
                    .sum();
                m.fetch_max(sum, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        });
        RssPoller {
            stop,
            max,
            handle: Some(handle),
        }
    }

    /// Stops polling; returns the largest summed RSS seen, bytes.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let text = "1234 (tokio (rt) w) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat(text), Some(("tokio (rt) w".to_string(), 290)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_status_kb_fields() {
        let text = "Name:\taion\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let (cur, hwm) = rss(me).expect("own status");
        assert!(cur > 0 && hwm >= cur);
        cpu_ticks(me).expect("own stat");
        assert!(!threads(me).is_empty());
        let poller = RssPoller::start(vec![me], Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(30));
        assert!(poller.stop() > 0);
    }

    #[test]
    fn thread_delta_sorts_by_ticks_spent() {
        let before = BTreeMap::from([("a".to_string(), 10), ("b".to_string(), 5)]);
        let after = BTreeMap::from([
            ("a".to_string(), 12),
            ("b".to_string(), 50),
            ("c".to_string(), 3),
        ]);
        assert_eq!(
            thread_delta(&before, &after),
            vec![("b".into(), 45), ("c".into(), 3), ("a".into(), 2)]
        );
    }
}
