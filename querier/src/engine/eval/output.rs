//! Turning evaluated values into query results: delayed `__name__` removal,
//! duplicate-labelset checks, and range-query matrices sorted by labels.

use super::{dup_labelset, Ser, Val};
use crate::engine::{EngineError, Value, VectorSample};
use aion_model::storage::Series;
use aion_model::Sample;
use std::collections::HashSet;

fn cleanup(mut v: Vec<Ser>) -> Vec<Ser> {
    for s in &mut v {
        if s.drop_name {
            // With the metric name go the type and unit labels derived from it.
            s.labels.remove("__name__");
            s.labels.remove("__type__");
            s.labels.remove("__unit__");
            s.drop_name = false;
        }
    }
    v
}

/// The result of an instant query at `t`.
pub(crate) fn finish_instant(v: Val, t: i64) -> Result<Value, EngineError> {
    Ok(match v {
        Val::Scalar(x) => Value::Scalar { t, v: x.first().copied().unwrap_or(f64::NAN) },
        Val::String(s) => Value::String { t, v: s },
        Val::Vector(series) => {
            let series = cleanup(series);
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                if let Some(p) = s.points.first() {
                    if !seen.insert(s.labels.clone()) {
                        return Err(dup_labelset());
                    }
                    out.push(VectorSample { labels: s.labels, t, v: p.v });
                }
            }
            Value::Vector(out)
        }
        Val::Matrix(series) => {
            let series = cleanup(series);
            let mut seen = HashSet::new();
            for s in &series {
                if !seen.insert(&s.labels) {
                    return Err(dup_labelset());
                }
            }
            Value::Matrix(series.into_iter().map(|s| Series { labels: s.labels, samples: s.points }).collect())
        }
    })
}

/// The result of a range query over `steps` timestamps.
pub(crate) fn finish_range(v: Val, steps: &[i64]) -> Result<Value, EngineError> {
    let series = match v {
        Val::Scalar(x) => {
            let samples = steps.iter().zip(x).map(|(t, v)| Sample::new(*t, v)).collect();
            return Ok(Value::Matrix(vec![Series { labels: aion_model::Labels::empty(), samples }]));
        }
        Val::Vector(series) => cleanup(series),
        Val::String(_) | Val::Matrix(_) => {
            return Err(EngineError::Execution(
                "invalid expression type for range query, must be Scalar or instant Vector".into(),
            ))
        }
    };
    let mut series: Vec<Ser> = series.into_iter().filter(|s| !s.points.is_empty()).collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                // Series that became equal by dropping names merge when they do not overlap.
                let mut merged = std::mem::take(&mut last.samples);
                merged.extend(s.points);
                merged.sort_by_key(|p| p.t);
                if merged.windows(2).any(|w| w[0].t == w[1].t) {
                    return Err(dup_labelset());
                }
                last.samples = merged;
            }
            _ => out.push(Series { labels: s.labels, samples: s.points }),
        }
    }
    Ok(Value::Matrix(out))
}
