//! The series-by-ref form of a [`ShardWrite`] (`docs/format/raft.md`, log
//! entry version 3): each series starts with a `uvarint` ref; `0` means its
//! labels follow (as in the plain form), any other value is the series'
//! TSDB ref and no labels follow. The samples are encoded as in the plain
//! form.
//!
//! Only the leader of a shard builds it ([`ShardWrite::name_by_ref`]), from
//! series it finds in its own *applied* state: such a series was created by
//! a committed entry with a lower log index than the entry being proposed,
//! and refs are assigned in apply order, so every replica that applies the
//! new entry has already given that series the same ref.

use super::super::codec::{self, CodecError};
use super::validate::{check_labels, Check};
use super::ShardWrite;
use bytes::Bytes;

impl ShardWrite {
    /// This write in the series-by-ref form. `lookup` gets the tenant and
    /// the labels (packed form) of every series with samples, in order, and
    /// returns one ref or `None` each (or `None` for all: nothing is named
    /// by ref); a series with a ref is named by it, the others keep their
    /// labels. Part sizes and counts are unchanged. A write already in that
    /// form, or one with no series found, is returned as it is.
    ///
    /// `lookup` must only return refs of series of this write's tenant that
    /// exist in the applied state of the replica proposing the entry (the
    /// apply rejects any other ref, see `Head::apply_packed`).
    pub fn name_by_ref(&self, lookup: impl FnOnce(&str, &[&[u8]]) -> Option<Vec<Option<u64>>>) -> ShardWrite {
        if self.refs {
            return self.clone();
        }
        let packed: Vec<&[u8]> = self.series().filter(|s| s.samples.remaining() > 0).map(|s| s.packed_labels).collect();
        match lookup(self.tenant(), &packed) {
            Some(found) if found.len() == packed.len() && found.iter().any(|r| r.is_some_and(|r| r != 0)) => {
                self.rewrite(&found)
            }
            _ => self.clone(),
        }
    }

    /// [`ShardWrite::from_client`] and [`ShardWrite::name_by_ref`] in one:
    /// the bytes' framing and tenant are checked, the series are looked up,
    /// and only the labels of series *not* found get the full client check
    /// (a found series' labels are byte-identical to a stored series', which
    /// passed it when it was created).
    pub fn from_client_named(
        bytes: Bytes,
        lookup: impl FnOnce(&str, &[&[u8]]) -> Option<Vec<Option<u64>>>,
    ) -> Result<Self, CodecError> {
        let framed = Self::checked(bytes.clone(), Check::Framing, false)?;
        let packed: Vec<&[u8]> = framed.series().filter(|s| s.samples.remaining() > 0).map(|s| s.packed_labels).collect();
        let found = match lookup(framed.tenant(), &packed) {
            Some(f) if f.len() == packed.len() && f.iter().any(|r| r.is_some_and(|r| r != 0)) => f,
            _ => return Self::from_client(bytes),
        };
        let mut refs = found.iter();
        for s in framed.series() {
            let named = s.samples.remaining() > 0 && refs.next().is_some_and(|r| r.is_some_and(|r| r != 0));
            if !named {
                check_labels(s.packed_labels, Check::Client)?;
            }
        }
        Ok(framed.rewrite(&found))
    }

    /// The series-by-ref form naming the series with samples by `found`
    /// (one per such series, in order; `None` or `0`: keeps its labels).
    fn rewrite(&self, found: &[Option<u64>]) -> ShardWrite {
        let mut buf = Vec::with_capacity(self.bytes.len());
        codec::put_str(&mut buf, self.tenant());
        codec::put_uvarint(&mut buf, self.series as u64);
        let mut refs = found.iter();
        for s in self.series() {
            let found = match s.samples.remaining() {
                0 => None,
                _ => refs.next().copied().flatten().filter(|&r| r != 0),
            };
            match found {
                Some(r) => {
                    codec::put_uvarint(&mut buf, r);
                    buf.extend_from_slice(&s.body[s.packed_labels.len()..]);
                }
                None => {
                    buf.push(0);
                    buf.extend_from_slice(s.body);
                }
            }
        }
        ShardWrite {
            bytes: Bytes::from(buf),
            series: self.series,
            samples: self.samples,
            parts: self.parts.clone(),
            refs: true,
        }
    }

