//! Key encoding of every column family (see `docs/format/rocksdb.md`).
//!
//! Integers in keys are big-endian so that RocksDB's bytewise order is numeric
//! order; signed timestamps have their sign bit flipped first so negative
//! times sort before positive ones.

/// Column family holding format metadata (version, next series ref, checkpoint).
pub(crate) const CF_META: &str = "meta";
/// Column family: series ref -> tenant and labels.
pub(crate) const CF_SERIES: &str = "series";
/// Column family: (tenant, name, value, ref) -> empty.
pub(crate) const CF_POSTINGS: &str = "postings";
/// Column family: (block, ref, chunk mint) -> closed chunk.
pub(crate) const CF_CHUNKS: &str = "chunks";
/// Column family: series ref -> head state (open chunk, last sample) at the last checkpoint.
pub(crate) const CF_HEAD: &str = "head";
/// Column family: WAL sequence number -> write batch.
pub(crate) const CF_WAL: &str = "wal";
/// Every column family, in open order.
pub(crate) const ALL_CFS: [&str; 6] = [CF_META, CF_SERIES, CF_POSTINGS, CF_CHUNKS, CF_HEAD, CF_WAL];

/// Meta key: format version (1 byte value).
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Meta key: next series ref to assign (u64 BE value).
pub(crate) const META_NEXT_REF: &[u8] = b"next_series_ref";
/// Meta key: last WAL sequence number covered by the checkpoint (u64 BE value).
pub(crate) const META_CHECKPOINT_SEQ: &[u8] = b"checkpoint_seq";
/// Meta key: width in ms of the chunk key span (u64 BE value; absent = [`BLOCK_MS`]).
pub(crate) const META_CHUNK_SPAN: &[u8] = b"chunk_span_ms";

/// On-disk format version this build writes: 2 records `chunk_span_ms`
/// (so builds that predate spans, and would read its chunk keys as 2 h
/// blocks, refuse the directory instead of misreading it).
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The version of directories from before chunk spans (2 h blocks); still read.
pub(crate) const FORMAT_VERSION_BLOCKS: u8 = 1;
/// Version byte leading every value this build writes.
pub(crate) const VALUE_VERSION: u8 = 1;

/// Width of a time block: chunks never span two blocks; chunk keys and retention group blocks into spans.
pub const BLOCK_MS: i64 = 2 * 3600 * 1000;

/// Start of the block holding `t`.
pub(crate) fn block_start(t: i64) -> i64 {
    span_start(t, BLOCK_MS)
}

/// Start of the `width`-ms span (aligned to the epoch) holding `t`.
pub(crate) fn span_start(t: i64, width: i64) -> i64 {
    let b = i128::from(t).div_euclid(i128::from(width)) * i128::from(width);
    b.max(i128::from(i64::MIN)) as i64
}

/// Widest chunk key span a new TSDB gets: a day.
pub(crate) const MAX_CHUNK_SPAN_MS: i64 = 12 * BLOCK_MS;

/// The chunk key span a new TSDB with `retention_ms` gets: a tenth of the
/// retention (as Prometheus sizes its largest blocks), in whole blocks,
/// between one block and a day. Retention drops whole spans, so data is
/// kept up to one span past the retention window.
pub(crate) fn chunk_span_for(retention_ms: i64) -> i64 {
    let tenth = retention_ms / 10;
    (tenth - tenth.rem_euclid(BLOCK_MS)).clamp(BLOCK_MS, MAX_CHUNK_SPAN_MS)
}

/// Order-preserving big-endian encoding of a signed timestamp.
pub(crate) fn ts_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`ts_bytes`].
pub(crate) fn ts_from_bytes(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Key of a u64-keyed record (series, head, WAL).
pub(crate) fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Parses an 8-byte big-endian key.
pub(crate) fn parse_u64_key(k: &[u8]) -> Option<u64> {
    let a: [u8; 8] = k.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

/// Chunks CF key: `span_start | series_ref | chunk_mint`, 24 bytes.
pub(crate) fn chunk_key(span: i64, series: u64, mint: i64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&ts_bytes(span));
    k[8..16].copy_from_slice(&series.to_be_bytes());
    k[16..].copy_from_slice(&ts_bytes(mint));
    k
}

/// Chunks CF key prefix of one series within one span, 16 bytes.
pub(crate) fn chunk_prefix(span: i64, series: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ts_bytes(span));
    k[8..].copy_from_slice(&series.to_be_bytes());
    k
}

/// Parses a chunks CF key into `(span_start, series_ref, mint)`.
pub(crate) fn parse_chunk_key(k: &[u8]) -> Option<(i64, u64, i64)> {
    if k.len() != 24 {
        return None;
    }
    let block = ts_from_bytes(k[..8].try_into().ok()?);
    let series = u64::from_be_bytes(k[8..16].try_into().ok()?);
    let mint = ts_from_bytes(k[16..].try_into().ok()?);
    Some((block, series, mint))
}

