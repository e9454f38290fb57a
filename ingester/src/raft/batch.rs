//! [`ShardWrite`]: the payload of a Raft log entry, one tenant's write batch
//! carried as its encoded bytes (the batch codec of `codec.rs`, layout in
//! `docs/format/raft.md`) from the Push request to the state machine.
//!
//! The bytes are validated once when a `ShardWrite` is built (UTF-8, sorted
//! unique labels, a valid tenant, exact framing), so the log store writes
//! them as they are, the `AppendEntries` wire copies them, and the apply
//! walks them with a borrowing iterator ([`ShardWrite::series`]) whose label
//! section is already in the head's packed-labels form: a known series costs
//! a hash and a byte comparison, no allocation. Only a new series (or a
//! rejection message) materialises its labels.
//!
//! The leader may rewrite a write into the *series-by-ref* form
//! ([`ShardWrite::name_by_ref`], `batch/refs.rs`): series its applied TSDB
//! already holds are named by their ref instead of their labels, so the log,
//! the followers and every apply skip the labels (`docs/format/raft.md`).

mod refs;
mod validate;

use super::codec::{self, CodecError, Reader};
use validate::{validate, Check, Cur};
use aion_model::labels::{Label, Labels};
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The application payload of a Raft log entry: one encoded, validated write
/// batch, possibly several merged writes of one tenant (its *parts*).
///
/// Serialised (for openraft's serde needs) as the encoded batch bytes; the
/// part boundaries are not kept there (they only shape the leader's answer;
/// the log and the `AppendEntries` wire keep them).
#[derive(Clone, PartialEq, Eq)]
pub struct ShardWrite {
    bytes: Bytes,
    series: usize,
    samples: u64,
    /// Series per part when several writes were merged ([`ShardWrite::merge`]);
    /// empty for a single write.
    parts: Vec<u32>,
    /// The bytes are in the series-by-ref form (each series starts with a
    /// ref, `0` meaning its labels follow).
    refs: bool,
}

impl ShardWrite {
    /// Encodes `batch`.
    pub fn from_batch(batch: &WriteBatch) -> Self {
        let mut buf = Vec::with_capacity(64 + 64 * batch.series.len());
        codec::encode_write_batch(batch, &mut buf);
        Self {
            bytes: Bytes::from(buf),
            series: batch.series.len(),
            samples: batch.series.iter().map(|s| s.samples.len() as u64).sum(),
            parts: Vec::new(),
            refs: false,
        }
    }

    /// Wraps bytes written by [`codec::encode_write_batch`] (read back from
    /// the log or the wire), after checking them.
    pub fn from_encoded(bytes: Bytes) -> Result<Self, CodecError> {
        Self::checked(bytes, Check::Full, false)
    }

    /// [`ShardWrite::from_encoded`] of bytes in the series-by-ref form (a
    /// log entry of version 3). With `local`, only the framing is checked
    /// (see [`ShardWrite::from_local`]).
    pub fn from_encoded_refs(bytes: Bytes, local: bool) -> Result<Self, CodecError> {
        Self::checked(bytes, if local { Check::Framing } else { Check::Full }, true)
    }

    /// Wraps bytes this node wrote to its own log (fully checked before they
    /// were written; RocksDB checksums them at rest): only their framing is
    /// checked again, so walking them cannot go out of bounds.
    pub fn from_local(bytes: Bytes) -> Result<Self, CodecError> {
        Self::checked(bytes, Check::Framing, false)
    }

    fn checked(bytes: Bytes, check: Check, refs: bool) -> Result<Self, CodecError> {
        let c = validate(&bytes, check, refs)?;
        Ok(Self { bytes, series: c.series, samples: c.samples, parts: Vec::new(), refs })
    }

    /// [`ShardWrite::from_encoded`] of a merged write whose parts hold
    /// `parts` series each (they must add up to the batch's series).
    /// With `local`, only the framing is checked (see [`ShardWrite::from_local`]);
    /// with `refs`, the bytes are in the series-by-ref form.
    pub fn from_encoded_parts(bytes: Bytes, parts: Vec<u32>, local: bool, refs: bool) -> Result<Self, CodecError> {
        let mut w = Self::checked(bytes, if local { Check::Framing } else { Check::Full }, refs)?;
        let total: u64 = parts.iter().map(|&n| u64::from(n)).sum();
        if total != w.series as u64 || parts.len() < 2 {
            return Err(CodecError(format!(
                "{} parts of {total} series in all, but the batch holds {} series",
                parts.len(),
                w.series
            )));
        }
        w.parts = parts;
        Ok(w)
    }

