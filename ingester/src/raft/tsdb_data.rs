//! [`TsdbShardData`]: a shard replica whose state is a [`Tsdb`].
//!
//! - Apply: the Raft log is the WAL. A committed batch goes to
//!   [`Tsdb::apply_replicated`] (head + series/chunks, no TSDB WAL record);
//!   series refs are assigned in apply order, so every replica agrees.
//! - Restart: every TSDB checkpoint records the last applied log id and the
//!   membership (meta keys `raft_applied` / `raft_membership`) atomically
//!   with the head state; [`ShardStateMachine::open`] hands that position to
//!   openraft, which re-applies only the log after it.
//! - Snapshot: the TSDB is checkpointed, then its persisted column families
//!   are dumped (`docs/format/raft.md`, "TSDB shard snapshot"); install
//!   replaces the replica's whole TSDB with the dump. Kept in memory
//!   (`Cursor<Vec<u8>>`) for now.
//! - v1 layout: one TSDB (one RocksDB) per hosted shard, in
//!   [`shard_tsdb_dir`] = `<data>/shards/<id>/tsdb`; the Raft logs of all
//!   shards share one [`RaftLogDb`](super::RaftLogDb).

use super::codec;
use super::state_machine::{ShardData, ShardStateMachine};
use super::{NodeId, ShardId, ShardWrite};
use crate::codec::{put_bytes, Reader};
use crate::config::TsdbConfig;
use crate::error::IngesterError;
use crate::tsdb::Tsdb;
use aion_model::storage::{
    AppendOutcome, StorageError as ModelError, WriteBatch,
};
use aion_model::tenant::TenantId;
use openraft::{BasicNode, LogId, StoredMembership};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// Version byte of a TSDB shard snapshot.
const SNAPSHOT_VERSION: u8 = 1;

/// The TSDB directory of `shard` under an ingester's data directory.
pub fn shard_tsdb_dir(data_dir: &Path, shard: ShardId) -> PathBuf {
    data_dir.join("shards").join(shard.to_string()).join("tsdb")
}

/// A shard state machine over a TSDB.
pub type TsdbStateMachine = ShardStateMachine<TsdbShardData>;

/// A [`ShardData`] backend that is one TSDB, replicated by Raft.
pub struct TsdbShardData {
    tsdb: Tsdb,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Corruption(format!("{what}: {e}"))
}

fn encode_applied(id: Option<&LogId<NodeId>>) -> Vec<u8> {
    let mut b = Vec::with_capacity(26);
    codec::encode_opt_log_id(id, &mut b);
    b
}

/// `len u8 | opt_log_id (of the membership entry) | membership`.
fn encode_membership(m: &StoredMembership<NodeId, BasicNode>) -> Vec<u8> {
    let id = encode_applied(m.log_id().as_ref());
    let mut b = Vec::with_capacity(64);
    b.push(id.len() as u8);
    b.extend_from_slice(&id);
    codec::encode_membership(m.membership(), &mut b);
    b
}

fn decode_membership(b: &[u8]) -> Result<StoredMembership<NodeId, BasicNode>, ModelError> {
    let bad = |e: &dyn std::fmt::Display| corrupt("shard membership record", e);
    let (&len, rest) = b.split_first().ok_or_else(|| bad(&"empty"))?;
    if rest.len() < usize::from(len) {
        return Err(bad(&format!("log id of {len} bytes, {} left", rest.len())));
    }
    let (id, m) = rest.split_at(usize::from(len));
    let id = codec::decode_opt_log_id(id).map_err(|e| bad(&e))?;
    let m = codec::decode_membership(m).map_err(|e| bad(&e))?;
    Ok(StoredMembership::new(id, m))
}

impl TsdbShardData {
    /// Opens (creating if missing) the shard's TSDB in `dir`.
    pub fn open(dir: &Path, cfg: TsdbConfig) -> Result<Self, IngesterError> {
        Ok(Self::new(Tsdb::open(dir, cfg)?))
    }

    /// Wraps an open TSDB (it must only ever be written through Raft).
    pub fn new(tsdb: Tsdb) -> Self {
        Self { tsdb }
    }

    /// The TSDB, for queries ([`Queryable`]), stats and `flush`.
    pub fn tsdb(&self) -> &Tsdb {
        &self.tsdb
    }
}

impl ShardData for TsdbShardData {
    /// Refused: a replicated TSDB takes batches only with their log index.
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, ModelError> {
        Err(ModelError::Unavailable(format!(
            "batch of tenant {} without a log index: a replicated TSDB is written only by Raft apply",
            batch.tenant
        )))
    }

