//! Raft mode: the TSDB as a shard's replicated state machine.
//!
//! In Raft mode the Raft log is the WAL: a committed batch is applied to the
//! head with [`Tsdb::apply_replicated`], which writes nothing to the `wal`
//! column family. The log index plays the WAL sequence number (`applied_seq`,
//! `meta/checkpoint_seq`), and checkpoints also persist an opaque *replica
//! mark* (the Raft layer's encoded last-applied log id and membership, meta
//! keys `raft_applied` / `raft_membership`) in the same atomic write as the
//! head state they describe, so after a restart the Raft layer re-applies
//! exactly the log after the checkpoint. Apply and checkpoint are serialised
//! by the checkpoint lock, so a checkpoint never records a mark that is
//! ahead or behind the head state it persists.
//!
//! Snapshots are a byte dump of the persisted column families taken after a
//! checkpoint ([`Tsdb::dump_state`]); [`Tsdb::install_state`] replaces the
//! whole content with such a dump. Layout: `docs/format/raft.md`.
//!
//! A replicated TSDB must not also receive [`Appender`](aion_model::storage::Appender)
//! writes: its order is the Raft log's alone.

use super::{Inner, Tsdb};
use crate::codec::{put_bytes, put_uvarint, Reader};
use crate::error::{IngesterError, Result};
use crate::head::{Head, SeriesKey};
use crate::keys::{
    CF_CHUNKS, CF_HEAD, CF_META, CF_POSTINGS, CF_SERIES, CF_WAL, FORMAT_VERSION, META_CHUNK_SPAN,
    META_FORMAT_VERSION,
};
use crate::raft::ShardWrite;
use aion_model::storage::{AppendOutcome, WriteBatch};
use rocksdb::{IteratorMode, WriteOptions};
use std::sync::atomic::Ordering;
use xxhash_rust::xxh3::xxh3_64;

/// Meta key: the Raft layer's encoded last applied log id (opaque to the TSDB).
pub(crate) const META_RAFT_APPLIED: &[u8] = b"raft_applied";
/// Meta key: the Raft layer's encoded membership (opaque to the TSDB).
pub(crate) const META_RAFT_MEMBERSHIP: &[u8] = b"raft_membership";

/// `reason` label of `aion_tsdb_samples_rejected` for samples of series named
/// by a ref the replica does not hold for the entry's tenant.
pub const BAD_REF_REASON: &str = "unknown_series_ref";

/// Version byte of a state dump.
const DUMP_VERSION: u8 = 1;

/// Column families in a dump, with their one-byte tags (the WAL is never
/// dumped: a replicated TSDB has none, and it is covered by the checkpoint).
const DUMP_CFS: [(u8, &str); 5] = [
    (1, CF_META),
    (2, CF_SERIES),
    (3, CF_POSTINGS),
    (4, CF_CHUNKS),
    (5, CF_HEAD),
];

/// The data of a committed normal entry, owned or as the entry's bytes.
#[derive(Clone, Copy)]
enum Replicated<'a> {
    Batch(&'a WriteBatch),
    Encoded(&'a ShardWrite),
}

impl Replicated<'_> {
    /// Samples per part.
    fn part_samples(&self) -> Vec<u64> {
        match self {
            Replicated::Batch(b) => vec![b.series.iter().map(|s| s.samples.len() as u64).sum()],
            Replicated::Encoded(w) => {
                let mut series = w.series();
                w.part_sizes()
                    .into_iter()
                    .map(|n| series.by_ref().take(n).map(|s| s.samples.len() as u64).sum())
                    .collect()
            }
        }
    }
}

/// The Raft position of a replicated TSDB, as opaque bytes of the Raft layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaMark {
    /// Encoded last applied log id (`None`: nothing applied in Raft mode).
    pub applied: Option<Vec<u8>>,
    /// Encoded membership in effect (`None`: none applied yet).
    pub membership: Option<Vec<u8>>,
}

impl ReplicaMark {
    /// Adds the mark's meta records to a checkpoint write.
    pub(crate) fn write_to(&self, wb: &mut rocksdb::WriteBatch, meta: &rocksdb::ColumnFamily) {
        if let Some(a) = &self.applied {
            wb.put_cf(meta, META_RAFT_APPLIED, a);
        }
        if let Some(m) = &self.membership {
            wb.put_cf(meta, META_RAFT_MEMBERSHIP, m);
        }
    }
}