    /// Merges writes of one tenant into one, each kept as a part (the apply
    /// answers per part); `None` when the tenants differ or `writes` is empty.
    /// The merge is in the series-by-ref form when any write is.
    pub fn merge(writes: &[ShardWrite]) -> Option<ShardWrite> {
        let tenant = writes.first()?.tenant();
        if writes.iter().any(|w| w.tenant() != tenant) {
            return None;
        }
        let series: usize = writes.iter().map(|w| w.series).sum();
        let len: usize = writes.iter().map(|w| w.bytes.len()).sum();
        let mut buf = Vec::with_capacity(len + 16);
        codec::put_str(&mut buf, tenant);
        codec::put_uvarint(&mut buf, series as u64);
        let mut parts = Vec::new();
        let refs = writes.iter().any(|w| w.refs);
        for w in writes {
            if refs && !w.refs {
                w.append_series_as_refs(&mut buf);
            } else {
                buf.extend_from_slice(w.series_section());
            }
            parts.extend(w.part_sizes().into_iter().map(|n| n as u32));
        }
        if parts.len() < 2 {
            parts.clear();
        }
        Some(Self {
            bytes: Bytes::from(buf),
            series,
            samples: writes.iter().map(|w| w.samples).sum(),
            parts,
            refs,
        })
    }

    /// The bytes after the tenant and the series count.
    fn series_section(&self) -> &[u8] {
        let mut r = Reader { buf: &self.bytes };
        r.str("tenant").expect("BUG: ShardWrite bytes are validated");
        r.uvarint("series").expect("BUG: ShardWrite bytes are validated");
        r.buf
    }

    /// Series per part, in order (one part for a write that was not merged).
    pub fn part_sizes(&self) -> Vec<usize> {
        if self.parts.is_empty() {
            vec![self.series]
        } else {
            self.parts.iter().map(|&n| n as usize).collect()
        }
    }

    /// The raw part sizes as encoded in a log entry (empty: a single write).
    pub fn raw_parts(&self) -> &[u32] {
        &self.parts
    }

    /// The parts as owned batches (one per part).
    pub fn to_batches(&self) -> Vec<WriteBatch> {
        let all = self.to_batch();
        let mut series = all.series.into_iter();
        self.part_sizes()
            .into_iter()
            .map(|n| WriteBatch { tenant: all.tenant.clone(), series: series.by_ref().take(n).collect() })
            .collect()
    }

    /// Like [`ShardWrite::from_encoded`] for bytes from a client (a Push):
    /// empty label names and values are refused as well (the model's label
    /// sets never hold them).
    pub fn from_client(bytes: Bytes) -> Result<Self, CodecError> {
        Self::checked(bytes, Check::Client, false)
    }

    /// True when the bytes are in the series-by-ref form (some series may be
    /// named by their TSDB ref instead of their labels).
    pub fn names_refs(&self) -> bool {
        self.refs
    }

    /// The encoded batch.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Number of series in the batch.
    pub fn series_count(&self) -> usize {
        self.series
    }

    /// Number of samples in the batch.
    pub fn sample_count(&self) -> u64 {
        self.samples
    }

    /// The tenant the batch belongs to.
    pub fn tenant(&self) -> &str {
        let mut r = Reader { buf: &self.bytes };
        r.str("tenant").expect("BUG: ShardWrite bytes are validated")
    }

    /// The series, borrowing from the bytes.
    pub fn series(&self) -> SeriesIter<'_> {
        let mut c = Cur { b: &self.bytes, pos: 0 };
        let tn = c.uvarint().expect(VALIDATED) as usize;
        c.take(tn).expect(VALIDATED);
        let left = c.uvarint().expect(VALIDATED) as usize;
        SeriesIter { c, left, refs: self.refs }
    }

    /// The batch as owned model types. A series named by ref (see
    /// [`ShardWrite::names_refs`]) gets the single label
    /// [`SERIES_REF_LABEL`]`=<ref>`: only a TSDB knows its labels.
    pub fn to_batch(&self) -> WriteBatch {
        let tenant = TenantId::new(self.tenant()).expect("BUG: ShardWrite tenant is validated");
        let series = self
            .series()
            .map(|s| SeriesSamples { labels: s.labels(), samples: s.samples.collect() })
            .collect();
        WriteBatch { tenant, series }
    }
}

impl From<WriteBatch> for ShardWrite {
    fn from(batch: WriteBatch) -> Self {
        Self::from_batch(&batch)
    }
}

impl std::fmt::Debug for ShardWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWrite")
            .field("tenant", &self.tenant())
            .field("series", &self.series)
            .field("samples", &self.samples)
            .field("parts", &self.parts)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Label name of the placeholder label set [`ShardWrite::to_batch`] gives a
/// series named by ref.
pub const SERIES_REF_LABEL: &str = "__aion_series_ref__";

