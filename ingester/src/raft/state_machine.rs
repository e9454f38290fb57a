//! A shard's Raft state machine (openraft `RaftStateMachine`): applies
//! committed write batches to a [`ShardData`] backend in log order and
//! tracks the last applied log id and membership.
//!
//! Snapshots are bytes made by the backend ([`ShardData::snapshot_bytes`]);
//! by default a dump (`docs/format/raft.md`, "snapshot") of the applied log
//! id, the membership and the content as write batches. The view is captured
//! when openraft asks for a builder (that call is serialised with `apply`),
//! so a snapshot is always consistent with the log id it claims. The latest
//! snapshot is kept in memory only. Persistence of the applied position is
//! the backend's: [`MemShardData`] has none (a restarted replica re-applies
//! the log from its start or receives a snapshot); the TSDB backend
//! (`raft/tsdb_data.rs`) checkpoints it and [`ShardStateMachine::open`]
//! resumes from there.

use super::codec::{self, SnapshotParts};
use super::metrics::ShardRaftStats;
use super::{NodeId, ShardWrite, TypeConfig, WriteSummary};
use aion_model::memstore::MemStore;
use aion_model::storage::{
    AppendOutcome, Appender, Queryable, SelectHints, SeriesSamples, StorageError as ModelError,
    WriteBatch,
};
use aion_model::tenant::TenantId;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;

/// What a shard's state machine applies batches to.
pub trait ShardData: Send + Sync + 'static {
    /// Applies one batch (deterministically: every replica gets the same result).
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, ModelError>;
    /// The whole content, as batches that rebuild it when appended in order.
    fn dump(&self) -> Result<Vec<WriteBatch>, ModelError>;
    /// Replaces the whole content with `batches`.
    fn restore(&self, batches: Vec<WriteBatch>) -> Result<(), ModelError>;

    /// Applies the batch of the committed entry `log_id`; one outcome per
    /// part of the write (one for a write that was not merged). Default:
    /// [`ShardData::append`] of each part's decoded batch. Persistent
    /// backends record `log_id` so [`ShardData::persisted_state`] can tell
    /// openraft where to resume.
    fn apply_entry(
        &self,
        log_id: &LogId<NodeId>,
        write: &ShardWrite,
    ) -> Result<Vec<AppendOutcome>, ModelError> {
        if write.names_refs() {
            // Only a backend that overrides `known_series` makes such entries.
            return Err(ModelError::Corruption(format!(
                "log entry {log_id} names series by TSDB ref; this shard backend holds no refs"
            )));
        }
        write.to_batches().into_iter().map(|b| self.append(b)).collect()
    }

    /// Leader side, before proposing a write: the refs of series of
    /// `tenant` (labels in the packed form) in the applied state, one per
    /// series (`None`: not there), so the log entry names them by ref
    /// (`docs/format/raft.md`, entry version 3). Only a backend whose state
    /// assigns series refs in apply order (the TSDB) answers; default:
    /// `None` (plain entries).
    fn known_series(&self, tenant: &str, packed: &[&[u8]]) -> Option<Vec<Option<u64>>> {
        let _ = (tenant, packed);
        None
    }

    /// Notes a committed entry without data: blank (`membership` `None`)
    /// or a membership change (the new one). Default: nothing to record.
    fn apply_marker(
        &self,
        log_id: &LogId<NodeId>,
        membership: Option<&StoredMembership<NodeId, BasicNode>>,
    ) -> Result<(), ModelError> {
        let _ = (log_id, membership);
        Ok(())
    }

    /// The applied position the backend holds durably (read once, by
    /// [`ShardStateMachine::open`]). Default: `None`, nothing persisted.
    #[allow(clippy::type_complexity)]
    fn persisted_state(
        &self,
    ) -> Result<Option<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)>, ModelError>
    {
        Ok(None)
    }

    /// Snapshot bytes of the whole content at `last_applied` (called
    /// serialised with apply). Default: [`ShardData::dump`] in the batch
    /// snapshot format of `docs/format/raft.md`.
    fn snapshot_bytes(
        &self,
        last_applied: Option<LogId<NodeId>>,
        membership: &StoredMembership<NodeId, BasicNode>,
    ) -> Result<Vec<u8>, ModelError> {
        let parts = SnapshotParts {
            last_applied,
            membership: membership.clone(),
            batches: self.dump()?,
        };
        let mut bytes = Vec::new();
        codec::encode_snapshot(&parts, &mut bytes);
        Ok(bytes)
    }

    /// Replaces the whole content with a snapshot made by
    /// [`ShardData::snapshot_bytes`] that must cover exactly `expected`
    /// (checked before anything changes); returns its membership.
    fn install_snapshot_bytes(
        &self,
        expected: Option<LogId<NodeId>>,
        bytes: &[u8],
    ) -> Result<StoredMembership<NodeId, BasicNode>, ModelError> {
        let parts =
            codec::decode_snapshot(bytes).map_err(|e| ModelError::Corruption(e.to_string()))?;
        if parts.last_applied != expected {
            return Err(ModelError::Corruption(format!(
                "snapshot claims last log id {expected:?} but its bytes hold {:?}",
                parts.last_applied
            )));
        }
        self.restore(parts.batches)?;
        Ok(parts.membership)
    }
}

