//! Byte codecs of everything the Raft log store persists: log ids, votes,
//! membership configs, write batches and whole log entries. Layouts, with
//! their version byte, are in `docs/format/raft.md`. Hand-written (no serde
//! format) so the on-disk bytes are fixed by this file alone and a write
//! batch costs ~1 byte per timestamp delta plus 8 per value.

use super::{ShardWrite, TypeConfig};
use aion_model::labels::{Label, Labels};
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use bytes::Bytes;
use openraft::{BasicNode, Entry, EntryPayload, LogId, Membership, Vote};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

mod snapshot;

pub use snapshot::{decode_snapshot, encode_snapshot, SnapshotParts};

/// Version byte that starts every encoded entry, vote and log-id value.
pub const FORMAT_VERSION: u8 = 1;

/// Version byte of a log entry holding a merged write (tag 3); every other
/// entry is still written with [`FORMAT_VERSION`], and both are read.
pub const ENTRY_PARTS_VERSION: u8 = 2;

/// Version byte of a normal entry (tag 1 or 3) whose write is in the
/// series-by-ref form ([`ShardWrite::names_refs`]).
pub const ENTRY_REFS_VERSION: u8 = 3;

const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;
const TAG_NORMAL_PARTS: u8 = 3;

/// A persisted Raft record failed to decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("corrupt raft record: {0}")]
pub struct CodecError(pub String);

type Result<T> = std::result::Result<T, CodecError>;

pub(super) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(super) fn put_ivarint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub(super) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Bounds-checked cursor: every getter names what it was reading on failure.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CodecError(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u64_le(&mut self, what: &str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }

    pub(super) fn uvarint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError(format!("varint too long in {what}")))
    }

    pub(super) fn ivarint(&mut self, what: &str) -> Result<i64> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A count whose elements take at least `min_size` bytes each.
    pub(super) fn count(&mut self, min_size: u64, what: &str) -> Result<usize> {
        let n = self.uvarint(what)?;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() as u64 {
            return Err(CodecError(format!(
                "{what} count {n} exceeds the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n as usize)
    }

    pub(super) fn str(&mut self, what: &str) -> Result<&'a str> {
        let n = self.count(1, what)?;
        std::str::from_utf8(self.take(n, what)?)
            .map_err(|e| CodecError(format!("{what} is not UTF-8: {e}")))
    }

    pub(super) fn version(&mut self, what: &str) -> Result<()> {
        match self.u8(what)? {
            FORMAT_VERSION => Ok(()),
            v => Err(CodecError(format!(
                "unknown {what} version {v} (expected {FORMAT_VERSION})"
            ))),
        }
    }

    pub(super) fn finish(&self, what: &str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError(format!(
                "{} trailing bytes after {what}",
                self.buf.len()
            )))
        }
    }
}

/// Appends a write batch: tenant, series count, then per series its labels
/// and samples (timestamps zig-zag varint deltas, values raw f64 bits LE).
pub fn encode_write_batch(batch: &WriteBatch, buf: &mut Vec<u8>) {
    put_str(buf, batch.tenant.as_str());
    put_uvarint(buf, batch.series.len() as u64);
    for s in &batch.series {
        put_uvarint(buf, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_str(buf, &l.name);
            put_str(buf, &l.value);
        }
        put_uvarint(buf, s.samples.len() as u64);
        let mut prev = 0i64;
        for x in &s.samples {
            put_ivarint(buf, x.t.wrapping_sub(prev));
            prev = x.t;
            buf.extend_from_slice(&x.v.to_bits().to_le_bytes());
        }
    }
}

pub(super) fn read_labels(r: &mut Reader<'_>) -> Result<Labels> {
    let n = r.count(2, "label count")?;
    let mut out: Vec<Label> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("label name")?;
        let value = r.str("label value")?;
        if let Some(prev) = out.last() {
            if prev.name.as_str() >= name {
                return Err(CodecError(format!(
                    "labels not sorted/unique: {:?} then {name:?}",
                    prev.name
                )));
            }
        }
        out.push(Label::new(name, value));
    }
    Ok(Labels::from_sorted(out))
}