    /// Appends this (plain-form) write's series in the series-by-ref form,
    /// all keeping their labels (for a merge with writes in that form).
    pub(super) fn append_series_as_refs(&self, buf: &mut Vec<u8>) {
        debug_assert!(!self.refs, "BUG: only a plain write is converted");
        for s in self.series() {
            buf.push(0);
            buf.extend_from_slice(s.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::labels::Labels;
    use aion_model::sample::Sample;
    use aion_model::storage::{SeriesSamples, WriteBatch};
    use aion_model::tenant::TenantId;

    fn batch(names: &[&str]) -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new("t").unwrap(),
            series: names
                .iter()
                .map(|n| SeriesSamples {
                    labels: Labels::from_pairs([("__name__", *n), ("job", "api")]),
                    samples: vec![Sample::new(10, 1.0), Sample::new(20, f64::NAN)],
                })
                .collect(),
        }
    }

    #[test]
    fn client_bytes_skip_the_label_check_only_for_found_series() {
        // Label values the client check refuses (empty) in series 1 and 2.
        let mut raw = Vec::new();
        codec::put_str(&mut raw, "t");
        codec::put_uvarint(&mut raw, 3);
        for value in ["ok", "", ""] {
            codec::put_uvarint(&mut raw, 1);
            codec::put_str(&mut raw, "a");
            codec::put_str(&mut raw, value);
            codec::put_uvarint(&mut raw, 1);
            codec::put_ivarint(&mut raw, 5);
            raw.extend_from_slice(&1.0f64.to_le_bytes());
        }
        let raw = Bytes::from(raw);
        let lookup = |found: Vec<Option<u64>>| move |t: &str, p: &[&[u8]]| {
            assert_eq!((t, p.len()), ("t", 3));
            Some(found)
        };
        let err = ShardWrite::from_client_named(raw.clone(), lookup(vec![None, Some(4), None])).unwrap_err();
        assert!(err.0.contains("empty label"), "{err}");
        let w = ShardWrite::from_client_named(raw.clone(), lookup(vec![None, Some(4), Some(5)])).unwrap();
        let refs: Vec<Option<u64>> = w.series().map(|s| s.series_ref).collect();
        assert_eq!(refs, vec![None, Some(4), Some(5)]);
        assert!(ShardWrite::from_client_named(raw.clone(), |_, _| None).is_err(), "no look-up: all checked");
        assert!(ShardWrite::from_client_named(raw.slice(..raw.len() - 1), |_, _| None).is_err());
    }

    /// A look-up answering each series with `f`.
    fn each(f: impl Fn(&[u8]) -> Option<u64>) -> impl FnOnce(&str, &[&[u8]]) -> Option<Vec<Option<u64>>> {
        move |_, packed| Some(packed.iter().map(|p| f(p)).collect())
    }

    #[test]
    fn known_series_are_named_by_ref_and_read_back() {
        let plain = ShardWrite::from_batch(&batch(&["a", "b", "c"]));
        let b_packed = crate::series::PackedLabels::new(&batch(&["b"]).series[0].labels);
        let named = plain.name_by_ref(each(|p| (p == b_packed.as_bytes()).then_some(300)));
        assert!(named.names_refs());
        assert!(named.bytes().len() < plain.bytes().len());
        assert_eq!((named.series_count(), named.sample_count()), (3, 6));
        let got: Vec<(Option<u64>, usize, Vec<u64>)> = named
            .series()
            .map(|s| (s.series_ref, s.packed_labels.len(), s.samples.map(|x| x.v.to_bits()).collect()))
            .collect();
        let bits = vec![1.0f64.to_bits(), f64::NAN.to_bits()];
        assert_eq!(got[1], (Some(300), 0, bits.clone()));
        assert_eq!((got[0].0, got[2].0), (None, None));
        assert_eq!(got[0].2, bits);
        // The log forms (full and framing-only checks) read the same write back.
        for local in [false, true] {
            let back = ShardWrite::from_encoded_refs(named.bytes().clone(), local).unwrap();
            assert_eq!(back, named);
        }
        // A plain reader refuses it (the ref where a label count is expected).
        assert!(ShardWrite::from_encoded(named.bytes().clone()).is_err());
        // Serde keeps the form.
        let json = serde_json::to_string(&named).unwrap();
        assert_eq!(serde_json::from_str::<ShardWrite>(&json).unwrap(), named);
        // The placeholder labels of a ref.
        assert_eq!(named.to_batch().series[1].labels.to_string(), "{__aion_series_ref__=\"300\"}");
        // Already in the form: unchanged.
        assert_eq!(named.name_by_ref(each(|_| Some(1))), named);
        // Nothing found: the plain write as it is.
        assert_eq!(plain.name_by_ref(each(|_| None)), plain);
        assert_eq!(plain.name_by_ref(|_, _| None), plain);
    }

    #[test]
    fn merges_mix_forms_and_keep_parts() {
        let plain = ShardWrite::from_batch(&batch(&["a"]));
        let named = ShardWrite::from_batch(&batch(&["b", "c"])).name_by_ref(each(|_| Some(7)));
        let m = ShardWrite::merge(&[plain.clone(), named.clone()]).unwrap();
        assert!(m.names_refs());
        assert_eq!((m.raw_parts(), m.series_count(), m.sample_count()), (&[1u32, 2][..], 3, 6));
        let refs: Vec<Option<u64>> = m.series().map(|s| s.series_ref).collect();
        assert_eq!(refs, vec![None, Some(7), Some(7)]);
        assert_eq!(m.series().next().unwrap().labels(), batch(&["a"]).series[0].labels);
        let back = ShardWrite::from_encoded_parts(m.bytes().clone(), vec![1, 2], false, true).unwrap();
        assert_eq!(back, m);
        // Plain writes alone still merge in the plain form.
        assert!(!ShardWrite::merge(&[plain.clone(), plain]).unwrap().names_refs());
    }
}