/// An in-memory [`ShardData`]: a [`MemStore`] plus the set of tenants seen.
#[derive(Debug, Default)]
pub struct MemShardData {
    store: MemStore,
    tenants: RwLock<BTreeSet<TenantId>>,
}

impl MemShardData {
    /// An empty shard.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored series, for queries.
    pub fn store(&self) -> &MemStore {
        &self.store
    }
}

impl ShardData for MemShardData {
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, ModelError> {
        self.tenants.write().insert(batch.tenant.clone());
        self.store.append(batch)
    }

    fn dump(&self) -> Result<Vec<WriteBatch>, ModelError> {
        let tenants: Vec<TenantId> = self.tenants.read().iter().cloned().collect();
        let mut out = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            out.push(dump_tenant(&self.store, tenant)?);
        }
        Ok(out)
    }

    fn restore(&self, batches: Vec<WriteBatch>) -> Result<(), ModelError> {
        self.store.clear();
        self.tenants.write().clear();
        for b in batches {
            self.append(b)?;
        }
        Ok(())
    }
}

/// A snapshot kept by the state machine.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// The state machine of one shard over a [`ShardData`] backend.
pub struct ShardStateMachine<S: ShardData> {
    data: Arc<S>,
    applied: Arc<Mutex<Applied>>,
    stats: Arc<ShardRaftStats>,
}

impl<S: ShardData> ShardStateMachine<S> {
    /// A state machine that has applied nothing, over `data`.
    pub fn new(data: Arc<S>) -> Self {
        Self {
            data,
            applied: Arc::new(Mutex::new(Applied::default())),
            stats: ShardRaftStats::new(),
        }
    }

    /// A state machine over a persistent `data`, resuming from the position
    /// it holds ([`ShardData::persisted_state`]): openraft then re-applies
    /// only the log after it.
    pub fn open(data: Arc<S>) -> Result<Self, ModelError> {
        let sm = Self::new(data);
        if let Some((last_applied, membership)) = sm.data.persisted_state()? {
            let mut a = sm.applied.lock();
            a.last_applied = last_applied;
            a.membership = membership;
        }
        Ok(sm)
    }

    /// The backend (for reads).
    pub fn data(&self) -> &Arc<S> {
        &self.data
    }

    /// Counters of this shard replica (shared with its host's metrics).
    pub fn stats(&self) -> &Arc<ShardRaftStats> {
        &self.stats
    }

    /// Log id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.applied.lock().last_applied
    }
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

/// Builds a snapshot from a view captured by `get_snapshot_builder`.
pub struct ShardSnapshotBuilder {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    bytes: Result<Vec<u8>, ModelError>,
    applied: Arc<Mutex<Applied>>,
    stats: Arc<ShardRaftStats>,
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let bytes = self
            .bytes
            .as_ref()
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(e)))?
            .clone();
        self.stats.snapshot_built();
        let mut applied = self.applied.lock();
        applied.snapshots_built += 1;
        let snapshot_id = match self.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.index, applied.snapshots_built
            ),
            None => format!("none-{}", applied.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        applied.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes: bytes.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<S: ShardData> RaftStateMachine<TypeConfig> for ShardStateMachine<S> {
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let a = self.applied.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<WriteSummary>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for e in entries {
            let apply_err = |err: ModelError| StorageIOError::apply(e.log_id, AnyError::new(&err));
            let summary = match e.payload {
                EntryPayload::Blank => {
                    self.data.apply_marker(&e.log_id, None).map_err(apply_err)?;
                    WriteSummary::default()
                }
                EntryPayload::Normal(w) => {
                    let outcomes = self.data.apply_entry(&e.log_id, &w).map_err(apply_err)?;
                    WriteSummary::from_parts(&outcomes)
                }
                EntryPayload::Membership(m) => {
                    let m = StoredMembership::new(Some(e.log_id), m);
                    self.data
                        .apply_marker(&e.log_id, Some(&m))
                        .map_err(apply_err)?;
                    self.applied.lock().membership = m;
                    WriteSummary::default()
                }
            };
            self.applied.lock().last_applied = Some(e.log_id);
            out.push(summary);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (last_applied, membership) = {
            let a = self.applied.lock();
            (a.last_applied, a.membership.clone())
        };
        let bytes = self.data.snapshot_bytes(last_applied, &membership);
        ShardSnapshotBuilder {
            last_applied,
            membership,
            bytes,
            applied: Arc::clone(&self.applied),
            stats: Arc::clone(&self.stats),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        self.data
            .install_snapshot_bytes(meta.last_log_id, &bytes)
            .map_err(|e| sm_err(format!("installing snapshot {}: {e}", meta.snapshot_id)))?;
        self.stats.snapshot_installed();
        let mut a = self.applied.lock();
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        a.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.applied.lock().snapshot.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.bytes)),
        }))
    }
}

