//! A hand-written decoder for the common shape of a remote-write 1.0
//! `WriteRequest`, producing exactly what prost would: time series with
//! labels and samples (label vectors sized up front, no per-field dispatch
//! through prost's generic merge), metadata through prost. Anything else —
//! exemplars, unknown fields, unusual wire types, malformed input — makes it
//! return `None`, and the caller decodes the whole body with prost instead,
//! so results and error messages never differ from prost's.

use aion_proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use prost::Message;

/// Protobuf wire types used here.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A cursor over protobuf bytes; every read fails softly with `None`.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &byte) in self.b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.b = &self.b[i + 1..];
                return Some(v);
            }
        }
        None
    }

    /// (field number, wire type) of the next field.
    fn key(&mut self) -> Option<(u64, u8)> {
        let k = self.varint()?;
        Some((k >> 3, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.b.len() {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }

    fn fixed64(&mut self) -> Option<u64> {
        let (h, t) = self.b.split_first_chunk::<8>()?;
        self.b = t;
        Some(u64::from_le_bytes(*h))
    }

    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
}

/// Decodes `raw`, or `None` when prost should (see the module comment).
pub(crate) fn decode(raw: &[u8]) -> Option<WriteRequest> {
    let mut c = Cursor { b: raw };
    let mut req = WriteRequest::default();
    while !c.is_empty() {
        match c.key()? {
            (1, LEN) => req.timeseries.push(time_series(c.bytes()?)?),
            (3, LEN) => req.metadata.push(MetricMetadata::decode(c.bytes()?).ok()?),
            _ => return None,
        }
    }
    Some(req)
}

fn time_series(b: &[u8]) -> Option<TimeSeries> {
    let (mut n_labels, mut n_samples) = (0, 0);
    let mut c = Cursor { b };
    while !c.is_empty() {
        match c.key()? {
            (1, LEN) => n_labels += 1,
            (2, LEN) => n_samples += 1,
            _ => return None,
        }
        c.bytes()?;
    }
    let mut ts = TimeSeries {
        labels: Vec::with_capacity(n_labels),
        samples: Vec::with_capacity(n_samples),
        exemplars: Vec::new(),
    };
    let mut c = Cursor { b };
    while !c.is_empty() {
        match c.key()? {
            (1, _) => ts.labels.push(label(c.bytes()?)?),
            _ => ts.samples.push(sample(c.bytes()?)?),
        }
    }
    Some(ts)
}

fn label(b: &[u8]) -> Option<Label> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut c = Cursor { b };
    while !c.is_empty() {
        match c.key()? {
            (1, LEN) => name = c.bytes()?,
            (2, LEN) => value = c.bytes()?,
            _ => return None,
        }
    }
    Some(Label {
        name: std::str::from_utf8(name).ok()?.to_owned(),
        value: std::str::from_utf8(value).ok()?.to_owned(),
    })
}

fn sample(b: &[u8]) -> Option<Sample> {
    let mut s = Sample::default();
    let mut c = Cursor { b };
    while !c.is_empty() {
        match c.key()? {
            (1, FIXED64) => s.value = f64::from_bits(c.fixed64()?),
            (2, VARINT) => s.timestamp = c.varint()? as i64,
            _ => return None,
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_proto::prometheus::{metric_metadata::MetricType, Exemplar};

    fn req(series: Vec<TimeSeries>) -> WriteRequest {
        WriteRequest { timeseries: series, metadata: vec![] }
    }

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
            samples: samples.iter().map(|&(t, v)| Sample { value: v, timestamp: t }).collect(),
            exemplars: vec![],
        }
    }

    #[test]
    fn decodes_what_prost_encodes() {
        let mut r = req(vec![
            ts(&[("__name__", "up"), ("job", "a\u{e9}")], &[(-5, 1.5), (7, f64::NAN), (i64::MAX, -1.0)]),
            ts(&[("__name__", ""), ("", "x")], &[]),
            ts(&[], &[(0, 0.0)]),
        ]);
        r.metadata.push(MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: "".into(),
        });
        let got = decode(&r.encode_to_vec()).expect("common shape decodes");
        assert_eq!(format!("{got:?}"), format!("{r:?}"), "NaN-safe comparison");
        assert_eq!(decode(&[]), Some(WriteRequest::default()));
    }

    #[test]
    fn unusual_input_is_left_to_prost() {
        let mut with_exemplar = ts(&[("__name__", "up")], &[(1, 1.0)]);
        with_exemplar.exemplars.push(Exemplar { labels: vec![], value: 1.0, timestamp: 1 });
        assert_eq!(decode(&req(vec![with_exemplar]).encode_to_vec()), None);
        assert_eq!(decode(b"\x0a\xff\xff\xff\xff\x0f garbage"), None, "truncated");
        assert_eq!(decode(b"\x10\x01"), None, "unknown top-level field");
        // A label value that is not UTF-8: field 1 (ts) { field 1 (label) { 2: "\xff" } }
        assert_eq!(decode(b"\x0a\x05\x0a\x03\x12\x01\xff"), None);
        // A sample whose value has the wrong wire type (varint instead of fixed64).
        assert_eq!(decode(b"\x0a\x04\x12\x02\x08\x01"), None);
    }

    /// Deterministic pseudo-random numbers (xorshift), for the fuzz loops.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn agrees_with_prost_on_arbitrary_and_mutated_bytes() {
        let mut next = rng(42);
        let valid = req(vec![ts(&[("__name__", "up"), ("job", "x")], &[(3, 2.5)])]).encode_to_vec();
        for i in 0..20_000 {
            let b: Vec<u8> = if i % 2 == 0 {
                (0..next() % 48).map(|_| next() as u8).collect()
            } else {
                let mut b = valid.clone();
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
                b.truncate(b.len() - (next() % 3) as usize);
                b
            };
            if let Some(fast) = decode(&b) {
                let slow = WriteRequest::decode(b.as_slice());
                assert!(slow.is_ok(), "fast accepted what prost rejects: {b:?}");
                assert_eq!(format!("{fast:?}"), format!("{:?}", slow.unwrap()), "{b:?}");
            }
        }
    }

    #[test]
    fn round_trips_random_requests() {
        let mut next = rng(7);
        let words = ["", "a", "__name__", "job", "h\u{e9}llo", "x_1", "zz"];
        for _ in 0..2_000 {
            let labels: Vec<(&str, &str)> = (0..next() % 5)
                .map(|_| (words[(next() % 7) as usize], words[(next() % 7) as usize]))
                .collect();
            let samples: Vec<(i64, f64)> = (0..next() % 4).map(|_| (next() as i64, f64::from_bits(next()))).collect();
            let r = req(vec![ts(&labels, &samples), ts(&labels[..labels.len() / 2], &[])]);
            let got = decode(&r.encode_to_vec());
            assert_eq!(format!("{got:?}"), format!("{:?}", Some(r)));
        }
    }
}
