//! Group commit of one shard's writes: Pushes that arrive while an earlier
//! one is being committed are merged into ONE Raft entry (per tenant), so
//! the per-entry costs (log append and fsync, `AppendEntries` to each
//! follower, their appends and fsyncs, commit notifications, apply
//! scheduling) are paid once for all of them.
//!
//! A write that finds the shard idle is proposed at once, unless push calls
//! overlapped on this node within the last second ([`PushLoad`]): then it
//! waits the *linger* (`ingester_cluster.write_linger`) for others to join
//! it, like a Kafka producer's `linger.ms`. Under concurrent load every
//! request touches every shard, so without a linger each shard commits a
//! stream of small entries; a few milliseconds' wait merges the writes of
//! concurrent requests and cuts the per-entry Raft work. A lone sequential
//! sender never waits. Writes that queue behind an in-flight entry go
//! together as soon as it committed, with no further wait. A merged
//! entry keeps each write as a *part* ([`ShardWrite::merge`]), and the apply
//! answers per part, so every Push still gets exactly its own counts and
//! rejections. Durability is unchanged: a Push is answered only after the
//! entry holding it committed and applied.

use crate::raft::{NodeId, ShardRaft, ShardWrite, WriteSummary};
use openraft::error::{ClientWriteError, RaftError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most writes merged into one entry.
const MAX_WRITES_PER_ENTRY: usize = 64;
/// Largest merged entry payload, in bytes (a single write may be larger).
const MAX_ENTRY_BYTES: usize = 4 << 20;

/// What a write's commit ended with.
pub type WriteResult =
    Result<WriteSummary, RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>>;

type Waiter = (ShardWrite, oneshot::Sender<WriteResult>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// A flusher task is running (it drains `waiting` until it is empty).
    flushing: bool,
}

/// How long one moment of concurrent push calls keeps the linger on.
const CONCURRENCY_MEMORY: Duration = Duration::from_secs(1);

/// Push calls on one node, shared by its group committers: whether several
/// senders are writing at once (the linger can merge their writes) or just
/// one that waits for each answer (a linger would only slow it down).
#[derive(Debug)]
pub struct PushLoad {
    in_flight: AtomicUsize,
    /// When two or more calls last overlapped, in ms since `epoch` (0: never).
    last_overlap_ms: AtomicU64,
    epoch: Instant,
}

impl Default for PushLoad {
    fn default() -> Self {
        Self { in_flight: AtomicUsize::new(0), last_overlap_ms: AtomicU64::new(0), epoch: Instant::now() }
    }
}

impl PushLoad {
    /// Counts a push call until the guard drops.
    pub fn enter(&self) -> PushGuard<'_> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= 1 {
            let now = self.epoch.elapsed().as_millis() as u64 + 1;
            self.last_overlap_ms.store(now, Ordering::Relaxed);
        }
        PushGuard(self)
    }

    /// Push calls overlap now, or did within [`CONCURRENCY_MEMORY`].
    fn concurrent(&self) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 1 {
            return true;
        }
        let last = self.last_overlap_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        last != 0 && now.saturating_sub(last) <= CONCURRENCY_MEMORY.as_millis() as u64
    }
}

/// One push call in progress (see [`PushLoad::enter`]).
pub struct PushGuard<'a>(&'a PushLoad);

impl Drop for PushGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The group committer of one shard replica.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Queue>,
    /// How long a write that finds the shard idle waits for company.
    linger: Duration,
    /// The node's push calls in progress (the linger applies only when
    /// there are others).
    load: Arc<PushLoad>,
}

impl GroupCommit {
    /// A committer whose first write after an idle spell waits `linger`
    /// before it is proposed while `load` shows concurrent push calls
    /// (zero: always proposed at once).
    pub fn new(linger: Duration, load: Arc<PushLoad>) -> Self {
        Self { queue: Mutex::default(), linger, load }
    }