fn read_write_batch(r: &mut Reader<'_>) -> Result<WriteBatch> {
    let tenant = r.str("tenant")?;
    let tenant =
        TenantId::new(tenant).map_err(|e| CodecError(format!("tenant {tenant:?}: {e}")))?;
    let n = r.count(2, "series")?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = read_labels(r)?;
        let ns = r.count(9, "samples")?;
        let mut samples = Vec::with_capacity(ns);
        let mut t = 0i64;
        for _ in 0..ns {
            t = t.wrapping_add(r.ivarint("timestamp delta")?);
            samples.push(Sample::new(t, f64::from_bits(r.u64_le("sample value")?)));
        }
        series.push(SeriesSamples { labels, samples });
    }
    Ok(WriteBatch { tenant, series })
}

/// Decodes a whole buffer written by [`encode_write_batch`].
pub fn decode_write_batch(b: &[u8]) -> std::result::Result<WriteBatch, CodecError> {
    let mut r = Reader { buf: b };
    let batch = read_write_batch(&mut r)?;
    r.finish("write batch")?;
    Ok(batch)
}

fn put_log_id(buf: &mut Vec<u8>, id: &LogId<u64>) {
    buf.extend_from_slice(&id.leader_id.term.to_le_bytes());
    buf.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    buf.extend_from_slice(&id.index.to_le_bytes());
}

fn read_log_id(r: &mut Reader<'_>) -> Result<LogId<u64>> {
    let term = r.u64_le("log id term")?;
    let node = r.u64_le("log id node")?;
    let index = r.u64_le("log id index")?;
    Ok(LogId::new(
        openraft::CommittedLeaderId::new(term, node),
        index,
    ))
}

/// Appends an optional log id: presence byte, then term, node, index (u64 LE each).
pub fn encode_opt_log_id(id: Option<&LogId<u64>>, buf: &mut Vec<u8>) {
    buf.push(FORMAT_VERSION);
    match id {
        None => buf.push(0),
        Some(id) => {
            buf.push(1);
            put_log_id(buf, id);
        }
    }
}

/// Decodes a value written by [`encode_opt_log_id`].
pub fn decode_opt_log_id(b: &[u8]) -> std::result::Result<Option<LogId<u64>>, CodecError> {
    let mut r = Reader { buf: b };
    r.version("log id")?;
    let id = match r.u8("log id presence")? {
        0 => None,
        1 => Some(read_log_id(&mut r)?),
        x => return Err(CodecError(format!("bad log id presence byte {x}"))),
    };
    r.finish("log id")?;
    Ok(id)
}

/// Encodes a vote: version, term, node (u64 LE), committed (0/1).
pub fn encode_vote(v: &Vote<u64>, buf: &mut Vec<u8>) {
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&v.leader_id.term.to_le_bytes());
    buf.extend_from_slice(&v.leader_id.node_id.to_le_bytes());
    buf.push(u8::from(v.committed));
}