/// Every series of `tenant` in `store`, as one write batch (for snapshot dumps).
pub(crate) fn dump_tenant<Q: Queryable + ?Sized>(store: &Q, tenant: TenantId) -> Result<WriteBatch, ModelError> {
    let series = store
        .select(&tenant, &SelectHints::all(), &[])?
        .into_iter()
        .map(|s| SeriesSamples { labels: s.labels, samples: s.samples })
        .collect();
    Ok(WriteBatch { tenant, series })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::BTreeMap;

    fn id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn write(tenant: &str, t: i64, v: f64) -> Entry<TypeConfig> {
        let batch = WriteBatch {
            tenant: TenantId::new(tenant).unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m")]),
                samples: vec![Sample::new(t, v)],
            }],
        };
        Entry {
            log_id: id(0),
            payload: EntryPayload::Normal(ShardWrite::from(batch)),
        }
    }

    fn at(mut e: Entry<TypeConfig>, index: u64) -> Entry<TypeConfig> {
        e.log_id = id(index);
        e
    }

    #[tokio::test]
    async fn apply_reports_rejections_and_snapshot_restores_every_tenant() {
        let mut sm = ShardStateMachine::new(Arc::new(MemShardData::new()));
        let members = Membership::new(
            vec![[1u64].into()],
            BTreeMap::from([(1, BasicNode::new("a"))]),
        );
        let out = sm
            .apply([
                Entry {
                    log_id: id(1),
                    payload: EntryPayload::Membership(members.clone()),
                },
                at(write("a", 10, 1.0), 2),
                at(write("b", 10, 2.0), 3),
                at(write("a", 5, 3.0), 4),
            ])
            .await
            .unwrap();
        assert_eq!(out[1].appended, 1);
        assert_eq!((out[3].appended, out[3].rejected), (0, 1));
        assert!(
            out[3].messages[0].contains("out_of_order sample at t=5"),
            "{:?}",
            out[3].messages
        );
        assert_eq!(sm.last_applied(), Some(id(4)));

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(id(4)));
        let mut follower = ShardStateMachine::new(Arc::new(MemShardData::new()));
        follower.apply([at(write("c", 1, 1.0), 1)]).await.unwrap();
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let (applied, membership) = follower.applied_state().await.unwrap();
        assert_eq!((applied, membership.membership()), (Some(id(4)), &members));
        let dump = follower.data().dump().unwrap();
        let tenants: Vec<&str> = dump.iter().map(|b| b.tenant.as_str()).collect();
        assert_eq!(
            tenants,
            vec!["a", "b"],
            "install replaced the follower's own data"
        );
        assert_eq!(dump[0].series[0].samples, vec![Sample::new(10, 1.0)]);
    }

    #[tokio::test]
    async fn a_merged_entry_answers_per_part() {
        let mut sm = ShardStateMachine::new(Arc::new(MemShardData::new()));
        let part = |t: i64| match write("a", t, 1.0).payload {
            EntryPayload::Normal(w) => w,
            _ => unreachable!(),
        };
        let merged = ShardWrite::merge(&[part(10), part(5), part(20)]).unwrap();
        let out = sm
            .apply([Entry { log_id: id(1), payload: EntryPayload::Normal(merged) }])
            .await
            .unwrap();
        let parts: Vec<(u64, u64)> = out[0].parts.iter().map(|p| (p.appended, p.rejected)).collect();
        assert_eq!(parts, vec![(1, 0), (0, 1), (1, 0)]);
        assert_eq!((out[0].appended, out[0].rejected), (2, 1));
        assert!(out[0].parts[1].messages[0].contains("out_of_order sample at t=5"), "{:?}", out[0]);
    }

    #[tokio::test]
    async fn install_refuses_a_snapshot_whose_bytes_disagree_with_its_meta() {
        let mut sm = ShardStateMachine::new(Arc::new(MemShardData::new()));
        sm.apply([at(write("a", 1, 1.0), 7)]).await.unwrap();
        let mut snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        snap.meta.last_log_id = Some(id(8));
        let mut other = ShardStateMachine::new(Arc::new(MemShardData::new()));
        let err = other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("claims last log id"), "{err}");
        assert_eq!(other.last_applied(), None);
    }
}
