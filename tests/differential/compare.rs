//! Parses Prometheus HTTP API query responses and compares two of them result
//! by result: same resultType, same label sets, same timestamps, values equal
//! within 1e-9 relative (NaN equals NaN).

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A label set, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// A query result in comparable form.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `scalar`: (t, v).
    Scalar(f64, f64),
    /// `string`: (t, s).
    Str(f64, String),
    /// `vector`: one sample per series, in response order.
    Vector(Vec<(Labels, f64, f64)>),
    /// `matrix`: points per series, in response order.
    Matrix(Vec<(Labels, Vec<(f64, f64)>)>),
    /// `status: error`: errorType and error.
    Error(String),
}

impl Outcome {
    /// Whether the result holds no series (errors are not empty).
    pub fn is_empty(&self) -> bool {
        match self {
            Outcome::Vector(v) => v.is_empty(),
            Outcome::Matrix(m) => m.is_empty(),
            _ => false,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Outcome::Scalar(..) => "scalar",
            Outcome::Str(..) => "string",
            Outcome::Vector(_) => "vector",
            Outcome::Matrix(_) => "matrix",
            Outcome::Error(_) => "error",
        }
    }
}

/// Parses a sample value as the API writes it ("1.5", "NaN", "+Inf", "-Inf").
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn point(p: &Json) -> Result<(f64, f64), String> {
    let t = p.get(0).and_then(Json::as_f64).ok_or_else(|| format!("bad timestamp in {p}"))?;
    let v = p.get(1).and_then(Json::as_str).and_then(parse_value).ok_or_else(|| format!("bad value in {p}"))?;
    Ok((t, v))
}

fn labels(s: &Json) -> Result<Labels, String> {
    let m = s.get("metric").and_then(Json::as_object).ok_or_else(|| format!("series without metric: {s}"))?;
    m.iter().map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())).ok_or_else(|| format!("non-string label {k}: {v}"))).collect()
}

/// Reads an API response body; malformed JSON or shapes become `Outcome::Error`.
pub fn parse_response(body: &str) -> Outcome {
    let j: Json = match serde_json::from_str(body) {
        Ok(j) => j,
        Err(e) => return Outcome::Error(format!("response is not JSON ({e}): {}", truncate(body, 300))),
    };
    if j["status"] != "success" {
        return Outcome::Error(format!("{}: {}", j["errorType"].as_str().unwrap_or("?"), j["error"].as_str().unwrap_or(body)));
    }
    parse_data(&j["data"]).unwrap_or_else(|e| Outcome::Error(format!("malformed data: {e}")))
}

fn parse_data(d: &Json) -> Result<Outcome, String> {
    let result = &d["result"];
    match d["resultType"].as_str() {
        Some("scalar") => point(result).map(|(t, v)| Outcome::Scalar(t, v)),
        Some("string") => {
            let t = result.get(0).and_then(Json::as_f64).ok_or("bad string timestamp")?;
            Ok(Outcome::Str(t, result.get(1).and_then(Json::as_str).unwrap_or_default().to_string()))
        }
        Some("vector") => {
            let arr = result.as_array().ok_or("vector result is not an array")?;
            let mut out = Vec::with_capacity(arr.len());
            for s in arr {
                if s.get("histogram").is_some() {
                    return Err("native histogram sample".into());
                }
                let (t, v) = point(&s["value"])?;
                out.push((labels(s)?, t, v));
            }
            Ok(Outcome::Vector(out))
        }
        Some("matrix") => {
            let arr = result.as_array().ok_or("matrix result is not an array")?;
            let mut out = Vec::with_capacity(arr.len());
            for s in arr {
                if s.get("histograms").is_some() {
                    return Err("native histogram samples".into());
                }
                let pts = s["values"].as_array().ok_or_else(|| format!("series without values: {s}"))?;
                out.push((labels(s)?, pts.iter().map(point).collect::<Result<Vec<_>, _>>()?));
            }
            Ok(Outcome::Matrix(out))
        }
        other => Err(format!("unknown resultType {other:?}")),
    }
}

/// Whether two values agree: equal, both NaN, or within 1e-9 relative (with a
/// 1e-12 absolute floor for results of cancellation that should be zero).
pub fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() < 1e-12
}

