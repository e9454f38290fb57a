//! Validation of one remote-write series against the Prometheus label rules
//! and the configured [`Limits`], and its conversion to sorted [`Labels`].
//!
//! Rules, checked in this order (the first broken one is reported):
//! no labels; too many labels; per label in the order sent: empty name,
//! over-long name, name outside `[a-zA-Z_][a-zA-Z0-9_]*`, over-long value,
//! name equal to (duplicate) or smaller than (unsorted) the previous name;
//! then a missing/empty `__name__`, and a metric name outside
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`. Labels with empty values are dropped after
//! validation (an empty value means "label absent"). UTF-8 validity of names
//! and values is enforced by the protobuf decoder (strings must be UTF-8).

use crate::config::Limits;
use crate::error::DistributorError;
use aion_model::labels::METRIC_NAME;
use aion_model::{Label, Labels};
use aion_proto::prometheus::Label as ProtoLabel;
use std::fmt::Write as _;

/// Longest rendering of a series or label name inside an error message.
const MAX_MESSAGE_PART: usize = 512;

/// Reason labels used in metrics, one per rule.
pub mod reason {
    /// The series has no labels, or no (or an empty) `__name__`.
    pub const MISSING_METRIC_NAME: &str = "missing_metric_name";
    /// The metric name breaks `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub const INVALID_METRIC_NAME: &str = "metric_name_invalid";
    /// A label name is empty or breaks `[a-zA-Z_][a-zA-Z0-9_]*`.
    pub const INVALID_LABEL: &str = "label_invalid";
    /// More labels than `max_label_names_per_series`.
    pub const TOO_MANY_LABELS: &str = "max_label_names_per_series";
    /// A label name longer than `max_label_name_length`.
    pub const LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
    /// A label value longer than `max_label_value_length`.
    pub const LABEL_VALUE_TOO_LONG: &str = "label_value_too_long";
    /// Two labels with the same name.
    pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
    /// Label names not in ascending byte order.
    pub const LABELS_NOT_SORTED: &str = "labels_not_sorted";
    /// The tenant's ingestion rate limit had no room for the request.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A new series over `max_global_series_per_user`.
    pub const PER_USER_SERIES_LIMIT: &str = "per_user_series_limit";
    /// A new series over `max_global_series_per_metric`.
    pub const PER_METRIC_SERIES_LIMIT: &str = "per_metric_series_limit";
    /// A sample older than `past_grace_period`.
    pub const TOO_OLD: &str = "sample_too_old";
    /// A sample further in the future than `creation_grace_period`.
    pub const TOO_FAR_IN_FUTURE: &str = "sample_too_far_in_future";
}

/// Validates `labels` (as sent) and returns them as a [`Labels`] without
/// empty-valued pairs, or an [`DistributorError::InvalidSeries`] naming the series.
/// Takes the labels by value so the accepted strings move into the result.
pub fn validate_series(labels: Vec<ProtoLabel>, limits: &Limits) -> Result<Labels, DistributorError> {
    check_series(&labels, limits)?;
    let kept = labels.into_iter().filter(|l| !l.value.is_empty()).map(|l| Label { name: l.name, value: l.value });
    Ok(Labels::from_sorted(kept.collect()))
}

/// Checks every rule on `labels` (as sent), reporting the first one broken.
fn check_series(labels: &[ProtoLabel], limits: &Limits) -> Result<(), DistributorError> {
    let fail = |reason: &'static str, what: String| {
        Err(DistributorError::InvalidSeries { reason, message: format!("{what} series: '{}'", series_text(labels)) })
    };
    if labels.is_empty() {
        return fail(reason::MISSING_METRIC_NAME, "received a series with no labels".into());
    }
    if labels.len() > limits.max_label_names_per_series {
        let what = format!(
            "received a series with {} labels, more than the limit of {} (max_label_names_per_series)",
            labels.len(),
            limits.max_label_names_per_series
        );
        return fail(reason::TOO_MANY_LABELS, what);
    }
    let mut prev: Option<&str> = None;
    for l in labels {
        if let Some(r) = check_label(l, prev, limits) {
            return fail(r.0, r.1);
        }
        prev = Some(&l.name);
    }
    let name = labels.iter().find(|l| l.name == METRIC_NAME).map(|l| l.value.as_str()).unwrap_or("");
    if name.is_empty() {
        return fail(reason::MISSING_METRIC_NAME, "received a series without a metric name (__name__ label)".into());
    }
    if !is_valid_metric_name(name) {
        return fail(reason::INVALID_METRIC_NAME, format!("received a series with an invalid metric name: {:?}", clip(name)));
    }
    Ok(())
}