/// One series of a [`ShardWrite`], borrowed.
pub struct EncodedSeries<'a> {
    /// The series' TSDB ref when the write names it by ref (then
    /// `packed_labels` is empty).
    pub series_ref: Option<u64>,
    /// The labels in packed form: `n uvarint | n x (len uvarint | name | len uvarint | value)`.
    pub packed_labels: &'a [u8],
    /// The samples, in batch order.
    pub samples: SampleIter<'a>,
    /// `packed_labels` (or nothing, for a ref), then the sample count and samples, as encoded.
    body: &'a [u8],
}

impl EncodedSeries<'_> {
    /// The labels as an owned set (allocates); for a series named by ref,
    /// the placeholder [`SERIES_REF_LABEL`]`=<ref>`.
    pub fn labels(&self) -> Labels {
        if let Some(r) = self.series_ref {
            return Labels::from_pairs([(SERIES_REF_LABEL, r.to_string())]);
        }
        let mut r = Reader { buf: self.packed_labels };
        let n = r.uvarint("label count").expect("BUG: ShardWrite bytes are validated") as usize;
        let mut out = Vec::with_capacity(n);
        // Lossy: bytes read back from the local log are checked for framing only.
        let mut string = |what| {
            let n = r.uvarint(what).expect("BUG: ShardWrite bytes are validated") as usize;
            String::from_utf8_lossy(r.take(n, what).expect("BUG: ShardWrite bytes are validated")).into_owned()
        };
        for _ in 0..n {
            let name = string("label name");
            let value = string("label value");
            out.push(Label::new(name, value));
        }
        Labels::from_sorted(out)
    }
}

/// Iterator over the series of a [`ShardWrite`].
pub struct SeriesIter<'a> {
    c: Cur<'a>,
    left: usize,
    refs: bool,
}

const VALIDATED: &str = "BUG: ShardWrite bytes are validated";

impl<'a> Iterator for SeriesIter<'a> {
    type Item = EncodedSeries<'a>;

    fn next(&mut self) -> Option<EncodedSeries<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let c = &mut self.c;
        let series_ref = match self.refs {
            true => Some(c.uvarint().expect(VALIDATED)).filter(|&r| r != 0),
            false => None,
        };
        let start = c.pos;
        if series_ref.is_none() {
            let nl = c.uvarint().expect(VALIDATED);
            for _ in 0..nl * 2 {
                let len = c.uvarint().expect(VALIDATED) as usize;
                c.take(len).expect(VALIDATED);
            }
        }
        let packed_labels = &c.b[start..c.pos];
        let ns = c.uvarint().expect(VALIDATED) as usize;
        let body = c.pos;
        // Skip the samples: each is a varint delta plus 8 value bytes.
        for _ in 0..ns {
            c.uvarint().expect(VALIDATED);
            c.take(8).expect(VALIDATED);
        }
        let samples = SampleIter { c: Cur { b: &c.b[body..c.pos], pos: 0 }, left: ns, t: 0 };
        Some(EncodedSeries { series_ref, packed_labels, samples, body: &c.b[start..c.pos] })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Iterator over the samples of one [`EncodedSeries`].
pub struct SampleIter<'a> {
    c: Cur<'a>,
    left: usize,
    t: i64,
}

impl SampleIter<'_> {
    /// Samples not yet read.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let u = self.c.uvarint().expect(VALIDATED);
        self.t = self.t.wrapping_add(((u >> 1) as i64) ^ -((u & 1) as i64));
        let mut v = [0u8; 8];
        v.copy_from_slice(self.c.take(8).expect(VALIDATED));
        Some(Sample::new(self.t, f64::from_bits(u64::from_le_bytes(v))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for SampleIter<'_> {}

/// Serialised as the encoded batch; a batch in the series-by-ref form is
/// preceded by one `0x00` byte (a plain batch starts with its tenant's
/// length, never 0).
impl Serialize for ShardWrite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.refs {
            return s.serialize_bytes(&self.bytes);
        }
        let mut b = Vec::with_capacity(1 + self.bytes.len());
        b.push(0);
        b.extend_from_slice(&self.bytes);
        s.serialize_bytes(&b)
    }
}

/// The inverse of the [`Serialize`] form (fully checked).
fn from_serde(b: Bytes) -> Result<ShardWrite, CodecError> {
    match b.first() {
        Some(0) => ShardWrite::from_encoded_refs(b.slice(1..), false),
        _ => ShardWrite::from_encoded(b),
    }
}

/// Accepts the encoded batch as a byte string, or as a sequence of bytes
/// (what self-describing formats such as JSON turn a byte string into).
struct ShardWriteVisitor;