impl Inner {
    /// Loads the replica mark from `meta` (at open and after an install).
    pub(super) fn load_replica_mark(&self) -> Result<()> {
        let get = |key: &[u8]| {
            self.db
                .get_cf(self.cf(CF_META), key)
                .map_err(IngesterError::rocks("reading the Raft replica mark"))
        };
        let mark = ReplicaMark {
            applied: get(META_RAFT_APPLIED)?,
            membership: get(META_RAFT_MEMBERSHIP)?,
        };
        *self.replica.lock() = mark;
        Ok(())
    }

    /// Applies one committed entry (a batch, or none for blank and
    /// membership entries) and moves the mark, atomically w.r.t. checkpoints.
    fn apply_replicated(
        &self,
        log_index: u64,
        applied: &[u8],
        membership: Option<Vec<u8>>,
        batch: Option<Replicated<'_>>,
    ) -> Result<Vec<AppendOutcome>> {
        self.check_failed()?;
        let _serial = self.checkpoint_lock.lock();
        // Raft log indexes start at 0 (openraft's initial membership entry):
        // nothing is applied until a mark exists.
        let has_mark = self.replica.lock().applied.is_some();
        if has_mark && self.head.read().applied_seq >= log_index {
            // At or below the applied position: in the head already, and the
            // mark must not move back (openraft does not re-send such
            // entries; this guards misuse).
            let dups = batch.map_or(vec![0], |b| b.part_samples());
            return Ok(dups
                .into_iter()
                .map(|d| AppendOutcome { duplicates_ignored: d, ..AppendOutcome::default() })
                .collect());
        }
        let out = match batch {
            Some(b) => {
                let outs = match b {
                    Replicated::Batch(b) => vec![self.apply_record(log_index, b, 0)?],
                    Replicated::Encoded(w) => self.apply_encoded(log_index, w)?,
                };
                self.replicated_applies.fetch_add(1, Ordering::Relaxed);
                for out in &outs {
                    self.metrics.record_append(out);
                }
                outs
            }
            None => {
                self.head.write().applied_seq = log_index;
                vec![AppendOutcome::default()]
            }
        };
        let mut mark = self.replica.lock();
        mark.applied = Some(applied.to_vec());
        if membership.is_some() {
            mark.membership = membership;
        }
        Ok(out)
    }

    /// Applies an encoded write, part by part (one outcome each), under one
    /// head lock and one RocksDB write. Samples of series named by a bad ref
    /// are not stored; they are counted as rejected with reason
    /// [`BAD_REF_REASON`] and logged.
    fn apply_encoded(&self, log_index: u64, w: &ShardWrite) -> Result<Vec<AppendOutcome>> {
        let mut outs = Vec::new();
        let mut bad = 0;
        self.apply_with(log_index, 0, |head, writes| {
            let (tenant, mut series) = (w.tenant(), w.series());
            for n in w.part_sizes() {
                let part = series.by_ref().take(n).map(|s| {
                    let key = match s.series_ref {
                        Some(r) => SeriesKey::Ref(r),
                        None => SeriesKey::Packed(s.packed_labels),
                    };
                    (key, s.samples)
                });
                outs.push(head.apply_packed(tenant, part, writes));
            }
            bad = writes.bad_ref_samples;
            AppendOutcome::default()
        })?;
        if bad > 0 {
            self.metrics
                .samples_rejected
                .get_or_create(&vec![("reason".to_string(), BAD_REF_REASON.to_string())])
                .inc_by(bad);
            tracing::error!(
                log_index,
                tenant = w.tenant(),
                samples = bad,
                "log entry names series by refs this replica does not hold for the tenant; their samples are not stored"
            );
        }
        Ok(outs)
    }

    /// See [`Tsdb::known_series`].
    fn known_series(&self, tenant: &str, packed: &[&[u8]]) -> Option<Vec<Option<u64>>> {
        let head = self.head.read();
        let idx = head.tenants.get(tenant)?;
        Some(head.lookup_packed_many(idx, packed))
    }