/// The first rule `l` breaks, as (reason, message without the series part).
fn check_label(l: &ProtoLabel, prev: Option<&str>, limits: &Limits) -> Option<(&'static str, String)> {
    if l.name.is_empty() {
        return Some((reason::INVALID_LABEL, "received a series with an empty label name:".into()));
    }
    if l.name.len() > limits.max_label_name_length {
        let what = format!(
            "received a series with a label name of {} bytes, longer than the limit of {} (max_label_name_length): label {:?}",
            l.name.len(),
            limits.max_label_name_length,
            clip(&l.name)
        );
        return Some((reason::LABEL_NAME_TOO_LONG, what));
    }
    if !is_valid_label_name(&l.name) {
        return Some((reason::INVALID_LABEL, format!("received a series with an invalid label: {:?}", clip(&l.name))));
    }
    if l.value.len() > limits.max_label_value_length {
        let what = format!(
            "received a series with a label value of {} bytes, longer than the limit of {} (max_label_value_length): label {:?}",
            l.value.len(),
            limits.max_label_value_length,
            l.name
        );
        return Some((reason::LABEL_VALUE_TOO_LONG, what));
    }
    match prev {
        Some(p) if p == l.name => {
            Some((reason::DUPLICATE_LABEL_NAMES, format!("received a series with duplicate label name {:?}", l.name)))
        }
        Some(p) if p > l.name.as_str() => Some((
            reason::LABELS_NOT_SORTED,
            format!("received a series with labels out of order: {:?} comes after {:?}", l.name, p),
        )),
        _ => None,
    }
}

/// True for a Prometheus (legacy charset) label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// True for a Prometheus (legacy charset) metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Renders labels as sent, in Prometheus text form (`name{a="1", b="2"}`),
/// clipped to [`MAX_MESSAGE_PART`] bytes for use in messages.
pub fn series_text(labels: &[ProtoLabel]) -> String {
    let name_idx = labels.iter().position(|l| l.name == METRIC_NAME);
    let mut out = String::new();
    if let Some(i) = name_idx {
        out.push_str(&labels[i].value);
    }
    let rest: Vec<&ProtoLabel> = labels.iter().enumerate().filter(|(i, _)| Some(*i) != name_idx).map(|(_, l)| l).collect();
    if !rest.is_empty() || out.is_empty() {
        out.push('{');
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={:?}", l.name, l.value);
        }
        out.push('}');
    }
    clip(&out)
}