impl<'de> serde::de::Visitor<'de> for ShardWriteVisitor {
    type Value = ShardWrite;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an encoded write batch (bytes)")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ShardWrite, E> {
        from_serde(Bytes::copy_from_slice(v)).map_err(E::custom)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ShardWrite, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        from_serde(Bytes::from(bytes)).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ShardWrite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(ShardWriteVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: vec![
                SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
                    samples: vec![Sample::new(i64::MIN, 1.5), Sample::new(7, -0.0), Sample::new(i64::MAX, 2.0)],
                },
                SeriesSamples { labels: Labels::from_pairs([("a", "b")]), samples: vec![] },
            ],
        }
    }

    #[test]
    fn borrowed_walk_matches_the_owned_batch() {
        let w = ShardWrite::from_batch(&batch());
        assert_eq!((w.tenant(), w.series_count(), w.sample_count()), ("t", 2, 3));
        assert_eq!(w.to_batch(), batch());
        let mut it = w.series();
        let first = it.next().unwrap();
        assert_eq!(first.labels(), batch().series[0].labels);
        assert_eq!(first.samples.remaining(), 3);
        // The label section is the head's packed form.
        let packed = crate::series::PackedLabels::new(&batch().series[0].labels);
        assert_eq!(packed.as_bytes(), first.packed_labels);
        assert_eq!(first.samples.collect::<Vec<_>>(), batch().series[0].samples);
        assert_eq!(it.next().unwrap().samples.count(), 0);
        assert!(it.next().is_none());
        let again = ShardWrite::from_encoded(w.bytes().clone()).unwrap();
        assert_eq!(again, w);
    }

    #[test]
    fn validation_refuses_bad_bytes_and_client_empty_labels() {
        let good = ShardWrite::from_batch(&batch());
        let b = good.bytes();
        for cut in [0, 1, 3, b.len() / 2, b.len() - 1] {
            assert!(ShardWrite::from_encoded(b.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(ShardWrite::from_encoded(Bytes::from(long)).unwrap_err().0.contains("trailing"));
        // Unsorted labels (written by hand: the model sorts).
        let mut raw = Vec::new();
        codec::put_str(&mut raw, "t");
        codec::put_uvarint(&mut raw, 1);
        codec::put_uvarint(&mut raw, 2);
        for s in ["b", "1", "a", "2"] {
            codec::put_str(&mut raw, s);
        }
        codec::put_uvarint(&mut raw, 0);
        let err = ShardWrite::from_encoded(Bytes::from(raw)).unwrap_err();
        assert!(err.0.contains("not sorted"), "{err}");
        // An empty value passes the log check but not the client check.
        let mut raw = Vec::new();
        codec::put_str(&mut raw, "t");
        codec::put_uvarint(&mut raw, 1);
        codec::put_uvarint(&mut raw, 1);
        codec::put_str(&mut raw, "a");
        codec::put_str(&mut raw, "");
        codec::put_uvarint(&mut raw, 0);
        assert!(ShardWrite::from_encoded(Bytes::from(raw.clone())).is_ok());
        assert!(ShardWrite::from_client(Bytes::from(raw)).unwrap_err().0.contains("empty label"));
        // A bad tenant.
        let mut raw = Vec::new();
        codec::put_str(&mut raw, "..");
        codec::put_uvarint(&mut raw, 0);
        assert!(ShardWrite::from_encoded(Bytes::from(raw)).unwrap_err().0.contains("tenant"));
    }

    #[test]
    fn merged_writes_keep_their_parts() {
        let one = ShardWrite::from_batch(&batch());
        let single = WriteBatch { tenant: TenantId::new("t").unwrap(), series: vec![batch().series[0].clone()] };
        let two = ShardWrite::from_batch(&single);
        let m = ShardWrite::merge(&[one.clone(), two.clone()]).unwrap();
        assert_eq!((m.series_count(), m.sample_count(), m.raw_parts()), (3, 6, &[2u32, 1][..]));
        assert_eq!(m.to_batches(), vec![batch(), single.clone()]);
        let again = ShardWrite::merge(&[m.clone(), two]).unwrap();
        assert_eq!(again.part_sizes(), vec![2, 1, 1]);
        let back = ShardWrite::from_encoded_parts(m.bytes().clone(), vec![2, 1], false, false).unwrap();
        assert_eq!(back, m);
        assert!(ShardWrite::from_encoded_parts(m.bytes().clone(), vec![2, 2], true, false).is_err());
        let other = WriteBatch { tenant: TenantId::new("u").unwrap(), series: vec![] };
        assert!(ShardWrite::merge(&[one, ShardWrite::from_batch(&other)]).is_none());
        assert!(ShardWrite::merge(&[]).is_none());
    }
}