    /// Checkpoints, then dumps the persisted column families from one
    /// RocksDB snapshot taken under the checkpoint lock.
    fn dump_state(&self) -> Result<Vec<u8>> {
        self.checkpoint()?;
        let _serial = self.checkpoint_lock.lock();
        let snap = self.db.snapshot();
        let mut body = Vec::new();
        let mut n = 0u64;
        for (tag, name) in DUMP_CFS {
            for item in snap.iterator_cf(self.cf(name), IteratorMode::Start) {
                let (k, v) = item.map_err(IngesterError::rocks("dumping the TSDB"))?;
                if name == CF_META && &*k == META_FORMAT_VERSION {
                    continue;
                }
                body.push(tag);
                put_bytes(&mut body, &k);
                put_bytes(&mut body, &v);
                n += 1;
            }
        }
        let mut out = Vec::with_capacity(body.len() + 20);
        out.push(DUMP_VERSION);
        put_uvarint(&mut out, n);
        out.extend_from_slice(&body);
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Replaces every record with the dump's, in one synced write, then
    /// reloads the in-memory state from it.
    fn install_state(&self, dump: &[u8]) -> Result<()> {
        let records = decode_dump(dump)?;
        let _serial = self.checkpoint_lock.lock();
        let mut wb = rocksdb::WriteBatch::default();
        for name in [CF_META, CF_SERIES, CF_POSTINGS, CF_CHUNKS, CF_HEAD, CF_WAL] {
            for item in self.db.iterator_cf(self.cf(name), IteratorMode::Start) {
                let (k, _) = item.map_err(IngesterError::rocks("clearing the TSDB for install"))?;
                if name == CF_META && &*k == META_FORMAT_VERSION {
                    continue;
                }
                wb.delete_cf(self.cf(name), k);
            }
        }
        for (name, k, v) in &records {
            wb.put_cf(self.cf(name), k, v);
        }
        // A span in the snapshot: this directory's chunk keys are now spans,
        // which builds that predate them must not open (see `FORMAT_VERSION`).
        if records.iter().any(|(name, k, _)| *name == CF_META && *k == META_CHUNK_SPAN) {
            wb.put_cf(self.cf(CF_META), META_FORMAT_VERSION, [FORMAT_VERSION]);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(wb, &opts)
            .map_err(IngesterError::rocks("installing a TSDB snapshot"))?;
        *self.head.write() = Head::new(self.cfg.max_samples_per_chunk);
        self.wal_sizes.lock().clear();
        self.metrics.wal_bytes.set(0);
        self.load()?;
        tracing::info!(records = records.len(), "TSDB replaced by a snapshot");
        Ok(())
    }
}

/// One dumped record: column family, key, value.
type DumpRecord<'a> = (&'static str, &'a [u8], &'a [u8]);

/// Decodes and verifies a dump.
fn decode_dump(b: &[u8]) -> Result<Vec<DumpRecord<'_>>> {
    let bad = |detail: String| IngesterError::corrupt("TSDB snapshot dump", detail);
    if b.len() < 9 {
        return Err(bad(format!("{} bytes is too short", b.len())));
    }
    let (body, sum) = b.split_at(b.len() - 8);
    let mut a = [0u8; 8];
    a.copy_from_slice(sum);
    let (stored, actual) = (u64::from_le_bytes(a), xxh3_64(body));
    if stored != actual {
        return Err(bad(format!(
            "checksum mismatch: stored {stored:#018x}, computed {actual:#018x}"
        )));
    }
    let mut r = Reader::new(body);
    let version = r.u8("dump version").map_err(bad)?;
    if version != DUMP_VERSION {
        return Err(bad(format!(
            "version {version}, this build reads {DUMP_VERSION}"
        )));
    }
    let n = r.count(3, "dump records").map_err(bad)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8("record column family").map_err(bad)?;
        let Some((_, name)) = DUMP_CFS.iter().find(|(t, _)| *t == tag) else {
            return Err(bad(format!("unknown column family tag {tag}")));
        };
        let klen = r.count(1, "key length").map_err(bad)?;
        let k = r.take(klen, "key").map_err(bad)?;
        let vlen = r.count(0, "value length").map_err(bad)?;
        let v = r.take(vlen, "value").map_err(bad)?;
        out.push((*name, k, v));
    }
    r.finish("dump").map_err(bad)?;
    Ok(out)
}

