//! The storage traits: what the PromQL engine reads through ([`Queryable`])
//! and what the write path appends through ([`Appender`]). Implemented by the
//! in-memory [`crate::memstore::MemStore`], the RocksDB ingester, and (in a
//! cluster) the querier's gRPC fan-out client.

mod cancel;
mod warnings;

pub use cancel::{current_cancel_flag, with_cancel_flag, CancelOnDrop};
pub use warnings::{collect_warnings, report_warning};

use crate::chunk::ChunkSeries;
use crate::labels::Labels;
use crate::matcher::Matcher;
use crate::sample::Sample;
use crate::tenant::TenantId;
use thiserror::Error;

/// Time range of a selection, in milliseconds, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectHints {
    /// First timestamp wanted.
    pub start: i64,
    /// Last timestamp wanted.
    pub end: i64,
}

impl SelectHints {
    /// The whole time axis.
    pub fn all() -> Self {
        Self { start: i64::MIN, end: i64::MAX }
    }
}

/// A series with its samples in a selected range, in timestamp order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels (metric name included).
    pub labels: Labels,
    /// Samples within the selected range, strictly increasing timestamps.
    pub samples: Vec<Sample>,
}

/// A series from [`Queryable::select_chunks`]: decoded already, or still
/// encoded (then it is known to have at least one sample in range).
#[derive(Debug, Clone, PartialEq)]
pub enum SelectedSeries {
    /// Samples decoded by the storage.
    Decoded(Series),
    /// Chunks for the reader to decode ([`ChunkSeries::decode_into`]).
    Encoded(ChunkSeries),
}

impl SelectedSeries {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        match self {
            SelectedSeries::Decoded(s) => &s.labels,
            SelectedSeries::Encoded(c) => &c.labels,
        }
    }

    /// Decodes (when needed) into a plain [`Series`].
    pub fn into_series(self) -> Result<Series, StorageError> {
        match self {
            SelectedSeries::Decoded(s) => Ok(s),
            SelectedSeries::Encoded(c) => {
                let samples = c.decode().map_err(|e| StorageError::Corruption(e.to_string()))?;
                Ok(Series { labels: c.labels, samples })
            }
        }
    }
}

/// Merges selections answered by several parts (each sorted by labels, given
/// in part order) into one list sorted by labels, one entry per label set.
/// A label set returned by one part stays as it came (encoded or not); one
/// returned by several (a series re-homed to another shard) is decoded and
/// its samples merged by timestamp, identical samples kept once and the
/// earliest part's sample winning a timestamp clash.
pub fn merge_selected(parts: Vec<Vec<SelectedSeries>>) -> Result<Vec<SelectedSeries>, StorageError> {
    let mut all: Vec<SelectedSeries> = parts.into_iter().flatten().collect();
    if all.windows(2).all(|w| w[0].labels() < w[1].labels()) {
        return Ok(all);
    }
    // Stable: equal label sets stay in part order.
    all.sort_by(|a, b| a.labels().cmp(b.labels()));
    let mut out: Vec<SelectedSeries> = Vec::with_capacity(all.len());
    let mut all = all.into_iter().peekable();
    while let Some(s) = all.next() {
        if all.peek().is_none_or(|next| next.labels() != s.labels()) {
            out.push(s);
            continue;
        }
        let mut merged = s.into_series()?;
        while let Some(next) = all.next_if(|n| n.labels() == &merged.labels) {
            merged.samples.extend(next.into_series()?.samples);
        }
        // Stable: for equal timestamps the earliest part's sample comes first and is kept.
        merged.samples.sort_by_key(|p| p.t);
        merged.samples.dedup_by_key(|p| p.t);
        out.push(SelectedSeries::Decoded(merged));
    }
    Ok(out)
}

/// Errors of a storage backend, as the engine and the write path see them.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StorageError {
    /// The backend cannot serve now; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Persisted data failed to decode.
    #[error("storage corruption: {0}")]
    Corruption(String),
    /// An I/O failure on the backend.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A selection would return more than a configured limit.
    #[error("query limit exceeded: {limit} (limit {max}, would be {value})")]
    LimitExceeded {
        /// Which limit.
        limit: &'static str,
        /// The configured maximum.
        max: u64,
        /// What the selection needed.
        value: u64,
    },
}

/// Read access to stored series. Implementations return series sorted by labels.
pub trait Queryable: Send + Sync {
    /// Series of `tenant` matching every matcher, with their samples in `hints`.
    /// Series with no sample in range are omitted.
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError>;

