//! Opening: format check, loading series / postings / head state, WAL replay.

use super::Inner;
use crate::error::{IngesterError, Result};
use crate::head::HeadState;
use crate::keys::{
    parse_postings_key, parse_u64_key, u64_key, BLOCK_MS, CF_HEAD, CF_META, CF_POSTINGS, CF_SERIES, CF_WAL,
    FORMAT_VERSION, FORMAT_VERSION_BLOCKS, META_CHECKPOINT_SEQ, META_CHUNK_SPAN, META_FORMAT_VERSION, META_NEXT_REF,
};
use crate::series::decode_series;
use crate::wal;
use rocksdb::{Direction, IteratorMode, DB};
use std::path::Path;

/// Checks an existing directory's format version, or writes the version and
/// `new_span_ms` (its chunk key span) into a new one, in one write.
pub(super) fn check_format_version(db: &DB, dir: &Path, new_span_ms: i64) -> Result<()> {
    let meta = db
        .cf_handle(CF_META)
        .expect("BUG: every column family is opened at start");
    match db
        .get_cf(meta, META_FORMAT_VERSION)
        .map_err(IngesterError::rocks("reading the format version"))?
    {
        Some(v) if v == [FORMAT_VERSION] || v == [FORMAT_VERSION_BLOCKS] => Ok(()),
        Some(v) => Err(IngesterError::FormatVersion {
            dir: dir.display().to_string(),
            found: v.first().copied().unwrap_or(0),
            expected: FORMAT_VERSION,
        }),
        None => {
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(meta, META_FORMAT_VERSION, [FORMAT_VERSION]);
            wb.put_cf(meta, META_CHUNK_SPAN, u64_key(new_span_ms as u64));
            db.write(wb)
                .map_err(IngesterError::rocks("writing the format version and chunk span"))
        }
    }
}

/// Reads a u64 BE meta value (0 when absent).
fn meta_u64(db: &DB, inner: &Inner, key: &[u8]) -> Result<u64> {
    let v = db
        .get_cf(inner.cf(CF_META), key)
        .map_err(IngesterError::rocks("reading TSDB metadata"))?;
    match v {
        None => Ok(0),
        Some(b) => parse_u64_key(&b).ok_or_else(|| {
            IngesterError::corrupt(
                format!("meta key {}", String::from_utf8_lossy(key)),
                format!("{} bytes, want 8", b.len()),
            )
        }),
    }
}

impl Inner {
    /// Loads persisted state, then replays the WAL.
    pub(super) fn load(&self) -> Result<()> {
        let checkpoint_seq = meta_u64(&self.db, self, META_CHECKPOINT_SEQ)?;
        let next_ref = meta_u64(&self.db, self, META_NEXT_REF)?;
        self.load_chunk_span()?;
        self.load_series()?;
        self.load_postings()?;
        self.load_head()?;
        self.load_replica_mark()?;
        {
            let mut head = self.head.write();
            head.next_ref = head.next_ref.max(next_ref);
            head.applied_seq = checkpoint_seq;
        }
        let last = self.replay_wal(checkpoint_seq)?;
        self.seq.reset(last);
        let head = self.head.read();
        self.metrics.active_series.set(head.series.len() as i64);
        self.metrics.head_chunks.set(head.head_chunks as i64);
        tracing::info!(
            series = head.series.len(),
            head_chunks = head.head_chunks,
            checkpoint_seq,
            applied_seq = head.applied_seq,
            "TSDB opened"
        );
        Ok(())
    }