    fn dump(&self) -> Result<Vec<WriteBatch>, ModelError> {
        let mut out = Vec::new();
        for t in self.tsdb.tenants() {
            let tenant = TenantId::new(&t).map_err(|e| corrupt("stored tenant", e))?;
            out.push(super::state_machine::dump_tenant(&self.tsdb, tenant)?);
        }
        Ok(out)
    }

    /// Refused: a TSDB replica is replaced by a byte dump
    /// ([`ShardData::install_snapshot_bytes`]), never rebuilt from batches.
    fn restore(&self, batches: Vec<WriteBatch>) -> Result<(), ModelError> {
        Err(ModelError::Unavailable(format!(
            "restore of {} batches: a TSDB shard installs byte dumps only",
            batches.len()
        )))
    }

    fn apply_entry(
        &self,
        log_id: &LogId<NodeId>,
        write: &ShardWrite,
    ) -> Result<Vec<AppendOutcome>, ModelError> {
        let applied = encode_applied(Some(log_id));
        Ok(self.tsdb.apply_replicated_write(log_id.index, &applied, write)?)
    }

    fn known_series(&self, tenant: &str, packed: &[&[u8]]) -> Option<Vec<Option<u64>>> {
        self.tsdb.known_series(tenant, packed)
    }

    fn apply_marker(
        &self,
        log_id: &LogId<NodeId>,
        membership: Option<&StoredMembership<NodeId, BasicNode>>,
    ) -> Result<(), ModelError> {
        let applied = encode_applied(Some(log_id));
        self.tsdb.apply_replicated(
            log_id.index,
            &applied,
            membership.map(encode_membership),
            None,
        )?;
        Ok(())
    }

    fn persisted_state(
        &self,
    ) -> Result<Option<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)>, ModelError>
    {
        let mark = self.tsdb.replica_mark();
        let Some(applied) = mark.applied else {
            return Ok(None);
        };
        let applied =
            codec::decode_opt_log_id(&applied).map_err(|e| corrupt("shard applied log id", e))?;
        let membership = match mark.membership {
            Some(m) => decode_membership(&m)?,
            None => StoredMembership::default(),
        };
        Ok(Some((applied, membership)))
    }

    fn snapshot_bytes(
        &self,
        last_applied: Option<LogId<NodeId>>,
        membership: &StoredMembership<NodeId, BasicNode>,
    ) -> Result<Vec<u8>, ModelError> {
        let dump = self.tsdb.dump_state()?;
        let applied = encode_applied(last_applied.as_ref());
        if last_applied.is_some() && self.tsdb.replica_mark().applied.as_ref() != Some(&applied) {
            return Err(ModelError::Unavailable(format!(
                "TSDB position disagrees with the state machine's {last_applied:?}"
            )));
        }
        let mut out = Vec::with_capacity(dump.len() + 128);
        out.push(SNAPSHOT_VERSION);
        put_bytes(&mut out, &applied);
        put_bytes(&mut out, &encode_membership(membership));
        put_bytes(&mut out, &dump);
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    fn install_snapshot_bytes(
        &self,
        expected: Option<LogId<NodeId>>,
        bytes: &[u8],
    ) -> Result<StoredMembership<NodeId, BasicNode>, ModelError> {
        let bad = |e: &dyn std::fmt::Display| corrupt("TSDB shard snapshot", e);
        if bytes.len() < 9 {
            return Err(bad(&format!("{} bytes is too short", bytes.len())));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut a = [0u8; 8];
        a.copy_from_slice(sum);
        let (stored, actual) = (u64::from_le_bytes(a), xxh3_64(body));
        if stored != actual {
            return Err(bad(&format!(
                "checksum mismatch: stored {stored:#018x}, computed {actual:#018x}"
            )));
        }
        let version = body.first().copied().unwrap_or(0);
        if version != SNAPSHOT_VERSION {
            return Err(bad(&format!(
                "version {version}, this build reads {SNAPSHOT_VERSION}"
            )));
        }
        let mut r = Reader::new(&body[1..]);
        let mut take = |what: &str| -> Result<&[u8], ModelError> {
            let n = r.count(0, what).map_err(|e| bad(&e))?;
            r.take(n, what).map_err(|e| bad(&e))
        };
        let applied = codec::decode_opt_log_id(take("applied log id")?).map_err(|e| bad(&e))?;
        let membership = decode_membership(take("membership")?)?;
        let dump = take("TSDB dump")?;
        r.finish("TSDB shard snapshot").map_err(|e| bad(&e))?;
        if applied != expected {
            return Err(bad(&format!(
                "snapshot claims last log id {expected:?} but its bytes hold {applied:?}"
            )));
        }
        self.tsdb.install_state(dump)?;
        Ok(membership)
    }
}
