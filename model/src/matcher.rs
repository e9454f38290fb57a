//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics.

use crate::error::{ModelError, Result};
use crate::labels::Labels;
use pattern::Pattern;

mod pattern;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// A label matcher. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Literal value or regex source.
    pub value: String,
    re: Option<Pattern>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// Builds a matcher, compiling (anchored) regexes.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Pattern::new(&value).map_err(|e| {
                ModelError::InvalidRegex { name: name.clone(), pattern: value.clone(), reason: e.to_string() }
            })?),
            _ => None,
        };
        Ok(Self { name, op, value, re })
    }

    /// Shorthand for an `=` matcher.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), op: MatchOp::Equal, value: value.into(), re: None }
    }

    /// True when `value` (empty for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True when the matcher accepts the empty string (i.e. matches series
    /// lacking the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// True when the series with `labels` satisfies this matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

/// True when `labels` satisfies every matcher.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let m = Matcher::new(MatchOp::Regex, "job", "a.*").unwrap();
        assert!(m.matches("abc"));
        assert!(!m.matches("xabc"));
        let l = Labels::from_pairs([("x", "1")]);
        assert!(Matcher::new(MatchOp::Equal, "job", "").unwrap().matches_labels(&l));
        assert!(Matcher::new(MatchOp::Regex, "job", "[").is_err());
    }
}