    /// Directories from before spans existed have no `chunk_span_ms`: their
    /// chunk keys use the 2 h block.
    fn load_chunk_span(&self) -> Result<()> {
        let span = match meta_u64(&self.db, self, META_CHUNK_SPAN)? {
            0 => BLOCK_MS,
            v => i64::try_from(v).unwrap_or(0),
        };
        if span <= 0 || span % BLOCK_MS != 0 {
            return Err(IngesterError::corrupt(
                "meta key chunk_span_ms".to_string(),
                format!("{span} ms is not a whole number of 2 h blocks"),
            ));
        }
        self.chunk_span.store(span, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn load_series(&self) -> Result<()> {
        let mut head = self.head.write();
        for item in self.db.iterator_cf(self.cf(CF_SERIES), IteratorMode::Start) {
            let (k, v) = item.map_err(IngesterError::rocks("loading series"))?;
            let Some(r) = parse_u64_key(&k) else {
                tracing::warn!(key = ?k, "skipping series record with a malformed key");
                continue;
            };
            match decode_series(&v) {
                Ok((tenant, labels)) => head.load_series(r, &tenant, &labels),
                Err(e) => {
                    self.metrics.wal_corrupt_records.inc();
                    tracing::error!(series = r, error = %e, "skipping corrupt series record");
                }
            }
        }
        Ok(())
    }

    fn load_postings(&self) -> Result<()> {
        let mut head = self.head.write();
        for item in self
            .db
            .iterator_cf(self.cf(CF_POSTINGS), IteratorMode::Start)
        {
            let (k, _) = item.map_err(IngesterError::rocks("loading postings"))?;
            match parse_postings_key(&k) {
                Some(p) if head.series.contains_key(&p.series) => {
                    head.load_posting(p.tenant, p.name, p.value, p.series)
                }
                Some(p) => {
                    tracing::warn!(series = p.series, "skipping posting of an unknown series")
                }
                None => tracing::warn!(key = ?k, "skipping malformed postings key"),
            }
        }
        Ok(())
    }

    fn load_head(&self) -> Result<()> {
        let mut head = self.head.write();
        for item in self.db.iterator_cf(self.cf(CF_HEAD), IteratorMode::Start) {
            let (k, v) = item.map_err(IngesterError::rocks("loading head chunks"))?;
            let Some(r) = parse_u64_key(&k) else {
                tracing::warn!(key = ?k, "skipping head record with a malformed key");
                continue;
            };
            match HeadState::decode(&v) {
                Ok(state) => {
                    if !head.load_state(r, state) {
                        tracing::warn!(series = r, "skipping head record of an unknown series");
                    }
                }
                Err(e) => {
                    self.metrics.wal_corrupt_records.inc();
                    tracing::error!(series = r, error = %e, "skipping corrupt head record; its open chunk is lost");
                }
            }
        }
        Ok(())
    }

    /// Replays WAL records after `after`, in order. Returns the last sequence
    /// number seen (corrupt records included, so new records go after them).
    fn replay_wal(&self, after: u64) -> Result<u64> {
        let start = u64_key(after.saturating_add(1));
        let mut last = after;
        let mut replayed = 0u64;
        let mut it = self
            .db
            .iterator_cf(
                self.cf(CF_WAL),
                IteratorMode::From(&start, Direction::Forward),
            )
            .peekable();
        while let Some(item) = it.next() {
            let (k, v) = item.map_err(IngesterError::rocks("reading the WAL"))?;
            let Some(seq) = parse_u64_key(&k) else {
                tracing::warn!(key = ?k, "skipping WAL record with a malformed key");
                continue;
            };
            last = last.max(seq);
            let decoded = {
                let head = self.head.read();
                wal::decode(&v, |r| head.labels_of(r))
            };
            match decoded {
                Ok(batch) => {
                    self.apply_record(seq, &batch, v.len() as u64)?;
                    replayed += 1;
                }
                Err(e) => {
                    self.metrics.wal_corrupt_records.inc();
                    let is_last = it.peek().is_none();
                    if is_last {
                        tracing::warn!(seq, error = %e, "skipping torn/corrupt last WAL record (write never acknowledged)");
                    } else {
                        tracing::error!(seq, error = %e, "skipping corrupt WAL record in the middle of the WAL");
                    }
                    self.head.write().applied_seq = seq;
                }
            }
        }
        self.metrics.wal_records_replayed.inc_by(replayed);
        if replayed > 0 {
            tracing::info!(records = replayed, last_seq = last, "WAL replayed");
        }
        Ok(last)
    }
}
