//! How a regex matcher tests a value: most dashboard regexes are a literal
//! with `.*` on one or both sides (`.*query.*`, `api-.*`) or a list of
//! literals (`a|b|c`), which are answered by string comparison like
//! Prometheus's fast regex matcher does; the rest use the compiled regex,
//! kept in a process-wide cache so that a dashboard's repeated queries do
//! not compile the same pattern again.

use crate::memo::StrMemo;
use regex::Regex;

/// A fully anchored pattern (`^(?s:…)$`) in its cheapest exact form.
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// `.*`: every value.
    Any,
    /// `.+`: every non-empty value.
    NonEmpty,
    /// A literal.
    Exact(String),
    /// `lit.*`
    Prefix(String),
    /// `.*lit`
    Suffix(String),
    /// `.*lit.*`
    Contains(String),
    /// `a|b|c` of literals.
    OneOf(Vec<String>),
    /// Anything else.
    Regex(Regex),
}

/// Most distinct patterns the cache holds before it starts over.
const CACHE_CAP: usize = 1024;

/// True when `s` has no regex syntax, so it matches exactly itself.
fn is_literal(s: &str) -> bool {
    !s.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))
}

impl Pattern {
    /// The pattern `source` (unanchored syntax; matching is anchored and
    /// `.` matches newlines, as in Prometheus). Errors as `Regex::new`.
    pub(crate) fn new(source: &str) -> Result<Self, regex::Error> {
        if let Some(p) = Self::simple(source) {
            return Ok(p);
        }
        Ok(Pattern::Regex(cached_regex(source)?))
    }

    /// The string-comparison form of `s`, when it has one.
    fn simple(s: &str) -> Option<Self> {
        match s {
            ".*" => return Some(Pattern::Any),
            ".+" => return Some(Pattern::NonEmpty),
            _ => {}
        }
        if is_literal(s) {
            return Some(Pattern::Exact(s.to_string()));
        }
        let lead = s.strip_prefix(".*");
        let trail = s.strip_suffix(".*");
        match (lead, trail) {
            (Some(l), Some(_)) if l.len() >= 2 => {
                let mid = &l[..l.len() - 2];
                (!mid.is_empty() && is_literal(mid)).then(|| Pattern::Contains(mid.to_string()))
            }
            (Some(l), None) => is_literal(l).then(|| Pattern::Suffix(l.to_string())),
            (None, Some(t)) => is_literal(t).then(|| Pattern::Prefix(t.to_string())),
            _ => {
                let alts: Vec<&str> = s.split('|').collect();
                (alts.len() > 1 && alts.iter().all(|a| is_literal(a)))
                    .then(|| Pattern::OneOf(alts.into_iter().map(str::to_string).collect()))
            }
        }
    }

    /// True when the whole of `value` matches.
    #[inline]
    pub(crate) fn is_match(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::NonEmpty => !value.is_empty(),
            Pattern::Exact(l) => value == l,
            Pattern::Prefix(l) => value.starts_with(l.as_str()),
            Pattern::Suffix(l) => value.ends_with(l.as_str()),
            Pattern::Contains(l) => value.contains(l.as_str()),
            Pattern::OneOf(ls) => ls.iter().any(|l| l == value),
            Pattern::Regex(r) => r.is_match(value),
        }
    }
}

/// The anchored regex of `source`, compiled once per process (a `Regex`
/// clone shares the compiled program).
fn cached_regex(source: &str) -> Result<Regex, regex::Error> {
    static CACHE: StrMemo<Regex> = StrMemo::new(CACHE_CAP);
    CACHE.get_or_try(source, |s| Regex::new(&format!("^(?s:{s})$")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every fast form answers exactly as the anchored regex does.
    #[test]
    fn fast_forms_agree_with_the_regex() {
        let values = ["", "query", "/api/v1/query", "/api/v1/query_range", "api-x", "x-api", "a", "b", "ab", "a\nquery\n", "que", ".*"];
        let patterns = [
            ".*", ".+", "query", ".*query.*", "api-.*", ".*-api", "a|b", "a|b|", "/api/v1/query", ".*.*", ".*a", "a.*",
            "svc-[1-3]", "(a|b)", "a.b", ".*qu.ry.*", ".*(query).*", "\\.\\*",
        ];
        for p in patterns {
            let fast = Pattern::new(p).unwrap();
            let re = Regex::new(&format!("^(?s:{p})$")).unwrap();
            for v in values {
                assert_eq!(fast.is_match(v), re.is_match(v), "pattern {p:?} value {v:?} ({fast:?})");
            }
        }
        assert!(matches!(Pattern::new(".*query.*").unwrap(), Pattern::Contains(_)));
        assert!(matches!(Pattern::new("a|b").unwrap(), Pattern::OneOf(_)));
        assert!(matches!(Pattern::new("svc-[1-3]").unwrap(), Pattern::Regex(_)));
        assert!(Pattern::new("[").is_err());
    }
}