/// Decodes a value written by [`encode_vote`].
pub fn decode_vote(b: &[u8]) -> std::result::Result<Vote<u64>, CodecError> {
    let mut r = Reader { buf: b };
    r.version("vote")?;
    let term = r.u64_le("vote term")?;
    let node = r.u64_le("vote node")?;
    let committed = match r.u8("vote committed")? {
        0 => false,
        1 => true,
        x => return Err(CodecError(format!("bad vote committed byte {x}"))),
    };
    r.finish("vote")?;
    Ok(if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

/// Appends a membership: configs (each a set of voter ids), then nodes (id, address).
pub fn encode_membership(m: &Membership<u64, BasicNode>, buf: &mut Vec<u8>) {
    let configs = m.get_joint_config();
    put_uvarint(buf, configs.len() as u64);
    for c in configs {
        put_uvarint(buf, c.len() as u64);
        for id in c {
            put_uvarint(buf, *id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    put_uvarint(buf, nodes.len() as u64);
    for (id, n) in nodes {
        put_uvarint(buf, *id);
        put_str(buf, &n.addr);
    }
}

fn read_membership(r: &mut Reader<'_>) -> Result<Membership<u64, BasicNode>> {
    let nc = r.count(1, "membership configs")?;
    let mut configs = Vec::with_capacity(nc);
    for _ in 0..nc {
        let n = r.count(1, "voters")?;
        let mut set = BTreeSet::new();
        for _ in 0..n {
            set.insert(r.uvarint("voter id")?);
        }
        configs.push(set);
    }
    let nn = r.count(2, "membership nodes")?;
    let mut nodes = BTreeMap::new();
    for _ in 0..nn {
        let id = r.uvarint("node id")?;
        nodes.insert(id, BasicNode::new(r.str("node address")?));
    }
    let voters: BTreeSet<u64> = configs.iter().flatten().copied().collect();
    if let Some(missing) = voters.iter().find(|v| !nodes.contains_key(v)) {
        return Err(CodecError(format!("voter {missing} has no node entry")));
    }
    Ok(Membership::new(configs, nodes))
}

/// Decodes a whole buffer written by [`encode_membership`].
pub fn decode_membership(b: &[u8]) -> std::result::Result<Membership<u64, BasicNode>, CodecError> {
    let mut r = Reader { buf: b };
    let m = read_membership(&mut r)?;
    r.finish("membership")?;
    Ok(m)
}

/// Encodes a log entry (cleared buffer): version, log id, payload tag, payload.
pub fn encode_entry(e: &Entry<TypeConfig>, buf: &mut Vec<u8>) {
    buf.clear();
    append_entry(e, buf);
}

/// Appends the encoding of [`encode_entry`] to `buf` (not cleared).
pub fn append_entry(e: &Entry<TypeConfig>, buf: &mut Vec<u8>) {
    let (parts, refs) = match &e.payload {
        EntryPayload::Normal(w) => (w.raw_parts(), w.names_refs()),
        _ => (&[][..], false),
    };
    buf.push(match (refs, parts.is_empty()) {
        (true, _) => ENTRY_REFS_VERSION,
        (false, true) => FORMAT_VERSION,
        (false, false) => ENTRY_PARTS_VERSION,
    });
    put_log_id(buf, &e.log_id);
    match &e.payload {
        EntryPayload::Blank => buf.push(TAG_BLANK),
        EntryPayload::Normal(w) if parts.is_empty() => {
            buf.push(TAG_NORMAL);
            buf.extend_from_slice(w.bytes());
        }
        EntryPayload::Normal(w) => {
            buf.push(TAG_NORMAL_PARTS);
            put_uvarint(buf, parts.len() as u64);
            for &n in parts {
                put_uvarint(buf, u64::from(n));
            }
            buf.extend_from_slice(w.bytes());
        }
        EntryPayload::Membership(m) => {
            buf.push(TAG_MEMBERSHIP);
            encode_membership(m, buf);
        }
    }
}

/// Decodes a value written by [`encode_entry`] (copies a batch payload).
pub fn decode_entry(b: &[u8]) -> std::result::Result<Entry<TypeConfig>, CodecError> {
    decode_entry_with(b, Bytes::copy_from_slice, false)
}

/// [`decode_entry`] of an owned buffer: a batch payload shares `b`'s
/// memory instead of being copied (it is validated, not decoded).
pub fn decode_entry_bytes(b: Bytes) -> std::result::Result<Entry<TypeConfig>, CodecError> {
    decode_shared(b, false)
}

/// [`decode_entry_bytes`] of an entry this node wrote to its own log: a
/// batch payload's framing is checked, not its strings
/// ([`ShardWrite::from_local`]).
pub fn decode_local_entry(b: Bytes) -> std::result::Result<Entry<TypeConfig>, CodecError> {
    decode_shared(b, true)
}

fn decode_shared(b: Bytes, local: bool) -> std::result::Result<Entry<TypeConfig>, CodecError> {
    let slice = |payload: &[u8]| {
        let start = payload.as_ptr() as usize - b.as_ptr() as usize;
        b.slice(start..start + payload.len())
    };
    decode_entry_with(&b, slice, local)
}

fn decode_entry_with(
    b: &[u8],
    batch_bytes: impl FnOnce(&[u8]) -> Bytes,
    local: bool,
) -> std::result::Result<Entry<TypeConfig>, CodecError> {
    let mut r = Reader { buf: b };
    let version = entry_version(&mut r)?;
    let log_id = read_log_id(&mut r)?;
    let refs = version == ENTRY_REFS_VERSION;
    let payload = match r.u8("entry payload tag")? {
        TAG_BLANK if !refs => EntryPayload::Blank,
        TAG_NORMAL if refs => {
            let bytes = batch_bytes(std::mem::take(&mut r.buf));
            EntryPayload::Normal(ShardWrite::from_encoded_refs(bytes, local)?)
        }
        TAG_NORMAL => {
            let bytes = batch_bytes(std::mem::take(&mut r.buf));
            EntryPayload::Normal(if local { ShardWrite::from_local(bytes)? } else { ShardWrite::from_encoded(bytes)? })
        }
        TAG_NORMAL_PARTS if version != FORMAT_VERSION => {
            let n = r.count(1, "entry parts")?;
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                let p = r.uvarint("entry part size")?;
                parts.push(u32::try_from(p).map_err(|_| CodecError(format!("entry part of {p} series")))?);
            }
            let rest = std::mem::take(&mut r.buf);
            EntryPayload::Normal(ShardWrite::from_encoded_parts(batch_bytes(rest), parts, local, refs)?)
        }
        TAG_MEMBERSHIP if !refs => EntryPayload::Membership(read_membership(&mut r)?),
        t => return Err(CodecError(format!("unknown entry payload tag {t} (entry version {version})"))),
    };
    r.finish("log entry")?;
    Ok(Entry { log_id, payload })
}

/// Reads only the log id of an encoded entry (no payload decoding).
pub fn decode_entry_log_id(b: &[u8]) -> std::result::Result<LogId<u64>, CodecError> {
    let mut r = Reader { buf: b };
    entry_version(&mut r)?;
    read_log_id(&mut r)
}

/// An entry's version byte: [`FORMAT_VERSION`], [`ENTRY_PARTS_VERSION`] or
/// [`ENTRY_REFS_VERSION`].
fn entry_version(r: &mut Reader<'_>) -> Result<u8> {
    match r.u8("log entry")? {
        v @ (FORMAT_VERSION | ENTRY_PARTS_VERSION | ENTRY_REFS_VERSION) => Ok(v),
        v => Err(CodecError(format!(
            "unknown log entry version {v} (expected {FORMAT_VERSION} to {ENTRY_REFS_VERSION}; \
             written by a newer Aion?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("team-a").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
                samples: vec![
                    Sample::new(i64::MIN, 1.5),
                    Sample::new(i64::MAX, f64::from_bits(0x7ff0_0000_0000_0002)),
                    Sample::new(1_700_000_000_000, -0.0),
                ],
            }],
        }
    }

    #[test]
    fn entries_round_trip_for_every_payload() {
        let id = LogId::new(openraft::CommittedLeaderId::new(7, 3), 42);
        let m = Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::new("c")),
                (9, BasicNode::new("l")),
            ]),
        );
        let merged = ShardWrite::merge(&[ShardWrite::from(batch()), ShardWrite::from(batch())]).unwrap();
        let named = ShardWrite::from(batch()).name_by_ref(|_, p| Some(vec![Some(12345); p.len()]));
        let named_merged = ShardWrite::merge(&[named.clone(), ShardWrite::from(batch())]).unwrap();
        let payloads = [
            EntryPayload::Blank,
            EntryPayload::Normal(ShardWrite::from(batch())),
            EntryPayload::Normal(merged),
            EntryPayload::Normal(named),
            EntryPayload::Normal(named_merged),
            EntryPayload::Membership(m),
        ];
        let mut buf = Vec::new();
        for p in payloads {
            let e = Entry::<TypeConfig> {
                log_id: id,
                payload: p,
            };
            encode_entry(&e, &mut buf);
            let d = decode_entry(&buf).unwrap();
            let shared = decode_entry_bytes(Bytes::from(buf.clone())).unwrap();
            assert_eq!(format!("{:?}", shared.payload), format!("{:?}", d.payload));
            let local = decode_local_entry(Bytes::from(buf.clone())).unwrap();
            assert_eq!(format!("{:?}", local.payload), format!("{:?}", d.payload));
            assert_eq!(d.log_id, id);
            assert_eq!(decode_entry_log_id(&buf).unwrap(), id);
            assert_eq!(format!("{:?}", d.payload), format!("{:?}", e.payload));
            if let (EntryPayload::Normal(a), EntryPayload::Normal(b)) = (&d.payload, &e.payload) {
                assert_eq!(a, b);
                assert_eq!(buf[0] == ENTRY_REFS_VERSION, b.names_refs());
            }
        }
    }

    #[test]
    fn version_3_is_only_for_writes_by_ref() {
        let id = LogId::new(openraft::CommittedLeaderId::new(1, 1), 1);
        let e = Entry::<TypeConfig> { log_id: id, payload: EntryPayload::Blank };
        let mut buf = Vec::new();
        encode_entry(&e, &mut buf);
        assert_eq!(buf[0], FORMAT_VERSION);
        buf[0] = ENTRY_REFS_VERSION;
        assert!(decode_entry(&buf).unwrap_err().0.contains("unknown entry payload tag 0"));
        buf[0] = 4;
        assert!(decode_entry(&buf).unwrap_err().0.contains("unknown log entry version 4"));
        // A plain write read as a ref-form one fails its framing check, not a panic.
        let e = Entry::<TypeConfig> { log_id: id, payload: EntryPayload::Normal(ShardWrite::from(batch())) };
        encode_entry(&e, &mut buf);
        buf[0] = ENTRY_REFS_VERSION;
        assert!(decode_entry(&buf).is_err());
    }

    #[test]
    fn write_batch_keeps_extreme_timestamps_and_nan_bits() {
        let mut buf = Vec::new();
        encode_write_batch(&batch(), &mut buf);
        let d = decode_write_batch(&buf).unwrap();
        let (a, b) = (&d.series[0].samples, &batch().series[0].samples);
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.t, y.t);
            assert_eq!(x.v.to_bits(), y.v.to_bits());
        }
    }

    #[test]
    fn votes_and_log_ids_round_trip_and_corruption_is_reported() {
        let mut buf = Vec::new();
        for v in [Vote::new(3, 9), Vote::new_committed(u64::MAX, 0)] {
            buf.clear();
            encode_vote(&v, &mut buf);
            assert_eq!(decode_vote(&buf).unwrap(), v);
        }
        assert!(decode_vote(&buf[..5])
            .unwrap_err()
            .0
            .contains("truncated vote term"));
        buf[0] = 9;
        assert!(decode_vote(&buf).unwrap_err().0.contains("version 9"));
        let id = LogId::new(openraft::CommittedLeaderId::new(1, 2), 3);
        for x in [None, Some(&id)] {
            buf.clear();
            encode_opt_log_id(x, &mut buf);
            assert_eq!(decode_opt_log_id(&buf).unwrap().as_ref(), x);
        }
        assert!(decode_entry(&[FORMAT_VERSION])
            .unwrap_err()
            .0
            .contains("truncated"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode_entry(&b);
            let _ = decode_snapshot(&b);
            let _ = decode_vote(&b);
            let _ = decode_opt_log_id(&b);
            let mut with_version = vec![FORMAT_VERSION];
            with_version.extend_from_slice(&b);
            let _ = decode_entry(&with_version);
        }
    }
}
