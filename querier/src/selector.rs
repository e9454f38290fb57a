//! Converting `promql-parser` selectors into model [`Matcher`]s, and parsing
//! the `match[]` series selectors of the metadata endpoints.

use aion_model::labels::METRIC_NAME;
use aion_model::{MatchOp, Matcher};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{Expr, VectorSelector};

/// Model matcher for one parser matcher.
pub fn convert_matcher(m: &PMatcher) -> Result<Matcher, String> {
    let op = match &m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
}

/// The matcher sets of a vector selector: one set per `or` branch (usually one),
/// each including the `__name__` matcher when the selector names a metric.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, String> {
    let name = vs.name.as_ref().map(|n| Matcher::equal(METRIC_NAME, n.clone()));
    let mut sets: Vec<Vec<&PMatcher>> = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        sets.push(vs.matchers.matchers.iter().collect());
    } else {
        for branch in &vs.matchers.or_matchers {
            sets.push(branch.iter().chain(vs.matchers.matchers.iter()).collect());
        }
    }
    sets.into_iter()
        .map(|set| {
            let mut out: Vec<Matcher> = name.iter().cloned().collect();
            for m in set {
                out.push(convert_matcher(m)?);
            }
            Ok(out)
        })
        .collect()
}

/// Parses one `match[]` value (a series selector such as `up{job="x"}`).
pub fn parse_series_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    match promql_parser::parser::parse(s) {
        Ok(Expr::VectorSelector(vs)) if vs.offset.is_none() && vs.at.is_none() => selector_matchers(&vs),
        Ok(_) => Err(format!("invalid parameter \"match[]\": {s:?} is not a series selector")),
        Err(e) => Err(format!("invalid parameter \"match[]\": {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_becomes_a_matcher() {
        let sets = parse_series_selector(r#"up{job=~"a.*"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0][0], Matcher::equal("__name__", "up"));
        assert_eq!(sets[0][1].op, MatchOp::Regex);
        assert!(parse_series_selector("sum(up)").is_err());
        assert!(parse_series_selector("up{").is_err());
    }
}