impl Tsdb {
    /// Raft mode: applies the committed entry at `log_index` — `batch` for a
    /// normal entry, `None` for blank/membership entries — to the head
    /// without writing the TSDB's WAL (the Raft log is the WAL). `applied`
    /// (and `membership`, when the entry changed it) are the Raft layer's
    /// encoded position, persisted by the next checkpoint. Entries must come
    /// in log order; an entry at or below the applied index is not applied
    /// again (its samples count as ignored duplicates).
    pub fn apply_replicated(
        &self,
        log_index: u64,
        applied: &[u8],
        membership: Option<Vec<u8>>,
        batch: Option<&WriteBatch>,
    ) -> Result<AppendOutcome> {
        let mut outs = self
            .inner
            .apply_replicated(log_index, applied, membership, batch.map(Replicated::Batch))?;
        Ok(outs.pop().unwrap_or_default())
    }

    /// [`Tsdb::apply_replicated`] of a normal entry's encoded batch: walks
    /// the bytes, allocating only for series the head does not know yet.
    /// One outcome per part of the write.
    pub fn apply_replicated_write(
        &self,
        log_index: u64,
        applied: &[u8],
        write: &ShardWrite,
    ) -> Result<Vec<AppendOutcome>> {
        self.inner
            .apply_replicated(log_index, applied, None, Some(Replicated::Encoded(write)))
    }

    /// Leader side, before proposing `write`: the same write with every
    /// series this TSDB's applied state holds for the tenant named by its
    /// ref (`ShardWrite::name_by_ref`), so the log entry and every apply
    /// skip its labels. Safe because such a series was created by a
    /// committed entry with a lower index, and refs are assigned in apply
    /// order: every replica applying the new entry holds it under that ref.
    /// Takes the head's read lock.
    pub fn name_known_series(&self, write: &ShardWrite) -> ShardWrite {
        write.name_by_ref(|tenant, packed| self.known_series(tenant, packed))
    }

    /// The refs of series of `tenant` given by their labels in the packed
    /// form, as this TSDB's applied state holds them (`None` when the tenant
    /// has no series): the look-up of [`Tsdb::name_known_series`] and
    /// `ShardWrite::from_client_named`. Takes the head's read lock.
    pub fn known_series(&self, tenant: &str, packed: &[&[u8]]) -> Option<Vec<Option<u64>>> {
        self.inner.known_series(tenant, packed)
    }

    /// Samples of replicated entries not stored because they named a series
    /// by a bad ref (see [`BAD_REF_REASON`]), since open.
    pub fn bad_ref_samples(&self) -> u64 {
        self.inner
            .metrics
            .samples_rejected
            .get_or_create(&vec![("reason".to_string(), BAD_REF_REASON.to_string())])
            .get()
    }

    /// The Raft position as of now (right after open: as of the last checkpoint).
    pub fn replica_mark(&self) -> ReplicaMark {
        self.inner.replica.lock().clone()
    }

    /// Batches applied by [`Tsdb::apply_replicated`] since open (replayed
    /// log entries included): tells how much log a restart re-applied.
    pub fn replicated_applies(&self) -> u64 {
        self.inner.replicated_applies.load(Ordering::Relaxed)
    }

    /// Tenants with at least one series, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .inner
            .head
            .read()
            .tenants
            .keys()
            .map(|k| k.to_string())
            .collect();
        t.sort();
        t
    }

    /// Checkpoints, then returns a byte dump of the persisted state (series,
    /// postings, closed chunks, head state, meta incl. the replica mark).
    pub fn dump_state(&self) -> Result<Vec<u8>> {
        self.inner.dump_state()
    }

    /// Replaces the whole content (and the replica mark) with a dump made by
    /// [`Tsdb::dump_state`]; a dump that fails its checksum changes nothing.
    pub fn install_state(&self, dump: &[u8]) -> Result<()> {
        self.inner.install_state(dump)
    }
}

