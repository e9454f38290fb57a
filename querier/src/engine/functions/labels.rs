//! `label_replace` and `label_join` on one label set.
//!
//! Build a [`LabelReplace`] / [`LabelJoin`] once per query (this validates
//! the arguments and compiles the regex) and apply it to every series at
//! every step. The caller checks afterwards that no two output series share
//! a label set ([`FunctionError::DuplicateLabelset`]) and keeps or drops the
//! metric name as Prometheus does (kept when `dst` is `__name__`).
//!
//! Label names follow Prometheus 3's UTF-8 rules: any non-empty string is a
//! valid name. Regexes use Go RE2 syntax, which the `regex` crate shares, and
//! `$1`, `${1}`, `$name`, `${name}` in the replacement expand as Go's
//! `Regexp.Expand` does (e.g. `$1x` names the group `1x`, which does not
//! exist, so it expands to nothing).

use super::error::FunctionError;
use aion_model::Labels;
use regex::{Captures, Regex};

/// True when `name` may be used as a label name (Prometheus 3 with UTF-8
/// names: any non-empty valid UTF-8 string, which every `&str` is).
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// A validated `label_replace(v, dst, replacement, src, regex)` call.
#[derive(Debug, Clone)]
pub struct LabelReplace {
    dst: String,
    replacement: String,
    src: String,
    regex: Regex,
}

impl LabelReplace {
    /// Compiles `regex` anchored at both ends (`^(?s:regex)$`) and checks
    /// `dst`. Errors carry Prometheus's messages.
    pub fn new(dst: &str, replacement: &str, src: &str, regex: &str) -> Result<Self, FunctionError> {
        let compiled = Regex::new(&format!("^(?s:{regex})$"))
            .map_err(|_| FunctionError::InvalidRegex { regex: regex.to_string() })?;
        if !is_valid_label_name(dst) {
            return Err(FunctionError::InvalidDestinationLabel { function: "label_replace", name: dst.to_string() });
        }
        Ok(Self { dst: dst.to_string(), replacement: replacement.to_string(), src: src.to_string(), regex: compiled })
    }

    /// The destination label name.
    pub fn dst(&self) -> &str {
        &self.dst
    }

    /// Applies the replacement to `labels`: when the value of `src` (empty if
    /// absent) matches the regex, `dst` is set to the expanded replacement
    /// (removed when that is empty). `None` when the regex does not match
    /// and the labels stay as they are.
    pub fn apply(&self, labels: &Labels) -> Option<Labels> {
        let src_value = labels.get(&self.src).unwrap_or("");
        let caps = self.regex.captures(src_value)?;
        let value = expand_go_template(&self.replacement, &caps, &self.regex);
        let mut out = labels.clone();
        out.set(&self.dst, &value);
        Some(out)
    }
}

