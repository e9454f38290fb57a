//! Remote write 2.0: decoding an `io.prometheus.write.v2.Request` (snappy
//! block, symbol table) and resolving it into the 1.0 [`WriteRequest`] form the
//! push pipeline validates and stores. Per-series metadata becomes 1.0
//! metadata of the series' metric name; exemplars are accepted but not
//! stored; native histograms are counted and reported as unsupported.

use crate::error::{DistributorError, Result};
use aion_proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use aion_proto::write_v2::{Request, TimeSeries as V2Series};
use prost::Message;

/// A 2.0 request resolved into the 1.0 form, with what it held that Aion does not store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    /// The float series, labels resolved through the symbol table.
    pub write: WriteRequest,
    /// Native histogram samples in the request (not ingested).
    pub histograms: usize,
    /// Indexes (in the request) of the series carrying native histograms.
    pub histogram_series: Vec<usize>,
    /// Exemplars in the request (accepted, not stored).
    pub exemplars: usize,
}

/// Decompresses `body` (at most `max_decompressed` bytes) and decodes a 2.0 `Request`.
pub fn decode(body: &[u8], max_decompressed: usize) -> Result<Request> {
    let raw = super::decompress(body, max_decompressed)?;
    Request::decode(raw.as_slice())
        .map_err(|e| DistributorError::Protobuf(format!("io.prometheus.write.v2.Request: {e}")))
}

/// Resolves every series' `labels_refs` through `symbols`. Any bad reference
/// (odd count, index past the table) or a table whose first symbol is not ""
/// rejects the whole request with a 400 naming the series index.
pub fn resolve(req: Request) -> Result<Resolved> {
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(bad_refs(format!(
            "symbols[0] must be the empty string, got {:?}",
            req.symbols[0]
        )));
    }
    let mut out = Resolved::default();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        out.exemplars += ts.exemplars.len();
        if !ts.histograms.is_empty() {
            out.histograms += ts.histograms.len();
            out.histogram_series.push(i);
        }
        let labels = resolve_labels(&req.symbols, &ts, i)?;
        if let Some(md) = series_metadata(&req.symbols, &ts, &labels) {
            if !out.write.metadata.contains(&md) {
                out.write.metadata.push(md);
            }
        }
        if ts.samples.is_empty() {
            continue;
        }
        let samples = ts.samples.iter().map(|s| Sample { value: s.value, timestamp: s.timestamp }).collect();
        out.write.timeseries.push(TimeSeries { labels, samples, ..Default::default() });
    }
    Ok(out)
}

/// The series' metadata (type, help, unit) as a 1.0 entry for its metric
/// name, when it carries any. Bad help/unit references are ignored
/// (metadata is advisory; the samples still count).
fn series_metadata(symbols: &[String], ts: &V2Series, labels: &[Label]) -> Option<MetricMetadata> {
    let md = ts.metadata.as_ref()?;
    if md.r#type == 0 && md.help_ref == 0 && md.unit_ref == 0 {
        return None;
    }
    let name = labels.iter().find(|l| l.name == "__name__")?;
    let sym = |r: u32| symbols.get(r as usize).cloned().unwrap_or_default();
    Some(MetricMetadata {
        r#type: md.r#type,
        metric_family_name: name.value.clone(),
        help: sym(md.help_ref),
        unit: sym(md.unit_ref),
    })
}

/// The labels of series `index`, resolved through `symbols`.
fn resolve_labels(symbols: &[String], ts: &V2Series, index: usize) -> Result<Vec<Label>> {
    let refs = &ts.labels_refs;
    if !refs.len().is_multiple_of(2) {
        return Err(bad_refs(format!(
            "series {index}: labels_refs has {} entries; it must hold (name, value) pairs",
            refs.len()
        )));
    }
    let sym = |r: u32| {
        symbols.get(r as usize).ok_or_else(|| {
            bad_refs(format!(
                "series {index}: labels_refs entry {r} is out of range of the symbol table ({} symbols)",
                symbols.len()
            ))
        })
    };
    refs.chunks_exact(2)
        .map(|p| Ok(Label { name: sym(p[0])?.clone(), value: sym(p[1])?.clone() }))
        .collect()
}

