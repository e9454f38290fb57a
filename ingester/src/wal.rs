//! The write-ahead log: one record per write batch in the `wal` column family,
//! keyed by a sequence number. A Raft log will take its place later: the
//! sequence number becomes the log index and replay becomes apply.
//!
//! Record value: `version u8 | xxh3_64(payload) u64 LE | payload`.
//! Version 2 (written): payload = `len(tenant) u8 | tenant | n_series uvarint |
//! n_series x (ref uvarint | [labels if ref = 0] | n_samples uvarint |
//! n_samples x (t i64 LE | v f64 bits LE))`: a series that existed when the
//! record was written is named by its ref (as Prometheus's WAL does); only a
//! new one carries its labels. The ref's series record was written to RocksDB
//! before this record, so it is durable whenever the record is.
//! Version 1 (still read): every series carries its labels, no ref.

use crate::codec::{put_labels, put_uvarint, Reader};
use crate::head::SeriesHint;
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use xxhash_rust::xxh3::xxh3_64;

/// Bytes before the payload: version and checksum.
const HEADER_LEN: usize = 9;

/// Record version with labels for every series.
const VERSION_LABELS: u8 = 1;

/// Record version naming known series by ref.
const VERSION_REFS: u8 = 2;

/// Encodes `batch` as a WAL record into `buf` (cleared first). `hints` (one
/// per series of the batch, from `Head::resolve`) name known series by ref;
/// without them every series carries its labels.
pub(crate) fn encode(batch: &WriteBatch, hints: Option<&[SeriesHint]>, buf: &mut Vec<u8>) {
    buf.clear();
    let n: usize = batch.series.iter().filter(|s| !s.samples.is_empty()).count();
    let samples: usize = batch.series.iter().map(|s| s.samples.len()).sum();
    buf.reserve(HEADER_LEN + 2 + batch.tenant.as_str().len() + n * 8 + samples * 16);
    buf.push(VERSION_REFS);
    buf.extend_from_slice(&[0; 8]);
    let tenant = batch.tenant.as_str();
    buf.push(tenant.len().min(255) as u8);
    buf.extend_from_slice(tenant.as_bytes());
    put_uvarint(buf, n as u64);
    for (i, s) in batch.series.iter().enumerate() {
        if s.samples.is_empty() {
            continue;
        }
        match hints.and_then(|h| h.get(i)).and_then(|h| h.r) {
            Some(r) => put_uvarint(buf, r),
            None => {
                buf.push(0);
                put_labels(
                    buf,
                    s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                );
            }
        }
        put_uvarint(buf, s.samples.len() as u64);
        for x in &s.samples {
            buf.extend_from_slice(&x.t.to_le_bytes());
            buf.extend_from_slice(&x.v.to_bits().to_le_bytes());
        }
    }
    let sum = xxh3_64(&buf[HEADER_LEN..]);
    buf[1..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
}

/// Decodes a WAL record, verifying version and checksum. `labels_of` gives
/// the labels of a series named by ref (the head at replay time); an unknown
/// ref fails the record.
pub(crate) fn decode(
    b: &[u8],
    labels_of: impl Fn(u64) -> Option<Labels>,
) -> Result<WriteBatch, String> {
    let mut r = Reader::new(b);
    let version = r.u8("version")?;
    if version != VERSION_LABELS && version != VERSION_REFS {
        return Err(format!("unknown WAL record version {version}"));
    }
    let sum = r.u64_le("checksum")?;
    let payload = r.remaining();
    let actual = xxh3_64(payload);
    if actual != sum {
        return Err(format!(
            "checksum mismatch: stored {sum:#018x}, computed {actual:#018x}"
        ));
    }
    let tl = usize::from(r.u8("tenant length")?);
    let tenant = std::str::from_utf8(r.take(tl, "tenant")?)
        .map_err(|e| format!("tenant is not UTF-8: {e}"))?;
    let tenant = TenantId::new(tenant).map_err(|e| e.to_string())?;
    let n = r.count(2, "series")?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = match version {
            VERSION_LABELS => r.labels()?,
            _ => match r.uvarint("series ref")? {
                0 => r.labels()?,
                rf => labels_of(rf).ok_or_else(|| format!("unknown series ref {rf}"))?,
            },
        };
        let ns = r.count(16, "samples")?;
        let mut samples = Vec::with_capacity(ns);
        for _ in 0..ns {
            let t = r.i64_le("sample timestamp")?;
            let v = f64::from_bits(r.u64_le("sample value")?);
            samples.push(Sample::new(t, v));
        }
        series.push(SeriesSamples { labels, samples });
    }
    r.finish("WAL record")?;
    Ok(WriteBatch { tenant, series })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_refs(_: u64) -> Option<Labels> {
        None
    }

    fn sample_batch() -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("team-a").unwrap(),
            series: vec![
                SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
                    samples: vec![
                        Sample::new(-5, 1.0),
                        Sample::new(7, f64::from_bits(0x7ff0_0000_0000_0002)),
                    ],
                },
                SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "x")]),
                    samples: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trip_drops_empty_series_and_keeps_nan_bits() {
        let mut buf = Vec::new();
        encode(&sample_batch(), None, &mut buf);
        let d = decode(&buf, no_refs).unwrap();
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].samples[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(d.series[0].labels, sample_batch().series[0].labels);
    }

    #[test]
    fn corruption_is_detected() {
        let mut buf = Vec::new();
        encode(&sample_batch(), None, &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(decode(&buf, no_refs).unwrap_err().contains("checksum mismatch"));
        assert!(decode(&buf[..5], no_refs).unwrap_err().contains("truncated"));
        assert!(decode(&[9], no_refs).unwrap_err().contains("version 9"));
    }

    #[test]
    fn known_series_are_named_by_ref_and_resolved_on_decode() {
        let batch = sample_batch();
        let hints = [SeriesHint { hash: 0, r: Some(7) }, SeriesHint::default()];
        let (mut with_refs, mut with_labels) = (Vec::new(), Vec::new());
        encode(&batch, Some(&hints), &mut with_refs);
        encode(&batch, None, &mut with_labels);
        assert!(with_refs.len() < with_labels.len(), "a ref is shorter than labels");
        let labels = batch.series[0].labels.clone();
        let d = decode(&with_refs, |r| (r == 7).then(|| labels.clone())).unwrap();
        assert_eq!(d.series[0].labels, labels);
        assert_eq!(d.series[0].samples.len(), 2);
        let e = decode(&with_refs, no_refs).unwrap_err();
        assert!(e.contains("unknown series ref 7"), "{e}");
    }

    #[test]
    fn version_1_records_still_decode() {
        // version 1, checksum, tenant "t", one series {a="b"} with one sample (5, 1.0)
        let mut payload = vec![1, b't', 1, 1, 1, b'a', 1, b'b', 1];
        payload.extend_from_slice(&5i64.to_le_bytes());
        payload.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
        let mut rec = vec![VERSION_LABELS];
        rec.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        let d = decode(&rec, no_refs).unwrap();
        assert_eq!(d.tenant.as_str(), "t");
        assert_eq!(d.series[0].labels, Labels::from_pairs([("a", "b")]));
        assert_eq!(d.series[0].samples, vec![Sample::new(5, 1.0)]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b, |r| (r == 1).then(|| Labels::from_pairs([("a", "b")])));
        }

        #[test]
        fn samples_round_trip(ts in proptest::collection::vec(any::<i64>(), 1..50), v in any::<f64>()) {
            let batch = WriteBatch {
                tenant: TenantId::anonymous(),
                series: vec![SeriesSamples {
                    labels: Labels::from_pairs([("a", "b")]),
                    samples: ts.iter().map(|&t| Sample::new(t, v)).collect(),
                }],
            };
            let mut buf = Vec::new();
            encode(&batch, None, &mut buf);
            let d = decode(&buf, no_refs).unwrap();
            prop_assert_eq!(d.series[0].samples.len(), ts.len());
            for (s, t) in d.series[0].samples.iter().zip(&ts) {
                prop_assert_eq!(s.t, *t);
                prop_assert_eq!(s.v.to_bits(), v.to_bits());
            }
        }
    }
}