    /// Commits `write` through `raft` (with whatever queued alongside it)
    /// and returns its own result. Dropping the future does not cancel the
    /// commit.
    pub async fn write(self: &Arc<Self>, raft: &ShardRaft, write: ShardWrite) -> WriteResult {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            q.waiting.push((write, tx));
            !std::mem::replace(&mut q.flushing, true)
        };
        if start {
            let (this, raft) = (Arc::clone(self), raft.clone());
            tokio::spawn(async move { this.flush(raft).await });
        }
        match rx.await {
            Ok(r) => r,
            // The flusher ended without answering: only when the runtime shuts down.
            Err(_) => Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
        }
    }

    /// Waits the linger (under concurrent load), then proposes everything
    /// queued, group by group, until the queue is empty.
    async fn flush(&self, raft: ShardRaft) {
        if !self.linger.is_zero() && self.load.concurrent() {
            tokio::time::sleep(self.linger).await;
        }
        loop {
            let waiting = {
                let mut q = self.queue.lock();
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let commits = group(waiting).into_iter().map(|g| commit(&raft, g));
            futures::future::join_all(commits).await;
        }
    }
}

/// Splits queued writes into groups of one tenant, in arrival order within
/// each, bounded by [`MAX_WRITES_PER_ENTRY`] and [`MAX_ENTRY_BYTES`].
fn group(waiting: Vec<Waiter>) -> Vec<Vec<Waiter>> {
    let mut groups: Vec<(Vec<Waiter>, usize)> = Vec::new();
    for w in waiting {
        let size = w.0.bytes().len();
        let open = groups.iter_mut().find(|(g, bytes)| {
            g[0].0.tenant() == w.0.tenant()
                && g.len() < MAX_WRITES_PER_ENTRY
                && bytes + size <= MAX_ENTRY_BYTES
        });
        match open {
            Some((g, bytes)) => {
                g.push(w);
                *bytes += size;
            }
            None => groups.push((vec![w], size)),
        }
    }
    groups.into_iter().map(|(g, _)| g).collect()
}

/// Commits one group as one entry and answers each of its writes.
async fn commit(raft: &ShardRaft, group: Vec<Waiter>) {
    let (writes, senders): (Vec<ShardWrite>, Vec<_>) = group.into_iter().unzip();
    let entry = if writes.len() == 1 {
        writes.into_iter().next().expect("BUG: a group is never empty")
    } else {
        ShardWrite::merge(&writes).expect("BUG: a group holds one tenant")
    };
    let result = raft.client_write(entry).await.map(|r| r.data);
    match result {
        Ok(summary) if senders.len() > 1 => {
            let mut parts = summary.parts.into_iter();
            for tx in senders {
                let _ = tx.send(Ok(parts.next().unwrap_or_default()));
            }
        }
        Ok(summary) => {
            for tx in senders {
                let _ = tx.send(Ok(summary.clone()));
            }
        }
        Err(e) => {
            for tx in senders {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[path = "group_commit_test.rs"]
mod linger_test;

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{SeriesSamples, WriteBatch};
    use aion_model::tenant::TenantId;

    fn write(tenant: &str, n: usize) -> Waiter {
        let batch = WriteBatch {
            tenant: TenantId::new(tenant).unwrap(),
            series: (0..n)
                .map(|i| SeriesSamples {
                    labels: Labels::from_pairs([("i", i.to_string())]),
                    samples: vec![Sample::new(1, 1.0)],
                })
                .collect(),
        };
        (ShardWrite::from_batch(&batch), oneshot::channel().0)
    }

    #[test]
    fn groups_are_per_tenant_in_order_and_bounded() {
        let mut waiting = vec![write("a", 1), write("b", 2), write("a", 3)];
        waiting.extend((0..=MAX_WRITES_PER_ENTRY).map(|_| write("c", 1)));
        let groups = group(waiting);
        let shape: Vec<(String, Vec<usize>)> = groups
            .iter()
            .map(|g| (g[0].0.tenant().to_string(), g.iter().map(|w| w.0.series_count()).collect()))
            .collect();
        assert_eq!(shape.len(), 4);
        assert_eq!(shape[0], ("a".to_string(), vec![1, 3]));
        assert_eq!(shape[1], ("b".to_string(), vec![2]));
        assert_eq!((shape[2].0.as_str(), shape[2].1.len()), ("c", MAX_WRITES_PER_ENTRY));
        assert_eq!((shape[3].0.as_str(), shape[3].1.len()), ("c", 1));
    }
}
