//! Series identity: interned label storage in memory and the series CF record
//! (`ref -> tenant, labels`).

use crate::codec::{put_labels, Reader};
use crate::keys::VALUE_VERSION;
use aion_model::labels::{Label, Labels};
use std::collections::HashSet;
use std::sync::Arc;

/// Interned label set: each distinct name and value string is stored once per TSDB.
pub(crate) type InternedLabels = Box<[(Arc<str>, Arc<str>)]>;

/// String interner for tenant ids, label names and label values.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `s`.
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    /// Interns every pair of `labels`.
    pub(crate) fn intern_labels(&mut self, labels: &Labels) -> InternedLabels {
        labels
            .iter()
            .map(|l| (self.intern(&l.name), self.intern(&l.value)))
            .collect()
    }
}

/// Rebuilds an owned [`Labels`] from interned pairs (already sorted).
pub(crate) fn to_labels(l: &[(Arc<str>, Arc<str>)]) -> Labels {
    Labels::from_sorted(
        l.iter()
            .map(|(n, v)| Label::new(n.as_ref(), v.as_ref()))
            .collect(),
    )
}

/// Value of label `name` in interned pairs, `""` when absent.
pub(crate) fn label_value<'a>(l: &'a [(Arc<str>, Arc<str>)], name: &str) -> &'a str {
    l.binary_search_by(|(n, _)| n.as_ref().cmp(name))
        .map_or("", |i| l[i].1.as_ref())
}

/// True when the interned pairs equal `labels`.
pub(crate) fn same_labels(a: &[(Arc<str>, Arc<str>)], labels: &Labels) -> bool {
    a.len() == labels.len()
        && a.iter()
            .zip(labels.iter())
            .all(|((n, v), l)| n.as_ref() == l.name && v.as_ref() == l.value)
}

/// Encodes the series CF value: `version | len(tenant) u8 | tenant | labels`.
pub(crate) fn encode_series(tenant: &str, labels: &[(Arc<str>, Arc<str>)], buf: &mut Vec<u8>) {
    buf.push(VALUE_VERSION);
    buf.push(tenant.len().min(255) as u8);
    buf.extend_from_slice(tenant.as_bytes());
    put_labels(buf, labels.iter().map(|(n, v)| (n.as_ref(), v.as_ref())));
}

/// Decodes a series CF value into `(tenant, labels)`.
pub(crate) fn decode_series(b: &[u8]) -> Result<(String, Labels), String> {
    let mut r = Reader::new(b);
    let v = r.u8("version")?;
    if v != VALUE_VERSION {
        return Err(format!("unknown series record version {v}"));
    }
    let tl = usize::from(r.u8("tenant length")?);
    let tenant = std::str::from_utf8(r.take(tl, "tenant")?)
        .map_err(|e| format!("tenant is not UTF-8: {e}"))?;
    let labels = r.labels()?;
    r.finish("series record")?;
    Ok((tenant.to_string(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_shares_strings_and_series_record_round_trips() {
        let mut i = Interner::default();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        let a = i.intern_labels(&l);
        let b = i.intern_labels(&Labels::from_pairs([("__name__", "down"), ("job", "api")]));
        assert!(Arc::ptr_eq(&a[1].1, &b[1].1));
        assert!(same_labels(&a, &l));
        assert!(!same_labels(&b, &l));
        assert_eq!(to_labels(&a), l);
        assert_eq!(
            (label_value(&a, "job"), label_value(&a, "nope")),
            ("api", "")
        );
        let mut buf = Vec::new();
        encode_series("team-a", &a, &mut buf);
        assert_eq!(decode_series(&buf).unwrap(), ("team-a".to_string(), l));
        assert!(decode_series(&buf[..buf.len() - 1]).is_err());
    }
}