/// `s` cut to at most [`MAX_MESSAGE_PART`] bytes on a char boundary, marked when cut.
fn clip(s: &str) -> String {
    if s.len() <= MAX_MESSAGE_PART {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE_PART;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...(truncated, {} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Vec<ProtoLabel> {
        pairs.iter().map(|(n, v)| ProtoLabel { name: n.to_string(), value: v.to_string() }).collect()
    }

    fn err(pairs: &[(&str, &str)]) -> (&'static str, String) {
        match validate_series(ls(pairs), &Limits::default()) {
            Err(DistributorError::InvalidSeries { reason, message }) => (reason, message),
            other => panic!("expected InvalidSeries for {pairs:?}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_valid_series_and_drops_empty_values() {
        let got = validate_series(ls(&[("__name__", "up"), ("empty", ""), ("job", "a")]), &Limits::default()).unwrap();
        assert_eq!(got, Labels::from_pairs([("__name__", "up"), ("job", "a")]));
        // `__`-prefixed names and colons in metric names are fine.
        assert!(validate_series(ls(&[("__meta_x", "1"), ("__name__", "a:b_c")]), &Limits::default()).is_ok());
        // Uppercase sorts before `_` in byte order.
        assert!(validate_series(ls(&[("Zed", "1"), ("__name__", "up")]), &Limits::default()).is_ok());
    }

    #[test]
    fn each_rule_has_its_reason_and_message() {
        let (r, m) = err(&[]);
        assert_eq!((r, m.as_str()), (reason::MISSING_METRIC_NAME, "received a series with no labels series: '{}'"));
        let (r, m) = err(&[("__name__", "up"), ("0abc", "1")]);
        assert_eq!(r, reason::INVALID_LABEL);
        assert_eq!(m, r#"received a series with an invalid label: "0abc" series: 'up{0abc="1"}'"#);
        let (r, m) = err(&[("", "x"), ("__name__", "up")]);
        assert_eq!(r, reason::INVALID_LABEL);
        assert!(m.contains("empty label name"), "{m}");
        let (r, m) = err(&[("__name__", "up"), ("job", "a"), ("job", "b")]);
        assert_eq!(r, reason::DUPLICATE_LABEL_NAMES);
        assert_eq!(m, r#"received a series with duplicate label name "job" series: 'up{job="a", job="b"}'"#);
        let (r, m) = err(&[("__name__", "up"), ("z", "1"), ("a", "2")]);
        assert_eq!(r, reason::LABELS_NOT_SORTED);
        assert!(m.contains(r#"labels out of order: "a" comes after "z""#), "{m}");
        let (r, m) = err(&[("job", "a")]);
        assert_eq!(r, reason::MISSING_METRIC_NAME);
        assert_eq!(m, r#"received a series without a metric name (__name__ label) series: '{job="a"}'"#);
        let (r, _) = err(&[("__name__", ""), ("job", "a")]);
        assert_eq!(r, reason::MISSING_METRIC_NAME);
        let (r, m) = err(&[("__name__", "0up")]);
        assert_eq!(r, reason::INVALID_METRIC_NAME);
        assert_eq!(m, r#"received a series with an invalid metric name: "0up" series: '0up'"#);
        let (r, _) = err(&[("__name__", "up"), ("a-b", "1")]);
        assert_eq!(r, reason::INVALID_LABEL);
    }

    #[test]
    fn limits_are_enforced_with_numbers_in_the_message() {
        let names: Vec<String> = (0..31).map(|i| format!("l{i:02}")).collect();
        let mut pairs: Vec<(&str, &str)> = vec![("__name__", "up")];
        pairs.extend(names.iter().map(|n| (n.as_str(), "v")));
        let (r, m) = err(&pairs);
        assert_eq!(r, reason::TOO_MANY_LABELS);
        assert!(m.contains("32 labels, more than the limit of 30"), "{m}");
        let long_name = "a".repeat(1025);
        let (r, m) = err(&[("__name__", "up"), (&long_name, "1")]);
        assert_eq!(r, reason::LABEL_NAME_TOO_LONG);
        assert!(m.contains("1025 bytes, longer than the limit of 1024"), "{m}");
        assert!(m.len() < 2000, "message is clipped: {} bytes", m.len());
        let long_value = "v".repeat(2049);
        let (r, m) = err(&[("__name__", "up"), ("job", &long_value)]);
        assert_eq!(r, reason::LABEL_VALUE_TOO_LONG);
        assert!(m.contains("2049 bytes, longer than the limit of 2048 (max_label_value_length): label \"job\""), "{m}");
        // Exactly at the limits is fine.
        let ok_name = "a".repeat(1024);
        let ok_value = "v".repeat(2048);
        assert!(validate_series(ls(&[("__name__", "up"), (&ok_name, &ok_value)]), &Limits::default()).is_ok());
    }

    #[test]
    fn charsets() {
        for ok in ["a", "_", "A_1", "__name__"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a:b", "a-b", "é", "a b"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
        for ok in ["a", ":a", "a:b", "_x9"] {
            assert!(is_valid_metric_name(ok), "{ok}");
        }
        for bad in ["", "9", "a-b", "a.b", "ü"] {
            assert!(!is_valid_metric_name(bad), "{bad}");
        }
    }
}