/// One-shot `label_replace` on a single label set (compiles the regex each
/// call; prefer [`LabelReplace`] in loops). Unmatched input is returned as is.
pub fn label_replace(
    labels: &Labels,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Labels, FunctionError> {
    let op = LabelReplace::new(dst, replacement, src, regex)?;
    Ok(op.apply(labels).unwrap_or_else(|| labels.clone()))
}

/// A validated `label_join(v, dst, separator, src...)` call.
#[derive(Debug, Clone)]
pub struct LabelJoin {
    dst: String,
    separator: String,
    srcs: Vec<String>,
}

impl LabelJoin {
    /// Checks every source name, then `dst` (the order Prometheus reports).
    pub fn new(dst: &str, separator: &str, srcs: &[String]) -> Result<Self, FunctionError> {
        if let Some(bad) = srcs.iter().find(|s| !is_valid_label_name(s)) {
            return Err(FunctionError::InvalidSourceLabel { name: bad.clone() });
        }
        if !is_valid_label_name(dst) {
            return Err(FunctionError::InvalidDestinationLabel { function: "label_join", name: dst.to_string() });
        }
        Ok(Self { dst: dst.to_string(), separator: separator.to_string(), srcs: srcs.to_vec() })
    }

    /// The destination label name.
    pub fn dst(&self) -> &str {
        &self.dst
    }

    /// Sets `dst` to the values of the sources (absent ones as empty strings)
    /// joined by the separator; an empty result removes `dst`.
    pub fn apply(&self, labels: &Labels) -> Labels {
        let values: Vec<&str> = self.srcs.iter().map(|s| labels.get(s).unwrap_or("")).collect();
        let mut out = labels.clone();
        out.set(&self.dst, &values.join(&self.separator));
        out
    }
}

/// One-shot `label_join` on a single label set.
pub fn label_join(labels: &Labels, dst: &str, separator: &str, srcs: &[String]) -> Result<Labels, FunctionError> {
    Ok(LabelJoin::new(dst, separator, srcs)?.apply(labels))
}

/// Expands `template` with the groups of `caps` following Go's
/// `Regexp.Expand`: `$$` is a literal `$`; `$name` takes the longest run of
/// letters, digits and `_`; `${name}` is delimited by braces; an all-digit
/// name without a leading zero is a group number, anything else a group
/// name; unknown or unmatched groups expand to nothing; a malformed
/// reference leaves the `$` as text.
pub fn expand_go_template(template: &str, caps: &Captures<'_>, regex: &Regex) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = extract_reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        let group = match group_number(name) {
            Some(n) => caps.get(n),
            None => regex.capture_names().position(|n| n == Some(name)).and_then(|i| caps.get(i)),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// Splits a leading `name` or `{name}` off `s` (the `$` already removed).
fn extract_reference(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body.find(|c: char| !(c.is_alphabetic() || c.is_numeric() || c == '_')).unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if !braced {
        return Some((name, &body[end..]));
    }
    body[end..].strip_prefix('}').map(|after| (name, after))
}

/// The group number a reference names: ASCII digits, no leading zero (except
/// `0` itself), below 10^8.
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) || name.len() > 8 {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(src: &str) -> Labels {
        Labels::from_pairs([("__name__", "testmetric"), ("src", src), ("dst", "original-destination-value")])
    }

    fn dst_of(l: &Labels) -> Option<&str> {
        l.get("dst")
    }

    #[test]
    fn replace_matches_functions_test() {
        let m = metric("source-value-10");
        let r = |d: &str, rep: &str, s: &str, re: &str| label_replace(&m, d, rep, s, re);
        let out = r("dst", "destination-value-$1", "src", "source-value-(.*)").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("destination-value-10"));
        assert_eq!(out.get("src"), Some("source-value-10"));
        assert_eq!(out.metric_name(), Some("testmetric"));
        // Anchored: no substring match.
        let out = r("dst", "destination-value-$1", "src", "value-(.*)").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("original-destination-value"));
        let out = r("dst", "$1-value-$2", "src", "(.*)-value-(.*)").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("source-value-10"));
        let out = r("dst", "value-$1", "nonexistent-src", "source-value-(.*)").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("original-destination-value"));
        let out = r("dst", "value-$1", "nonexistent-src", "(.*)").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("value-"));
        let out = r("dst", "value-$1", "src", "non-matching-regex").unwrap_or_default();
        assert_eq!(dst_of(&out), Some("original-destination-value"));
        let out = r("dst", "", "dst", ".*").unwrap_or_default();
        assert_eq!(dst_of(&out), None);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn replace_errors() {
        let m = metric("x");
        assert_eq!(
            label_replace(&m, "dst", "value-$1", "src", "(.*"),
            Err(FunctionError::InvalidRegex { regex: "(.*".to_string() })
        );
        let err = label_replace(&m, "", "", "src", "(.*)");
        assert_eq!(err, Err(FunctionError::InvalidDestinationLabel { function: "label_replace", name: String::new() }));
        assert_eq!(
            err.map_err(|e| e.to_string()).err().as_deref(),
            Some("invalid destination label name in label_replace(): ")
        );
        // Dotted / UTF-8 destination names are valid in Prometheus 3.
        let out = label_replace(&m, "service.name", "v", "src", "x").unwrap_or_default();
        assert_eq!(out.get("service.name"), Some("v"));
    }

    #[test]
    fn dot_matches_newlines_and_unmatched_is_none() {
        let op = LabelReplace::new("dst", "[$1]", "src", "a(.*)").ok();
        let m = metric("a\nb");
        assert_eq!(op.as_ref().and_then(|o| o.apply(&m)).as_ref().and_then(|l| dst_of(l).map(str::to_string)), Some("[\nb]".into()));
        assert!(op.as_ref().is_some_and(|o| o.apply(&metric("zzz")).is_none()));
        assert_eq!(op.map(|o| o.dst().to_string()), Some("dst".to_string()));
    }

    #[test]
    fn go_template_expansion() {
        let re = Regex::new(r"^(?s:(?P<first>[a-z]+)-(\d+))$").ok();
        let Some(re) = re else { panic!("BUG: test regex must compile") };
        let Some(caps) = re.captures("abc-42") else { panic!("BUG: test regex must match") };
        let e = |t: &str| expand_go_template(t, &caps, &re);
        assert_eq!(e("$1"), "abc");
        assert_eq!(e("${1}x"), "abcx");
        assert_eq!(e("$1x"), ""); // group "1x" does not exist
        assert_eq!(e("$first/$2"), "abc/42");
        assert_eq!(e("${first}_"), "abc_");
        assert_eq!(e("$first_"), "");
        assert_eq!(e("$0"), "abc-42");
        assert_eq!(e("$01"), ""); // leading zero: a name, not a number
        assert_eq!(e("$9"), "");
        assert_eq!(e("$$1"), "$1");
        assert_eq!(e("cost: $"), "cost: $");
        assert_eq!(e("${1"), "${1");
        assert_eq!(e("$-"), "$-");
        assert_eq!(e("no refs"), "no refs");
    }

    #[test]
    fn join_matches_functions_test() {
        let m = Labels::from_pairs([("src", "a"), ("src1", "b"), ("src2", "c"), ("dst", "original-destination-value")]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let out = label_join(&m, "dst", "-", &s(&["src", "src1", "src2"])).unwrap_or_default();
        assert_eq!(dst_of(&out), Some("a-b-c"));
        let out = label_join(&m, "dst", "-", &s(&["src", "src3", "src1"])).unwrap_or_default();
        assert_eq!(dst_of(&out), Some("a--b"));
        let out = label_join(&m, "dst", "", &s(&["emptysrc", "emptysrc1", "emptysrc2"])).unwrap_or_default();
        assert_eq!(dst_of(&out), None);
        let out = label_join(&m, "dst", ", ", &[]).unwrap_or_default();
        assert_eq!(dst_of(&out), None);
        let out = label_join(&m, "new", ", ", &s(&["src", "src1", "src2"])).unwrap_or_default();
        assert_eq!(out.get("new"), Some("a, b, c"));
        let l = Labels::from_pairs([("label", "a"), ("idx", "1")]);
        let out = label_join(&l, "idx", ",", &s(&["label", "label"])).unwrap_or_default();
        assert_eq!(out.get("idx"), Some("a,a"));
        assert_eq!(
            label_join(&m, "dst", "-", &s(&["src", ""])).map_err(|e| e.to_string()),
            Err("invalid source label name in label_join(): ".to_string())
        );
        assert_eq!(
            label_join(&m, "", "-", &s(&["src"])).map_err(|e| e.to_string()),
            Err("invalid destination label name in label_join(): ".to_string())
        );
    }
}
