//! Comparison of a query's result with an eval's expectations.

use super::script::{EvalCmd, EvalKind, ExpectedLine, MsgMatch};
use super::series::Point;
use crate::engine::{EngineError, QueryResult, Value};
use aion_model::Labels;
use std::collections::HashMap;

/// Relative tolerance of float comparisons (as Prometheus's test runner).
const EPSILON: f64 = 1e-6;

/// True when `a` and `b` are equal within the test tolerance (NaN equals NaN).
pub fn almost_equal(a: f64, b: f64) -> bool {
    crate::engine::functions::histogram::almost_equal(a, b, EPSILON)
}

fn msg_matches(m: &MsgMatch, actual: &str) -> bool {
    match m {
        MsgMatch::Any => true,
        MsgMatch::Exact(e) => e.trim() == actual.trim(),
        MsgMatch::Regex(r) => regex::Regex::new(r).map(|re| re.is_match(actual)).unwrap_or(false),
    }
}

/// Checks one eval's result; `Err` says what differed.
pub fn check_eval(e: &EvalCmd, res: Result<QueryResult, EngineError>) -> Result<(), String> {
    let res = match (res, &e.expect.fail) {
        (Err(err), Some(m)) => {
            return if msg_matches(m, &err.to_string()) {
                Ok(())
            } else {
                Err(format!("error {:?} does not match expected {m:?}", err.to_string()))
            };
        }
        (Ok(r), Some(_)) => return Err(format!("expected an error, got {}", show_value(&r.value))),
        (Err(err), None) => return Err(format!("unexpected error: {err}")),
        (Ok(r), None) => r,
    };
    check_annotations(e, &res)?;
    check_value(e, &res.value)
}

fn check_annotations(e: &EvalCmd, r: &QueryResult) -> Result<(), String> {
    let x = &e.expect;
    for (want, got, kind) in [(&x.warn, &r.warnings, "warning"), (&x.info, &r.infos, "info")] {
        for m in want {
            if !got.iter().any(|g| msg_matches(m, g)) {
                return Err(format!("expected {kind} {m:?}, got {got:?}"));
            }
        }
    }
    if x.no_warn && !r.warnings.is_empty() {
        return Err(format!("expected no warnings, got {:?}", r.warnings));
    }
    if x.no_info && !r.infos.is_empty() {
        return Err(format!("expected no infos, got {:?}", r.infos));
    }
    Ok(())
}

fn check_value(e: &EvalCmd, v: &Value) -> Result<(), String> {
    if let Some(s) = &e.expect.string {
        return match v {
            Value::String { v, .. } if v == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {}", show_value(other))),
        };
    }
    if let [ExpectedLine::Scalar(want)] = e.results.as_slice() {
        return match v {
            Value::Scalar { v, .. } if almost_equal(*want, *v) => Ok(()),
            other => Err(format!("expected scalar {want}, got {}", show_value(other))),
        };
    }
    let series: Vec<_> = e
        .results
        .iter()
        .filter_map(|l| match l {
            ExpectedLine::Series(s) => Some(s),
            ExpectedLine::Scalar(_) => None,
        })
        .collect();
    match (e.kind, v) {
        (EvalKind::Instant { .. }, Value::Vector(got)) if e.expect.range_vector.is_none() => {
            if got.len() != series.len() {
                return Err(format!("expected {} samples, got {}", series.len(), show_value(v)));
            }
            for (i, want) in series.iter().enumerate() {
                let Some(pos) = got.iter().position(|s| s.labels == want.labels) else {
                    return Err(format!("expected {} missing; got {}", want.labels, show_value(v)));
                };
                if e.expect.ordered && pos != i {
                    return Err(format!("expected {} at position {i}, found at {pos}", want.labels));
                }
                let wv = match want.points.as_slice() {
                    [Point::Float(f)] => *f,
                    other => return Err(format!("bad expected points {other:?}")),
                };
                if !almost_equal(wv, got[pos].v) {
                    return Err(format!("{}: expected {wv}, got {}", want.labels, got[pos].v));
                }
            }
            Ok(())
        }
        (EvalKind::Instant { .. }, Value::Matrix(got)) if e.expect.range_vector.is_some() => {
            let (s, _, step) = e.expect.range_vector.unwrap_or_default();
            check_matrix(&series, got, s, step, v)
        }
        (EvalKind::Range { start_ms, step_ms, .. }, Value::Matrix(got)) => {
            check_matrix(&series, got, start_ms, step_ms, v)
        }
        (_, other) => Err(format!("unexpected result type: {}", show_value(other))),
    }
}

fn check_matrix(
    want: &[&super::series::SeriesDesc],
    got: &[aion_model::storage::Series],
    start: i64,
    step: i64,
    v: &Value,
) -> Result<(), String> {
    let by_labels: HashMap<&Labels, &aion_model::storage::Series> = got.iter().map(|s| (&s.labels, s)).collect();
    let want_nonempty: Vec<_> = want.iter().filter(|w| w.points.iter().any(|p| *p != Point::Gap)).collect();
    if want_nonempty.len() != got.len() {
        return Err(format!("expected {} series, got {}", want_nonempty.len(), show_value(v)));
    }
    for w in want_nonempty {
        let Some(s) = by_labels.get(&w.labels) else {
            return Err(format!("expected series {} missing; got {}", w.labels, show_value(v)));
        };
        let exp: Vec<(i64, f64)> = w
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Point::Float(f) => Some((start + i as i64 * step, *f)),
                Point::Stale => Some((start + i as i64 * step, aion_model::sample::stale_nan())),
                _ => None,
            })
            .collect();
        let ok = exp.len() == s.samples.len()
            && exp.iter().zip(&s.samples).all(|((t, f), smp)| *t == smp.t && almost_equal(*f, smp.v));
        if !ok {
            let got: Vec<(i64, f64)> = s.samples.iter().map(|x| (x.t, x.v)).collect();
            return Err(format!("{}: expected {exp:?}, got {got:?}", w.labels));
        }
    }
    Ok(())
}

/// A short text form of a value for failure messages.
pub fn show_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { v, .. } => format!("string {v:?}"),
        Value::Vector(s) => {
            let items: Vec<String> = s.iter().take(20).map(|x| format!("{} {}", x.labels, x.v)).collect();
            format!("vector[{}] {{{}}}", s.len(), items.join(", "))
        }
        Value::Matrix(m) => {
            let items: Vec<String> = m
                .iter()
                .take(10)
                .map(|x| {
                    let pts: Vec<String> = x.samples.iter().take(12).map(|p| format!("{}@{}", p.v, p.t)).collect();
                    format!("{} [{}]", x.labels, pts.join(" "))
                })
                .collect();
            format!("matrix[{}] {{{}}}", m.len(), items.join(", "))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn float_tolerance_and_messages() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(msg_matches(&MsgMatch::Exact("a (1:2) ".into()), "a (1:2)"));
        assert!(!msg_matches(&MsgMatch::Exact("a (1:2)".into()), "a"));
        assert!(msg_matches(&MsgMatch::Regex(r"got NaN \([0-9]+:[0-9]+\)".into()), "x got NaN (1:3)"));
    }
}