fn bad_refs(message: String) -> DistributorError {
    DistributorError::InvalidSeries { reason: "invalid_symbol_reference", message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_proto::write_v2::{Exemplar, Histogram, Metadata, Sample as V2Sample};

    fn symbols() -> Vec<String> {
        ["", "__name__", "up", "job", "a"].iter().map(|s| s.to_string()).collect()
    }

    fn v2(refs: Vec<u32>, samples: &[(i64, f64)]) -> V2Series {
        V2Series {
            labels_refs: refs,
            samples: samples.iter().map(|(t, v)| V2Sample { value: *v, timestamp: *t }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_and_resolves_symbols() {
        let mut ts = v2(vec![1, 2, 3, 4], &[(1000, 1.5), (2000, 2.5)]);
        ts.exemplars = vec![Exemplar { labels_refs: vec![], value: 1.0, timestamp: 1000 }];
        ts.metadata = Some(Metadata { r#type: 2, help_ref: 0, unit_ref: 0 });
        let req = Request { symbols: symbols(), timeseries: vec![ts] };
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
        let r = resolve(decode(&body, 1 << 20).unwrap()).unwrap();
        assert_eq!(r.exemplars, 1);
        assert_eq!(r.histograms, 0);
        let ts = &r.write.timeseries[0];
        let labels: Vec<(&str, &str)> = ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(labels, vec![("__name__", "up"), ("job", "a")]);
        assert_eq!(ts.samples, vec![Sample { value: 1.5, timestamp: 1000 }, Sample { value: 2.5, timestamp: 2000 }]);
        assert_eq!(
            r.write.metadata,
            vec![MetricMetadata { r#type: 2, metric_family_name: "up".into(), help: String::new(), unit: String::new() }],
            "per-series metadata becomes metadata of the metric name"
        );
    }

    #[test]
    fn odd_and_out_of_range_refs_name_the_series() {
        let ok = v2(vec![1, 2], &[(1, 1.0)]);
        let odd = Request { symbols: symbols(), timeseries: vec![ok.clone(), v2(vec![1, 2, 3], &[(1, 1.0)])] };
        let e = resolve(odd).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(e.to_string().starts_with("series 1: labels_refs has 3 entries"), "{e}");
        let far = Request { symbols: symbols(), timeseries: vec![ok, ok_far()] };
        let e = resolve(far).unwrap_err().to_string();
        assert!(e.contains("series 1: labels_refs entry 9 is out of range of the symbol table (5 symbols)"), "{e}");
    }

    fn ok_far() -> V2Series {
        v2(vec![1, 9], &[(1, 1.0)])
    }

    #[test]
    fn first_symbol_must_be_empty() {
        let req = Request { symbols: vec!["x".into()], timeseries: vec![] };
        assert!(resolve(req).unwrap_err().to_string().contains("symbols[0] must be the empty string"));
    }

    #[test]
    fn histograms_are_counted_not_converted() {
        let mut h = v2(vec![1, 2], &[]);
        h.histograms = vec![Histogram {}, Histogram {}];
        let req = Request { symbols: symbols(), timeseries: vec![v2(vec![1, 2], &[(1, 1.0)]), h] };
        let r = resolve(req).unwrap();
        assert_eq!((r.histograms, r.histogram_series.clone()), (2, vec![1]));
        assert_eq!(r.write.timeseries.len(), 1);
    }

    #[test]
    fn broken_protobuf_names_the_message() {
        let b = snap::raw::Encoder::new().compress_vec(b"\x22\xff\xff\xff\xff\x0f garbage").unwrap();
        let e = decode(&b, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("io.prometheus.write.v2.Request"), "{e}");
    }
}