/// Postings key prefix selecting every value of label `name` in `tenant`:
/// `len(tenant) u8 | tenant | len(name) u16 BE | name`.
pub(crate) fn postings_name_prefix(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + tenant.len() + name.len() + 12);
    k.push(tenant.len().min(255) as u8);
    k.extend_from_slice(tenant.as_bytes());
    k.extend_from_slice(&(name.len().min(u16::MAX as usize) as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Postings key prefix selecting `name="value"` in `tenant`: the name prefix,
/// then `len(value) u32 BE | value`.
pub(crate) fn postings_value_prefix(tenant: &str, name: &str, value: &str) -> Vec<u8> {
    let mut k = postings_name_prefix(tenant, name);
    k.extend_from_slice(&(value.len().min(u32::MAX as usize) as u32).to_be_bytes());
    k.extend_from_slice(value.as_bytes());
    k
}

/// Full postings key: the value prefix, then `series_ref u64 BE`.
pub(crate) fn postings_key(tenant: &str, name: &str, value: &str, series: u64) -> Vec<u8> {
    let mut k = postings_value_prefix(tenant, name, value);
    k.extend_from_slice(&series.to_be_bytes());
    k
}

/// A decoded postings key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PostingsKey<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub value: &'a str,
    pub series: u64,
}

/// Parses a postings key; `None` when malformed.
pub(crate) fn parse_postings_key(k: &[u8]) -> Option<PostingsKey<'_>> {
    let tl = usize::from(*k.first()?);
    let tenant = std::str::from_utf8(k.get(1..1 + tl)?).ok()?;
    let rest = &k[1 + tl..];
    let nl = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(rest.get(2..2 + nl)?).ok()?;
    let rest = &rest[2 + nl..];
    let vl = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let value = std::str::from_utf8(rest.get(4..4 + vl)?).ok()?;
    let rest = &rest[4 + vl..];
    let series = u64::from_be_bytes(rest.try_into().ok()?);
    Some(PostingsKey {
        tenant,
        name,
        value,
        series,
    })
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when the prefix is all `0xff`.
pub(crate) fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_numerically_and_blocks_align() {
        let ts = [i64::MIN, -BLOCK_MS - 1, -1, 0, 1, BLOCK_MS, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_bytes(w[0]) < ts_bytes(w[1]));
            assert_eq!(ts_from_bytes(ts_bytes(w[0])), w[0]);
        }
        assert_eq!(block_start(-1), -BLOCK_MS);
        assert_eq!(block_start(BLOCK_MS + 5), BLOCK_MS);
        assert_eq!(block_start(i64::MIN), i64::MIN);
        assert!(chunk_key(0, 9, 5) < chunk_key(BLOCK_MS, 1, BLOCK_MS));
        assert_eq!(
            parse_chunk_key(&chunk_key(-BLOCK_MS, 7, -3)),
            Some((-BLOCK_MS, 7, -3))
        );
        assert!(chunk_key(0, 7, 3).starts_with(&chunk_prefix(0, 7)));
    }

    #[test]
    fn chunk_spans_are_a_tenth_of_retention_in_whole_blocks_up_to_a_day() {
        let h = 3600 * 1000;
        assert_eq!(chunk_span_for(2 * h), BLOCK_MS);
        assert_eq!(chunk_span_for(24 * h), BLOCK_MS);
        assert_eq!(chunk_span_for(50 * h), 4 * h);
        assert_eq!(chunk_span_for(15 * 24 * h), 24 * h);
        assert_eq!(chunk_span_for(i64::MAX), MAX_CHUNK_SPAN_MS);
        assert_eq!(span_start(25 * h, 24 * h), 24 * h);
        assert_eq!(span_start(-1, 24 * h), -24 * h);
    }

    #[test]
    fn postings_keys_round_trip_and_prefixes_are_exact() {
        let k = postings_key("t1", "job", "a\0b", 42);
        assert_eq!(
            parse_postings_key(&k),
            Some(PostingsKey {
                tenant: "t1",
                name: "job",
                value: "a\0b",
                series: 42
            })
        );
        assert!(k.starts_with(&postings_value_prefix("t1", "job", "a\0b")));
        assert!(!k.starts_with(&postings_value_prefix("t1", "job", "a")));
        assert!(!postings_key("t10", "job", "x", 1).starts_with(&postings_name_prefix("t1", "job")));
        assert!(!postings_key("t1", "jobs", "x", 1).starts_with(&postings_name_prefix("t1", "job")));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff]), None);
    }
}