#[cfg(test)]
mod refs_test;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TsdbConfig;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{Queryable, SelectHints, SeriesSamples};
    use aion_model::tenant::TenantId;
    use std::time::Duration;

    fn cfg() -> TsdbConfig {
        TsdbConfig {
            checkpoint_interval: Duration::ZERO,
            max_samples_per_chunk: 4,
            ..TsdbConfig::default()
        }
    }

    fn batch(i: i64) -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("k", &format!("{}", i % 3))]),
                samples: vec![Sample::new(i * 1000, i as f64)],
            }],
        }
    }

    fn all(db: &Tsdb) -> Vec<aion_model::storage::Series> {
        db.select(&TenantId::new("t").unwrap(), &SelectHints::all(), &[])
            .unwrap()
    }

    #[test]
    fn replicated_apply_skips_wal_checkpoints_mark_and_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path(), cfg()).unwrap();
        for i in 1..=10 {
            let out = db
                .apply_replicated(i as u64, &[i as u8], None, Some(&batch(i)))
                .unwrap();
            assert_eq!(out.appended, 1);
        }
        assert_eq!(db.stats().wal_bytes, 0, "no TSDB WAL in Raft mode");
        let again = db.apply_replicated(5, &[5], None, Some(&batch(5))).unwrap();
        assert_eq!((again.appended, again.duplicates_ignored), (0, 1));
        db.flush().unwrap();
        db.apply_replicated(11, &[11], Some(vec![9, 9]), None)
            .unwrap();
        let before = all(&db);
        drop(db);
        let db = Tsdb::open(dir.path(), cfg()).unwrap();
        let mark = db.replica_mark();
        assert_eq!(mark.applied, Some(vec![10]), "mark of the checkpoint");
        assert_eq!(mark.membership, None);
        assert_eq!(db.stats().applied_seq, 10);
        assert_eq!(all(&db), before);
    }

    #[test]
    fn encoded_writes_apply_like_batches_and_answer_per_part() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (owned, encoded) = (Tsdb::open(a.path(), cfg()).unwrap(), Tsdb::open(b.path(), cfg()).unwrap());
        for i in 1..=6 {
            owned.apply_replicated(i as u64, &[i as u8], None, Some(&batch(i))).unwrap();
            let w = ShardWrite::from_batch(&batch(i));
            let outs = encoded.apply_replicated_write(i as u64, &[i as u8], &w).unwrap();
            assert_eq!(outs.len(), 1);
            assert_eq!(outs[0].appended, 1);
        }
        assert_eq!(all(&owned), all(&encoded));
        // Parts: a new sample, one older than it for the same series (rejected), another new one.
        let merged = ShardWrite::merge(&[
            ShardWrite::from_batch(&batch(9)),
            ShardWrite::from_batch(&batch(3)),
            ShardWrite::from_batch(&batch(10)),
        ])
        .unwrap();
        let outs = encoded.apply_replicated_write(7, &[7], &merged).unwrap();
        let shape: Vec<(u64, usize)> = outs.iter().map(|o| (o.appended, o.rejected.len())).collect();
        assert_eq!(shape, vec![(1, 0), (0, 1), (1, 0)]);
        let again = encoded.apply_replicated_write(7, &[7], &merged).unwrap();
        let dups: Vec<u64> = again.iter().map(|o| o.duplicates_ignored).collect();
        assert_eq!(dups, vec![1, 1, 1], "an applied index is not applied again");
        drop(encoded);
        let reopened = Tsdb::open(b.path(), cfg()).unwrap();
        assert_eq!(reopened.stats().series, 3);
    }

    #[test]
    fn dump_installs_into_another_tsdb_and_rejects_corruption() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = Tsdb::open(a.path(), cfg()).unwrap();
        for i in 1..=20 {
            src.apply_replicated(i as u64, &[i as u8], Some(vec![1]), Some(&batch(i)))
                .unwrap();
        }
        let dump = src.dump_state().unwrap();
        let dst = Tsdb::open(b.path(), cfg()).unwrap();
        dst.apply_replicated(1, &[1], None, Some(&batch(99)))
            .unwrap();
        let mut bad = dump.clone();
        bad[5] ^= 1;
        let err = dst.install_state(&bad).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        dst.install_state(&dump).unwrap();
        assert_eq!(all(&dst), all(&src));
        assert_eq!(dst.stats().applied_seq, 20);
        assert_eq!(
            dst.replica_mark(),
            ReplicaMark {
                applied: Some(vec![20]),
                membership: Some(vec![1])
            }
        );
        // Continues deterministically after the install.
        let o1 = src
            .apply_replicated(21, &[21], None, Some(&batch(21)))
            .unwrap();
        let o2 = dst
            .apply_replicated(21, &[21], None, Some(&batch(21)))
            .unwrap();
        assert_eq!(o1, o2);
        assert_eq!(all(&dst), all(&src));
    }
}
