//! Byte codec of a state-machine snapshot of the batch form (layout in
//! `docs/format/raft.md`, "snapshot"): applied log id, membership, and the
//! content as length-prefixed write batches, checksummed.

use super::{
    decode_write_batch, encode_membership, encode_write_batch, put_log_id, put_uvarint, read_log_id,
    read_membership, CodecError, Reader, FORMAT_VERSION,
};
use aion_model::storage::WriteBatch;
use openraft::{BasicNode, LogId, StoredMembership};
use xxhash_rust::xxh3::xxh3_64;

/// The parts of a state-machine snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotParts {
    /// Last log id the snapshot covers.
    pub last_applied: Option<LogId<u64>>,
    /// Membership in effect at `last_applied`, and the log id that set it.
    pub membership: StoredMembership<u64, BasicNode>,
    /// The shard's data, as write batches that rebuild it when applied in order.
    pub batches: Vec<WriteBatch>,
}

/// Encodes a snapshot (cleared buffer): version, last applied (presence +
/// log id), membership log id (presence + log id), membership, batch count,
/// length-prefixed batches, then xxh3-64 LE of everything before it.
pub fn encode_snapshot(p: &SnapshotParts, buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(FORMAT_VERSION);
    for id in [p.last_applied.as_ref(), p.membership.log_id().as_ref()] {
        match id {
            None => buf.push(0),
            Some(id) => {
                buf.push(1);
                put_log_id(buf, id);
            }
        }
    }
    encode_membership(p.membership.membership(), buf);
    put_uvarint(buf, p.batches.len() as u64);
    let mut tmp = Vec::new();
    for b in &p.batches {
        tmp.clear();
        encode_write_batch(b, &mut tmp);
        put_uvarint(buf, tmp.len() as u64);
        buf.extend_from_slice(&tmp);
    }
    let sum = xxh3_64(buf);
    buf.extend_from_slice(&sum.to_le_bytes());
}

/// Decodes a buffer written by [`encode_snapshot`], verifying its checksum.
pub fn decode_snapshot(b: &[u8]) -> std::result::Result<SnapshotParts, CodecError> {
    if b.len() < 9 {
        return Err(CodecError(format!(
            "snapshot of {} bytes is too short",
            b.len()
        )));
    }
    let (body, sum) = b.split_at(b.len() - 8);
    let mut a = [0u8; 8];
    a.copy_from_slice(sum);
    let (stored, actual) = (u64::from_le_bytes(a), xxh3_64(body));
    if stored != actual {
        return Err(CodecError(format!(
            "snapshot checksum mismatch: stored {stored:#018x}, computed {actual:#018x}"
        )));
    }
    let mut r = Reader { buf: body };
    r.version("snapshot")?;
    let mut ids = [None, None];
    for id in &mut ids {
        *id = match r.u8("snapshot log id presence")? {
            0 => None,
            1 => Some(read_log_id(&mut r)?),
            x => return Err(CodecError(format!("bad snapshot log id presence byte {x}"))),
        };
    }
    let membership = StoredMembership::new(ids[1], read_membership(&mut r)?);
    let n = r.count(1, "snapshot batches")?;
    let mut batches = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.count(1, "snapshot batch length")?;
        batches.push(decode_write_batch(r.take(len, "snapshot batch")?)?);
    }
    r.finish("snapshot")?;
    Ok(SnapshotParts {
        last_applied: ids[0],
        membership,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::SeriesSamples;
    use aion_model::tenant::TenantId;
    use openraft::Membership;
    use std::collections::{BTreeMap, BTreeSet};

    fn batch() -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("team-a").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
                samples: vec![Sample::new(1, 1.5)],
            }],
        }
    }

    #[test]
    fn snapshots_round_trip_and_detect_corruption() {
        let m = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a")),
                (2, BasicNode::new("b")),
                (3, BasicNode::new("c")),
            ]),
        );
        let p = SnapshotParts {
            last_applied: Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 10)),
            membership: StoredMembership::new(
                Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4)),
                m,
            ),
            batches: vec![batch(), batch()],
        };
        let mut buf = Vec::new();
        encode_snapshot(&p, &mut buf);
        let d = decode_snapshot(&buf).unwrap();
        assert_eq!(d.last_applied, p.last_applied);
        assert_eq!(d.membership, p.membership);
        assert_eq!(d.batches.len(), 2);
        assert_eq!(d.batches[1].series[0].labels, batch().series[0].labels);
        buf[3] ^= 0x40;
        assert!(decode_snapshot(&buf)
            .unwrap_err()
            .0
            .contains("checksum mismatch"));
    }
}
