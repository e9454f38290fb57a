//! Retention: drops whole chunk key spans (a tenth of the retention, 2 h to
//! a day; see `keys::chunk_span_for`) older than the retention window,
//! measured back from the newest stored sample (like Prometheus, so replaying
//! old data or a stopped clock never wipes the store). As with Prometheus's
//! blocks, data is kept until its whole span has expired.
//!
//! Chunks are keyed `span | ref | mint`, so one `DeleteRange` over
//! `[min span, cut span)` removes every expired chunk; SST files wholly inside
//! the range are deleted outright to return the space at once.

use crate::error::{IngesterError, Result};
use crate::keys::{block_start, span_start, ts_bytes, CF_CHUNKS};
use crate::tsdb::Inner;

impl Inner {
    /// Applies retention. Returns the first kept block start, or `None` when
    /// nothing is stored.
    pub(crate) fn apply_retention(&self) -> Result<Option<i64>> {
        let Some(max_t) = self.head.read().max_t else {
            return Ok(None);
        };
        let cut_block = block_start(max_t.saturating_sub(self.cfg.retention_ms()));
        if cut_block == i64::MIN {
            return Ok(Some(cut_block));
        }
        let cf = self.cf(CF_CHUNKS);
        let cut_span = span_start(cut_block, self.chunk_span());
        let (from, to) = (ts_bytes(i64::MIN), ts_bytes(cut_span));
        self.db
            .delete_file_in_range_cf(cf, from, to)
            .map_err(IngesterError::rocks("deleting expired chunk files"))?;
        let mut wb = rocksdb::WriteBatch::default();
        wb.delete_range_cf(cf, from, to);
        self.db
            .write(wb)
            .map_err(IngesterError::rocks("deleting expired chunks"))?;
        let dropped = {
            let mut head = self.head.write();
            let n = head.drop_before(cut_block);
            self.metrics.head_chunks.set(head.head_chunks as i64);
            n
        };
        self.metrics.retention_runs.inc();
        self.metrics
            .head_chunks_dropped_by_retention
            .inc_by(dropped as u64);
        tracing::debug!(
            cut_block,
            dropped_head_chunks = dropped,
            "TSDB retention applied"
        );
        Ok(Some(cut_block))
    }
}