    /// Like [`Queryable::select`], but a backend that stores chunks may
    /// leave series encoded, so the caller decodes them where it consumes
    /// them (one series at a time, in parallel) instead of holding every
    /// decoded sample of the selection at once. Same series, same order.
    fn select_chunks(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>, StorageError> {
        Ok(self.select(tenant, hints, matchers)?.into_iter().map(SelectedSeries::Decoded).collect())
    }

    /// Label sets of series matching every matcher that have samples in range.
    fn series(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(self.select(tenant, hints, matchers)?.into_iter().map(|s| s.labels).collect())
    }

    /// Sorted distinct label names of matching series (all series when `matchers` is empty).
    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Sorted distinct values of label `name` over matching series.
    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError>;

    /// Evaluates a partial aggregation next to the data (aggregation
    /// pushdown): each part of a partitioned store (a shard) evaluates
    /// `req.expr` over its own series and the caller merges the parts.
    /// `None` means this storage does not push down (the engine then
    /// selects raw series as usual); only fan-out clients implement it.
    fn pushdown(&self, _tenant: &TenantId, _req: &PushdownRequest) -> Option<Result<PushdownAnswer, StorageError>> {
        None
    }

    /// Whether [`Queryable::pushdown`] may answer at all (it can still
    /// decline a request). Lets the engine send the two sides of a binary
    /// operator concurrently without spending a thread on a store that
    /// never pushes down.
    fn may_push_down(&self) -> bool {
        false
    }
}

/// A partial aggregation to evaluate on every part of a partitioned store:
/// a PromQL aggregation (`sum|min|max|count|group [by|without (…)] (inner)`)
/// evaluated from `start_ms` to `end_ms` every `step_ms` (`step_ms` 0: an
/// instant evaluation at `start_ms`) — or two of them joined by a binary
/// operator, whose operands are answered together (the querier's
/// `pushdown::plan_pair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushdownRequest {
    /// The aggregation, as PromQL text.
    pub expr: String,
    /// First evaluation timestamp, ms.
    pub start_ms: i64,
    /// Last evaluation timestamp, ms.
    pub end_ms: i64,
    /// Step, ms (0 for one instant evaluation).
    pub step_ms: i64,
    /// Lookback delta of instant selectors, ms.
    pub lookback_ms: i64,
    /// Distinct series the evaluation may select on each part (0: no limit).
    pub max_series: u64,
    /// Samples the evaluation may load on each part (0: the part's default).
    pub max_samples: u64,
}

/// A pushed-down aggregation's answer over every part of a store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PushdownAnswer {
    /// The parts' partial series (the caller merges them).
    pub series: Vec<PartialSeries>,
    /// Label-set hashes ([`crate::hash::labels_hash`]) of the series the
    /// parts selected (reported only under [`PushdownRequest::max_series`]).
    pub series_hashes: Vec<u64>,
    /// Samples the parts loaded, summed.
    pub samples: u64,
}

/// One output series of a partial aggregation: its labels and one value per
/// evaluation timestamp it has a value at.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialSeries {
    /// The group's labels.
    pub labels: Labels,
    /// (timestamp, value) in time order.
    pub points: Vec<Sample>,
}

/// Samples for one series in a write batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// Validated, sorted labels.
    pub labels: Labels,
    /// Samples in the order the sender gave them.
    pub samples: Vec<Sample>,
}

/// A batch of writes for one tenant: the unit the write path applies (and,
/// with replication, the unit of one Raft log entry).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBatch {
    /// Owner of every series in the batch.
    pub tenant: TenantId,
    /// The series and their samples.
    pub series: Vec<SeriesSamples>,
}

/// Why one sample was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Older than the series' newest sample (and outside any out-of-order window).
    OutOfOrder,
    /// Same timestamp as a stored sample but a different value.
    DuplicateTimestamp,
}

impl RejectReason {
    /// Stable short name, used in metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_sample_for_timestamp",
        }
    }
}

/// One rejected sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRejection {
    /// Series it belonged to.
    pub labels: Labels,
    /// Its timestamp.
    pub t: i64,
    /// Why it was rejected.
    pub reason: RejectReason,
}

/// What applying a batch did. Valid samples are stored even when others are rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendOutcome {
    /// Samples newly stored.
    pub appended: u64,
    /// Samples that were exact duplicates of stored ones (accepted silently).
    pub duplicates_ignored: u64,
    /// Samples not stored, with the reason.
    pub rejected: Vec<SampleRejection>,
}

/// Write access: applies a batch durably before returning.
pub trait Appender: Send + Sync {
    /// Applies `batch`; returns once the stored samples are durable.
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, StorageError>;
}