fn same_time(a: f64, b: f64) -> bool {
    (a - b).abs() < 5e-4
}

/// Prometheus-style `{a="b", c="d"}`.
pub fn fmt_labels(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Most differences listed per query; the rest are counted.
const MAX_DIFFS: usize = 6;

/// Differences between `ours` (Aion) and `theirs` (Prometheus); empty when they agree.
/// With `ordered`, vector series must also come in the same order.
pub fn diff(ours: &Outcome, theirs: &Outcome, ordered: bool) -> Vec<String> {
    let mut d = Vec::new();
    match (ours, theirs) {
        (Outcome::Error(e), _) => d.push(format!("Aion error: {e}")),
        (_, Outcome::Error(e)) => d.push(format!("Prometheus error: {e}")),
        (Outcome::Scalar(t1, v1), Outcome::Scalar(t2, v2)) => {
            if !same_time(*t1, *t2) || !close(*v1, *v2) {
                d.push(format!("scalar: ours [{t1}, {v1}] vs theirs [{t2}, {v2}]"));
            }
        }
        (Outcome::Str(t1, s1), Outcome::Str(t2, s2)) => {
            if !same_time(*t1, *t2) || s1 != s2 {
                d.push(format!("string: ours [{t1}, {s1:?}] vs theirs [{t2}, {s2:?}]"));
            }
        }
        (Outcome::Vector(a), Outcome::Vector(b)) => diff_vectors(a, b, ordered, &mut d),
        (Outcome::Matrix(a), Outcome::Matrix(b)) => diff_matrices(a, b, &mut d),
        (a, b) => d.push(format!("resultType: ours {} vs theirs {}", a.type_name(), b.type_name())),
    }
    if d.len() > MAX_DIFFS {
        let more = d.len() - MAX_DIFFS;
        d.truncate(MAX_DIFFS);
        d.push(format!("... and {more} more differences"));
    }
    d
}

fn diff_vectors(a: &[(Labels, f64, f64)], b: &[(Labels, f64, f64)], ordered: bool, d: &mut Vec<String>) {
    let ours: BTreeMap<&Labels, (f64, f64)> = a.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    let theirs: BTreeMap<&Labels, (f64, f64)> = b.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    if ours.len() != a.len() {
        d.push(format!("Aion returned duplicate label sets ({} samples, {} distinct)", a.len(), ours.len()));
    }
    for (l, (t2, v2)) in &theirs {
        match ours.get(l) {
            None => d.push(format!("missing in Aion: {} = {v2} @{t2}", fmt_labels(l))),
            Some((t1, v1)) if !same_time(*t1, *t2) || !close(*v1, *v2) => {
                d.push(format!("{}: ours {v1} @{t1} vs theirs {v2} @{t2}", fmt_labels(l)))
            }
            Some(_) => {}
        }
    }
    for (l, (t1, v1)) in &ours {
        if !theirs.contains_key(l) {
            d.push(format!("extra in Aion: {} = {v1} @{t1}", fmt_labels(l)));
        }
    }
    if d.is_empty() && ordered {
        let (oa, ob): (Vec<&Labels>, Vec<&Labels>) = (a.iter().map(|x| &x.0).collect(), b.iter().map(|x| &x.0).collect());
        if oa != ob {
            let show = |o: &[&Labels]| o.iter().map(|l| fmt_labels(l)).collect::<Vec<_>>().join(" ");
            d.push(format!("order differs:\n      ours   {}\n      theirs {}", show(&oa), show(&ob)));
        }
    }
}

fn diff_matrices(a: &[(Labels, Vec<(f64, f64)>)], b: &[(Labels, Vec<(f64, f64)>)], d: &mut Vec<String>) {
    let ours: BTreeMap<&Labels, &Vec<(f64, f64)>> = a.iter().map(|(l, p)| (l, p)).collect();
    let theirs: BTreeMap<&Labels, &Vec<(f64, f64)>> = b.iter().map(|(l, p)| (l, p)).collect();
    if ours.len() != a.len() {
        d.push(format!("Aion returned duplicate label sets ({} series, {} distinct)", a.len(), ours.len()));
    }
    for (l, pb) in &theirs {
        let Some(pa) = ours.get(l) else {
            d.push(format!("missing in Aion: {} ({} points)", fmt_labels(l), pb.len()));
            continue;
        };
        diff_points(l, pa, pb, d);
    }
    for (l, pa) in &ours {
        if !theirs.contains_key(l) {
            d.push(format!("extra in Aion: {} ({} points)", fmt_labels(l), pa.len()));
        }
    }
}

fn diff_points(l: &Labels, pa: &[(f64, f64)], pb: &[(f64, f64)], d: &mut Vec<String>) {
    let ta: Vec<i64> = pa.iter().map(|p| (p.0 * 1000.0).round() as i64).collect();
    let tb: Vec<i64> = pb.iter().map(|p| (p.0 * 1000.0).round() as i64).collect();
    if ta != tb {
        let only_a: Vec<f64> = pa.iter().filter(|p| !tb.contains(&((p.0 * 1000.0).round() as i64))).map(|p| p.0).collect();
        let only_b: Vec<f64> = pb.iter().filter(|p| !ta.contains(&((p.0 * 1000.0).round() as i64))).map(|p| p.0).collect();
        let mut s = format!("{}: timestamps differ ({} vs {} points)", fmt_labels(l), pa.len(), pb.len());
        let _ = write!(s, "; only ours: {}; only theirs: {}", short_list(&only_a), short_list(&only_b));
        d.push(s);
        return;
    }
    let bad: Vec<String> = pa
        .iter()
        .zip(pb)
        .filter(|(x, y)| !close(x.1, y.1))
        .map(|(x, y)| format!("@{}: ours {} vs theirs {}", x.0, x.1, y.1))
        .collect();
    if !bad.is_empty() {
        d.push(format!("{}: {} of {} values differ, first {}", fmt_labels(l), bad.len(), pa.len(), bad[..bad.len().min(3)].join(", ")));
    }
}

fn short_list(v: &[f64]) -> String {
    let shown: Vec<String> = v.iter().take(4).map(|t| format!("{t}")).collect();
    if v.len() > 4 {
        format!("[{}, ... {} in all]", shown.join(", "), v.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_body(items: &[(&str, f64, &str)]) -> String {
        let r: Vec<String> =
            items.iter().map(|(job, t, v)| format!(r#"{{"metric":{{"job":"{job}"}},"value":[{t},"{v}"]}}"#)).collect();
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, r.join(","))
    }

    #[test]
    fn equal_vectors_in_any_order_agree_unless_ordered() {
        let a = parse_response(&vec_body(&[("a", 1.5, "1"), ("b", 1.5, "NaN")]));
        let b = parse_response(&vec_body(&[("b", 1.5, "NaN"), ("a", 1.5, "1.0000000000001")]));
        assert!(diff(&a, &b, false).is_empty(), "{:?}", diff(&a, &b, false));
        assert_eq!(diff(&a, &b, true).len(), 1);
    }

    #[test]
    fn value_label_and_type_differences_are_reported() {
        let a = parse_response(&vec_body(&[("a", 1.5, "1"), ("c", 1.5, "+Inf")]));
        let b = parse_response(&vec_body(&[("a", 1.5, "1.001"), ("b", 1.5, "2")]));
        let d = diff(&a, &b, false);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().any(|x| x.contains("missing in Aion")) && d.iter().any(|x| x.contains("extra in Aion")));
        let s = parse_response(r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#);
        assert_eq!(s, Outcome::Scalar(1.5, 2.0));
        assert!(diff(&s, &a, false)[0].contains("resultType"));
    }

    #[test]
    fn matrices_compare_timestamps_and_values() {
        let m = |v: &str| {
            parse_response(&format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[[1,"1"],[2,"{v}"]]}}]}}}}"#
            ))
        };
        assert!(diff(&m("2"), &m("2"), false).is_empty());
        assert_eq!(diff(&m("2"), &m("3"), false).len(), 1);
        let short = parse_response(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#);
        assert!(diff(&short, &m("2"), false)[0].contains("timestamps differ"));
    }

    #[test]
    fn errors_and_garbage_are_outcomes() {
        let e = parse_response(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#);
        assert_eq!(e, Outcome::Error("bad_data: parse error".into()));
        assert!(matches!(parse_response("<html>"), Outcome::Error(_)));
        assert!(close(0.0, 1e-15) && !close(1.0, 1.0 + 1e-6) && close(f64::NAN, f64::NAN));
    }
}
