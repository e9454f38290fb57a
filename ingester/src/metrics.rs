//! The TSDB's own Prometheus metrics.

use aion_model::storage::AppendOutcome;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of the rejection counter: `reason`.
pub(crate) type ReasonLabels = Vec<(String, String)>;

/// Counters and gauges of one TSDB. Clones share the same values.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub samples_appended: Counter,
    pub samples_rejected: Family<ReasonLabels, Counter>,
    pub duplicates_ignored: Counter,
    pub batches_appended: Counter,
    pub active_series: Gauge,
    pub head_chunks: Gauge,
    pub chunks_persisted: Counter,
    pub wal_bytes: Gauge,
    pub wal_records_replayed: Counter,
    pub wal_corrupt_records: Counter,
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
    pub retention_runs: Counter,
    pub head_chunks_dropped_by_retention: Counter,
}

impl Metrics {
    /// Counts one rejected sample.
    fn reject_n(&self, reason: &str, n: u64) {
        self.samples_rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc_by(n);
    }

    /// Records what one applied batch did (live, replayed or replicated):
    /// the batch, its stored and silently ignored samples, and its
    /// rejections by reason (one label look-up per reason, not per sample).
    pub(crate) fn record_append(&self, out: &AppendOutcome) {
        self.batches_appended.inc();
        self.samples_appended.inc_by(out.appended);
        self.duplicates_ignored.inc_by(out.duplicates_ignored);
        let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
        for r in &out.rejected {
            let reason = r.reason.as_str();
            match by_reason.iter_mut().find(|(k, _)| *k == reason) {
                Some((_, n)) => *n += 1,
                None => by_reason.push((reason, 1)),
            }
        }
        for (reason, n) in by_reason {
            self.reject_n(reason, n);
        }
    }

    /// Registers every metric (names prefixed `aion_tsdb_`).
    pub(crate) fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("aion_tsdb");
        r.register(
            "samples_appended",
            "Samples stored in the TSDB",
            self.samples_appended.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples not stored, by reason (out_of_order, duplicate_sample_for_timestamp)",
            self.samples_rejected.clone(),
        );
        r.register(
            "samples_duplicate_ignored",
            "Samples bit-identical to the stored sample at the same timestamp, ignored",
            self.duplicates_ignored.clone(),
        );
        r.register(
            "append_batches",
            "Write batches made durable and applied",
            self.batches_appended.clone(),
        );
        r.register(
            "active_series",
            "Series held in the head",
            self.active_series.clone(),
        );
        r.register(
            "head_chunks",
            "Open (non-empty) head chunks",
            self.head_chunks.clone(),
        );
        r.register(
            "chunks_persisted",
            "Closed chunks written to the chunks column family",
            self.chunks_persisted.clone(),
        );
        r.register(
            "wal_bytes",
            "Bytes of WAL records not yet covered by a checkpoint",
            self.wal_bytes.clone(),
        );
        r.register(
            "wal_records_replayed",
            "WAL records replayed at open",
            self.wal_records_replayed.clone(),
        );
        r.register(
            "wal_corrupt_records",
            "WAL or head records skipped at open because they were corrupt",
            self.wal_corrupt_records.clone(),
        );
        r.register(
            "checkpoints",
            "Successful checkpoints",
            self.checkpoints.clone(),
        );
        r.register(
            "checkpoint_failures",
            "Failed checkpoints",
            self.checkpoint_failures.clone(),
        );
        r.register(
            "retention_runs",
            "Retention passes",
            self.retention_runs.clone(),
        );
        r.register(
            "head_chunks_dropped_by_retention",
            "Open head chunks dropped because their block left the retention window",
            self.head_chunks_dropped_by_retention.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::storage::{RejectReason, SampleRejection};
    use prometheus_client::encoding::text::encode;

    #[test]
    fn registers_under_aion_tsdb_prefix_and_records_appends() {
        let m = Metrics::default();
        let rejected = |reason, t| SampleRejection { labels: Labels::from_pairs([("a", "b")]), t, reason };
        m.record_append(&AppendOutcome {
            appended: 3,
            duplicates_ignored: 2,
            rejected: vec![
                rejected(RejectReason::OutOfOrder, 1),
                rejected(RejectReason::DuplicateTimestamp, 2),
                rejected(RejectReason::OutOfOrder, 3),
            ],
        });
        m.record_append(&AppendOutcome { appended: 4, ..Default::default() });
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains("aion_tsdb_samples_appended_total 7"), "{out}");
        assert!(out.contains("aion_tsdb_append_batches_total 2"), "{out}");
        assert!(out.contains("aion_tsdb_samples_duplicate_ignored_total 2"), "{out}");
        assert!(
            out.contains("aion_tsdb_samples_rejected_total{reason=\"out_of_order\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("aion_tsdb_samples_rejected_total{reason=\"duplicate_sample_for_timestamp\"} 1"),
            "{out}"
        );
        assert!(out.contains("aion_tsdb_wal_bytes 0"), "{out}");
    }
}
