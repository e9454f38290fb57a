//! Binary wire form of the hot Raft RPC, `AppendEntries` (requests only;
//! the small responses, `Vote` and `InstallSnapshot` stay serde JSON).
//! Entries use the log store's entry codec, so an entry costs on the wire
//! what it costs on disk. Layout (`docs/format/raft.md`, "Raft transport"):
//!
//! ```text
//! u8 0x01 (wire version)
//! u32 LE len | vote            (codec::encode_vote)
//! u32 LE len | prev_log_id     (codec::encode_opt_log_id)
//! u32 LE len | leader_commit   (codec::encode_opt_log_id)
//! u32 LE n_entries, n_entries x (u32 LE len | entry (codec::encode_entry))
//! ```
//!
//! A JSON payload starts with `{`, never with the version byte, so a server
//! tells the two apart by the first byte ([`is_binary_append`]).

use super::codec::{self, CodecError};
use super::TypeConfig;
use bytes::Bytes;
use openraft::raft::AppendEntriesRequest;

/// Version byte that starts a binary `AppendEntries` request.
pub const APPEND_WIRE_VERSION: u8 = 1;

/// True when `payload` is a binary `AppendEntries` request (not JSON).
pub fn is_binary_append(payload: &[u8]) -> bool {
    payload.first() == Some(&APPEND_WIRE_VERSION)
}

fn put_part(buf: &mut Vec<u8>, part: &[u8]) {
    buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
    buf.extend_from_slice(part);
}

/// Appends the binary form of `req` to `buf`. Batch payloads are copied
/// as they are (they are already encoded).
pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>, buf: &mut Vec<u8>) {
    let payload: usize = req
        .entries
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(w) => w.bytes().len() + 40,
            _ => 128,
        })
        .sum();
    buf.reserve(payload + 96);
    let mut part = Vec::with_capacity(64);
    buf.push(APPEND_WIRE_VERSION);
    codec::encode_vote(&req.vote, &mut part);
    put_part(buf, &part);
    part.clear();
    codec::encode_opt_log_id(req.prev_log_id.as_ref(), &mut part);
    put_part(buf, &part);
    part.clear();
    codec::encode_opt_log_id(req.leader_commit.as_ref(), &mut part);
    put_part(buf, &part);
    buf.extend_from_slice(&(req.entries.len() as u32).to_le_bytes());
    for e in &req.entries {
        // Length placeholder, the entry in place, then the real length.
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        codec::append_entry(e, buf);
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

struct Parts<'a> {
    buf: &'a [u8],
}

impl<'a> Parts<'a> {
    fn u32(&mut self, what: &str) -> Result<u32, CodecError> {
        if self.buf.len() < 4 {
            return Err(CodecError(format!("truncated append-entries {what}: {} bytes left", self.buf.len())));
        }
        let (h, t) = self.buf.split_at(4);
        self.buf = t;
        let mut a = [0u8; 4];
        a.copy_from_slice(h);
        Ok(u32::from_le_bytes(a))
    }

    fn part(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        if self.buf.len() < n {
            return Err(CodecError(format!(
                "truncated append-entries {what}: need {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }
}

/// Decodes a request written by [`encode_append`]. Batch payloads share
/// `b`'s memory (validated, not copied or decoded).
pub fn decode_append(b: Bytes) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    let (version, rest) = b
        .split_first()
        .ok_or_else(|| CodecError("empty append-entries payload".into()))?;
    if *version != APPEND_WIRE_VERSION {
        return Err(CodecError(format!(
            "append-entries wire version {version}, this build reads {APPEND_WIRE_VERSION}"
        )));
    }
    let mut r = Parts { buf: rest };
    let vote = codec::decode_vote(r.part("vote")?)?;
    let prev_log_id = codec::decode_opt_log_id(r.part("prev_log_id")?)?;
    let leader_commit = codec::decode_opt_log_id(r.part("leader_commit")?)?;
    let n = r.u32("entry count")? as usize;
    // Every entry takes at least its 4-byte length.
    if n.saturating_mul(4) > r.buf.len() {
        return Err(CodecError(format!("append-entries entry count {n} exceeds the {} bytes left", r.buf.len())));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let part = r.part("entry")?;
        let start = part.as_ptr() as usize - b.as_ptr() as usize;
        entries.push(codec::decode_entry_bytes(b.slice(start..start + part.len()))?);
    }
    if !r.buf.is_empty() {
        return Err(CodecError(format!("{} trailing bytes after append-entries", r.buf.len())));
    }
    Ok(AppendEntriesRequest { vote, prev_log_id, leader_commit, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ShardWrite;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{SeriesSamples, WriteBatch};
    use aion_model::tenant::TenantId;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
    use std::collections::{BTreeMap, BTreeSet};

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn request() -> AppendEntriesRequest<TypeConfig> {
        let batch = WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("a", "b")]),
                samples: vec![Sample::new(1_000, 1.5), Sample::new(2_000, f64::NAN)],
            }],
        };
        let nodes: BTreeMap<u64, openraft::BasicNode> =
            [(1, openraft::BasicNode::new("127.0.0.1:1")), (2, openraft::BasicNode::new("127.0.0.1:2"))].into();
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(id(2, 9)),
            leader_commit: Some(id(3, 10)),
            entries: vec![
                Entry { log_id: id(3, 10), payload: EntryPayload::Blank },
                Entry { log_id: id(3, 11), payload: EntryPayload::Normal(ShardWrite::from(batch)) },
                Entry { log_id: id(3, 12), payload: EntryPayload::Membership(membership) },
            ],
        }
    }

    #[test]
    fn append_request_round_trips_and_is_smaller_than_json() {
        let req = request();
        let mut buf = Vec::new();
        encode_append(&req, &mut buf);
        assert!(is_binary_append(&buf));
        let back = decode_append(Bytes::from(buf.clone())).unwrap();
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
        assert_eq!(back.leader_commit, req.leader_commit);
        assert_eq!(format!("{:?}", back.entries), format!("{:?}", req.entries));
        let json = serde_json::to_vec(&req).unwrap();
        assert!(!is_binary_append(&json));
        assert!(buf.len() < json.len(), "binary {} bytes vs JSON {}", buf.len(), json.len());
    }

    #[test]
    fn truncated_or_garbled_requests_are_errors() {
        let mut buf = Vec::new();
        encode_append(&request(), &mut buf);
        for cut in [0, 1, 5, buf.len() / 2, buf.len() - 1] {
            assert!(decode_append(Bytes::copy_from_slice(&buf[..cut])).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(decode_append(Bytes::from(bad)).unwrap_err().to_string().contains("version 9"));
        let mut long = buf;
        long.push(0);
        assert!(decode_append(Bytes::from(long)).unwrap_err().to_string().contains("trailing"));
    }
}
