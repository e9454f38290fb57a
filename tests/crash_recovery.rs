//! Durability: every write Aion acknowledged survives `kill -9`.
//! A writer pushes numbered samples; the process is SIGKILLed mid-stream (no
//! flush), restarted on the same data dir, and every acknowledged sample must
//! be there with its exact value.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{push, query, series, Aion};

const SERIES: usize = 20;

/// Sample timestamps start an hour ago (well inside retention), on a whole second.
fn base_t() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    (now - 3_600_000) / 1000 * 1000
}

/// Samples of `counter_{i}` as (t -> value) read back through a raw range selector.
fn stored(base: &str, i: usize, at_s: f64) -> BTreeMap<i64, f64> {
    let r = query(base, None, &format!("crash_test_total{{series=\"{i}\"}}[1d]"), at_s);
    assert_eq!(r["status"], "success", "query failed: {r}");
    let mut out = BTreeMap::new();
    if let Some(s) = r["data"]["result"].as_array().and_then(|a| a.first()) {
        for p in s["values"].as_array().cloned().unwrap_or_default() {
            let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().and_then(|x| x.parse().ok()).expect("value");
            out.insert(t, v);
        }
    }
    out
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut aion = Aion::start(&tmp.path().join("aion"), &[]);
    let base_t = base_t();
    let acked: Arc<Mutex<Vec<(usize, i64, f64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (base, acked, stop) = (aion.http.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            for step in 0i64..3_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let t = base_t + step * 1000;
                let batch: Vec<_> = (0..SERIES)
                    .map(|i| {
                        let label = i.to_string();
                        series(&[("__name__", "crash_test_total"), ("series", &label)], &[(t, (step * 10 + i as i64) as f64)])
                    })
                    .collect();
                let ok = std::panic::catch_unwind(|| push(&base, None, batch)).map(|(code, _)| code == 204).unwrap_or(false);
                if !ok {
                    break; // the process is gone: nothing more is acknowledged
                }
                let mut a = acked.lock().expect("lock");
                a.extend((0..SERIES).map(|i| (i, t, (step * 10 + i as i64) as f64)));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    aion.kill9();
    stop.store(true, Ordering::SeqCst);
    let _ = writer.join();
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= SERIES * 10, "too few acknowledged writes before the kill: {}", acked.len());

    aion.restart();
    let at_s = (base_t as f64 / 1000.0) + 3_500.0; // after the last possible sample
    let mut per_series: Vec<BTreeMap<i64, f64>> = (0..SERIES).map(|i| stored(&aion.http, i, at_s)).collect();
    for (i, t, v) in &acked {
        match per_series[*i].remove(t) {
            Some(got) => assert_eq!(got, *v, "series {i} at {t}: stored {got}, acknowledged {v}"),
            None => panic!("acknowledged sample series={i} t={t} v={v} lost after kill -9 ({} acked)", acked.len()),
        }
    }
    // Whatever is left was written but not yet acknowledged when the kill came: at most one batch.
    let extra: usize = per_series.iter().map(|m| m.len()).sum();
    assert!(extra <= SERIES, "{extra} samples stored that were never sent");

    // A graceful stop flushes and exits 0; the data is still there after that restart too.
    assert_eq!(aion.stop(), Some(0), "graceful shutdown did not exit 0: {}", aion.log());
    aion.restart();
    let total: usize = (0..SERIES).map(|i| stored(&aion.http, i, at_s).len()).sum();
    assert!(total >= acked.len(), "after graceful restart only {total} of {} samples", acked.len());
}
