//! The write path: WAL record (synced, group-committed by RocksDB across
//! concurrent appenders), then apply to the head in sequence order.
//!
//! Sequence numbers are reserved under a short lock; the synced WAL writes run
//! concurrently; a turnstile then applies batches strictly in sequence order,
//! so WAL replay reproduces exactly the live apply (the same contract a Raft
//! state machine has with its log).

use super::{Inner, Tsdb};
use crate::error::{IngesterError, Result};
use crate::head::{ApplyWrites, SeriesHint};
use crate::head::Head;
use crate::keys::{
    chunk_key, span_start, postings_key, u64_key, CF_CHUNKS, CF_META, CF_POSTINGS, CF_SERIES,
    CF_WAL, META_NEXT_REF, VALUE_VERSION,
};
use crate::series::encode_series;
use crate::wal;
use aion_model::storage::{AppendOutcome, Appender, StorageError, WriteBatch};
use parking_lot::{Condvar, Mutex};
use rocksdb::WriteOptions;

/// Hands out WAL sequence numbers and lets batches apply in that order.
pub(crate) struct Sequencer {
    next: Mutex<u64>,
    done: Mutex<u64>,
    turn: Condvar,
}

/// Held while it is one batch's turn to apply; passing it on when dropped.
pub(crate) struct Turn<'a> {
    seq: u64,
    s: &'a Sequencer,
}

impl Sequencer {
    /// A sequencer whose last used (and applied) number is `last`.
    pub(crate) fn new(last: u64) -> Self {
        Self {
            next: Mutex::new(last + 1),
            done: Mutex::new(last),
            turn: Condvar::new(),
        }
    }

    /// Resets after WAL replay (no appender may be running).
    pub(crate) fn reset(&self, last: u64) {
        *self.next.lock() = last + 1;
        *self.done.lock() = last;
    }

    /// Reserves the next sequence number.
    pub(crate) fn reserve(&self) -> u64 {
        let mut n = self.next.lock();
        let s = *n;
        *n += 1;
        s
    }

    /// Blocks until every earlier sequence number has finished.
    pub(crate) fn wait_turn(&self, seq: u64) -> Turn<'_> {
        let mut done = self.done.lock();
        while *done + 1 < seq {
            self.turn.wait(&mut done);
        }
        Turn { seq, s: self }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.s.done.lock() = self.seq;
        self.s.turn.notify_all();
    }
}

impl Inner {
    /// Appends durably: WAL write, then apply in sequence order.
    pub(crate) fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome> {
        if batch.series.iter().all(|s| s.samples.is_empty()) {
            return Ok(AppendOutcome::default());
        }
        self.check_failed()?;
        // Known series go into the WAL record by ref, and the apply reuses the look-up.
        let hints = self.head.read().resolve(batch);
        let mut buf = Vec::new();
        wal::encode(batch, Some(&hints), &mut buf);
        let seq = self.seq.reserve();
        let mut opts = WriteOptions::default();
        opts.set_sync(self.cfg.wal_sync);
        let written = self
            .db
            .put_cf_opt(self.cf(CF_WAL), u64_key(seq), &buf, &opts)
            .map_err(IngesterError::rocks("writing a WAL record"));
        let _turn = self.seq.wait_turn(seq);
        written?;
        self.check_failed()?;
        let out = self.apply_hinted(seq, batch, Some(&hints), buf.len() as u64)?;
        self.metrics.record_append(&out);
        Ok(out)
    }

    /// Applies one batch (live or replayed) and persists what it created:
    /// new series, their postings, the next ref, closed chunks. The RocksDB
    /// write is unsynced: the WAL record already makes the batch durable.
    pub(crate) fn apply_record(
        &self,
        seq: u64,
        batch: &WriteBatch,
        wal_len: u64,
    ) -> Result<AppendOutcome> {
        self.apply_hinted(seq, batch, None, wal_len)
    }

