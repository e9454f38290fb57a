//! The write-ahead log: one record per write batch in the `wal` column family,
//! keyed by a sequence number. A Raft log will take its place later: the
//! sequence number becomes the log index and replay becomes apply.
//!
//! Record value: `version u8 | xxh3_64(payload) u64 LE | payload`, payload =
//! `len(tenant) u8 | tenant | n_series uvarint | n_series x (labels |
//! n_samples uvarint | n_samples x (t i64 LE | v f64 bits LE))`.

use crate::codec::{put_labels, put_uvarint, Reader};
use crate::keys::VALUE_VERSION;
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use xxhash_rust::xxh3::xxh3_64;

/// Bytes before the payload: version and checksum.
const HEADER_LEN: usize = 9;

/// Encodes `batch` as a WAL record into `buf` (cleared first).
pub(crate) fn encode(batch: &WriteBatch, buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(VALUE_VERSION);
    buf.extend_from_slice(&[0; 8]);
    let tenant = batch.tenant.as_str();
    buf.push(tenant.len().min(255) as u8);
    buf.extend_from_slice(tenant.as_bytes());
    let series: Vec<&SeriesSamples> = batch
        .series
        .iter()
        .filter(|s| !s.samples.is_empty())
        .collect();
    put_uvarint(buf, series.len() as u64);
    for s in series {
        put_labels(
            buf,
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        put_uvarint(buf, s.samples.len() as u64);
        for x in &s.samples {
            buf.extend_from_slice(&x.t.to_le_bytes());
            buf.extend_from_slice(&x.v.to_bits().to_le_bytes());
        }
    }
    let sum = xxh3_64(&buf[HEADER_LEN..]);
    buf[1..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
}

/// Decodes a WAL record, verifying version and checksum.
pub(crate) fn decode(b: &[u8]) -> Result<WriteBatch, String> {
    let mut r = Reader::new(b);
    let v = r.u8("version")?;
    if v != VALUE_VERSION {
        return Err(format!("unknown WAL record version {v}"));
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
        let labels = r.labels()?;
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
    use aion_model::labels::Labels;
    use proptest::prelude::*;

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
        encode(&sample_batch(), &mut buf);
        let d = decode(&buf).unwrap();
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].samples[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(d.series[0].labels, sample_batch().series[0].labels);
    }

    #[test]
    fn corruption_is_detected() {
        let mut buf = Vec::new();
        encode(&sample_batch(), &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(decode(&buf).unwrap_err().contains("checksum mismatch"));
        assert!(decode(&buf[..5]).unwrap_err().contains("truncated"));
        assert!(decode(&[9]).unwrap_err().contains("version 9"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
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
            encode(&batch, &mut buf);
            let d = decode(&buf).unwrap();
            prop_assert_eq!(d.series[0].samples.len(), ts.len());
            for (s, t) in d.series[0].samples.iter().zip(&ts) {
                prop_assert_eq!(s.t, *t);
                prop_assert_eq!(s.v.to_bits(), v.to_bits());
            }
        }
    }
}