    /// [`Inner::apply_record`] with the series look-ups done under the read
    /// lock before the WAL write (`Head::resolve`).
    fn apply_hinted(
        &self,
        seq: u64,
        batch: &WriteBatch,
        hints: Option<&[SeriesHint]>,
        wal_len: u64,
    ) -> Result<AppendOutcome> {
        self.apply_with(seq, wal_len, |head, writes| head.apply(batch, hints, writes))
    }

    /// Applies (under the head's write lock) what `apply` does to the head,
    /// then persists what it created (see [`Inner::apply_record`]).
    pub(crate) fn apply_with(
        &self,
        seq: u64,
        wal_len: u64,
        apply: impl FnOnce(&mut Head, &mut ApplyWrites) -> AppendOutcome,
    ) -> Result<AppendOutcome> {
        let mut head = self.head.write();
        let mut writes = ApplyWrites::default();
        let out = apply(&mut head, &mut writes);
        head.applied_seq = seq;
        if wal_len > 0 {
            self.wal_sizes.lock().push_back((seq, wal_len));
            self.metrics.wal_bytes.inc_by(wal_len as i64);
        }
        let wb = self.encode_writes(&head, &writes);
        let res = if wb.is_empty() {
            Ok(())
        } else {
            self.db.write(wb)
        };
        self.metrics.active_series.set(head.series.len() as i64);
        self.metrics.head_chunks.set(head.head_chunks as i64);
        drop(head);
        if let Err(e) = res {
            let err = IngesterError::rocks("persisting an applied batch")(e);
            tracing::error!(seq, error = %err, "apply write failed; TSDB is read-only until restarted");
            *self.failed.lock() = Some(err.to_string());
            return Err(err);
        }
        self.metrics
            .chunks_persisted
            .inc_by(writes.closed.len() as u64);
        Ok(out)
    }

    /// RocksDB mutations for what one apply created.
    fn encode_writes(&self, head: &Head, writes: &ApplyWrites) -> rocksdb::WriteBatch {
        let mut wb = rocksdb::WriteBatch::default();
        let mut buf = Vec::new();
        for r in &writes.new_series {
            let s = head
                .series
                .get(r)
                .expect("BUG: created series is in the head");
            buf.clear();
            encode_series(&s.tenant, &s.labels, &mut buf);
            wb.put_cf(self.cf(CF_SERIES), u64_key(*r), &buf);
            for (n, v) in s.labels.iter() {
                wb.put_cf(self.cf(CF_POSTINGS), postings_key(&s.tenant, n, v, *r), b"");
            }
        }
        if !writes.new_series.is_empty() {
            wb.put_cf(self.cf(CF_META), META_NEXT_REF, head.next_ref.to_be_bytes());
        }
        let span = self.chunk_span();
        for c in &writes.closed {
            buf.clear();
            buf.push(VALUE_VERSION);
            buf.extend_from_slice(&c.maxt.to_le_bytes());
            buf.extend_from_slice(&c.bytes);
            wb.put_cf(
                self.cf(CF_CHUNKS),
                chunk_key(span_start(c.mint, span), c.series, c.mint),
                &buf,
            );
        }
        wb
    }
}

impl Appender for Tsdb {
    fn append(&self, batch: WriteBatch) -> std::result::Result<AppendOutcome, StorageError> {
        self.inner.append(&batch).map_err(StorageError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn turnstile_releases_in_sequence_order() {
        let s = Arc::new(Sequencer::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let seqs: Vec<u64> = (0..8).map(|_| s.reserve()).collect();
        let handles: Vec<_> = seqs
            .into_iter()
            .rev()
            .map(|seq| {
                let (s, order) = (s.clone(), order.clone());
                std::thread::spawn(move || {
                    let _t = s.wait_turn(seq);
                    order.lock().push(seq);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock(), (1..=8).collect::<Vec<_>>());
    }
}
