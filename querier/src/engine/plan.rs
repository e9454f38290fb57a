//! Query planning: parsing with `promql-parser` and the checks Prometheus
//! makes before evaluating.

pub mod duration;

pub use duration::DurationContext;

use super::EngineError;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use aion_model::memo::StrMemo;

/// Distinct query texts the parse cache holds before it starts over.
const PARSE_CACHE_CAP: usize = 512;
/// Longer queries are not cached.
const PARSE_CACHE_MAX_LEN: usize = 4096;

/// The plain parse of `query`, cached per process: parsing compiles every
/// regex matcher (a dense DFA for `.*foo.*` takes about a millisecond), an
/// API request parses its query twice (limits, then evaluation) and
/// dashboards repeat the same queries. Parsing is a pure function of the
/// text, so a cached tree is the tree a new parse would give.
fn parse_plain(query: &str) -> Result<Expr, String> {
    static CACHE: StrMemo<Expr> = StrMemo::new(PARSE_CACHE_CAP);
    if query.len() > PARSE_CACHE_MAX_LEN {
        return promql_parser::parser::parse(query);
    }
    CACHE.get_or_try(query, promql_parser::parser::parse)
}

/// Label of a placeholder matcher that lets `info(v, {data=~".*"})` parse
/// (the parser wants a non-empty matcher); `info()` ignores it.
pub const INFO_MARKER: &str = "__aion_info_selector__";

/// Parses `query`, mapping parser errors to [`EngineError::Parse`]. Syntax
/// the parser lacks (duration expressions, `info()` with only empty-matching
/// data matchers) is rewritten first when the plain parse fails.
pub fn parse(query: &str, ctx: DurationContext) -> Result<Expr, EngineError> {
    let err = match parse_plain(query) {
        Ok(e) => return Ok(e),
        Err(err) => err,
    };
    let mut q = query.to_string();
    let mut changed = false;
    if let Some(r) = duration::rewrite(&q, ctx) {
        q = r;
        changed = true;
        if let Ok(e) = promql_parser::parser::parse(&q) {
            return Ok(e);
        }
    }
    if let Some(r) = mark_extended_selectors(&q) {
        q = r;
        changed = true;
    }
    if let Some(r) = mark_info_selectors(&q) {
        q = r;
        changed = true;
    }
    if changed {
        if let Ok(e) = promql_parser::parser::parse(&q) {
            return Ok(e);
        }
    }
    Err(EngineError::Parse(err))
}

/// Words after which an identifier is not a metric name.
const KEYWORDS: &[&str] = &[
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];

/// Moves `anchored`/`smoothed` modifiers into a placeholder matcher of the
/// selector before them, so the parser accepts the query.
fn mark_extended_selectors(query: &str) -> Option<String> {
    let b = query.as_bytes();
    let (mut i, mut braces) = (0usize, 0i32);
    let mut last_sel: Option<(usize, bool)> = None;
    let mut edits: Vec<(usize, String, usize)> = Vec::new(); // (insert at, text, then skip to)
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'{' {
            if braces == 0 {
                last_sel = Some((i + 1, true));
            }
            braces += 1;
            i += 1;
        } else if c == b'}' {
            braces -= 1;
            i += 1;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if braces == 0 && (c.is_ascii_alphabetic() || c == b'_' || c == b':') {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = query[start..i].to_ascii_lowercase();
            if word == "anchored" || word == "smoothed" {
                let (at, has_braces) = last_sel?;
                let text = if has_braces {
                    format!("{}=\"{word}\",", crate::engine::eval::EXT_MARKER)
                } else {
                    format!("{{{}=\"{word}\"}}", crate::engine::eval::EXT_MARKER)
                };
                edits.push((at, text, start));
                edits.push((start, String::new(), i));
            } else if !KEYWORDS.contains(&word.as_str()) && query[i..].trim_start().as_bytes().first() != Some(&b'(') {
                last_sel = Some((i, false));
            }
        } else {
            i += 1;
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(query.len() + 64);
    let mut pos = 0;
    for (at, text, skip_to) in edits {
        if at < pos {
            return None;
        }
        out.push_str(&query[pos..at]);
        out.push_str(&text);
        pos = if text.is_empty() { skip_to } else { at };
    }
    out.push_str(&query[pos..]);
    Some(out)
}

/// Inserts [`INFO_MARKER`] into the selector argument of every `info(` call.
fn mark_info_selectors(query: &str) -> Option<String> {
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len() + 64);
    let mut last = 0;
    let mut found = false;
    for (start, _) in query.match_indices("info(") {
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        // Find the top-level comma of this call, then its selector's `{`.
        let mut depth = 0i32;
        let mut i = start + 4;
        while i < b.len() {
            match b[i] {
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b',' if depth == 1 => break,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            i += 1;
        }
        if i >= b.len() || b[i] != b',' {
            continue;
        }
        let brace = i + 1 + query[i + 1..].len() - query[i + 1..].trim_start().len();
        if b.get(brace) != Some(&b'{') || brace < last {
            continue;
        }
        out.push_str(&query[last..=brace]);
        out.push_str(INFO_MARKER);
        out.push_str("=~\".+\",");
        last = brace + 1;
        found = true;
    }
    out.push_str(&query[last..]);
    found.then_some(out)
}

/// Checks that `e` may be the body of a range query.
pub fn check_range_query(e: &Expr) -> Result<(), EngineError> {
    match e.value_type() {
        ValueType::Scalar | ValueType::Vector => Ok(()),
        t => Err(EngineError::Parse(format!(
            "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
            match t {
                ValueType::Matrix => "range vector",
                _ => "string",
            }
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_matrix_range_queries() {
        let parse = |q: &str| parse(q, DurationContext { step_ms: 0, range_ms: 0 });
        assert!(parse("sum(rate(x[5m]))").is_ok());
        assert!(matches!(parse("sum(("), Err(EngineError::Parse(_))));
        let m = parse("x[5m]").unwrap();
        assert!(check_range_query(&m).is_err());
        assert!(check_range_query(&parse("1 + 1").unwrap()).is_ok());
        assert!(parse(r#"info(metric, {data=~".*"})"#).is_ok());
        assert_eq!(
            mark_extended_selectors(r#"rate(m{a="b"}[1m] anchored) + m offset -100 smoothed"#).as_deref(),
            Some(
                r#"rate(m{__aion_range_modifier__="anchored",a="b"}[1m] ) + m{__aion_range_modifier__="smoothed"} offset -100 "#
            )
        );
        assert_eq!(
            mark_info_selectors(r#"info(rate(x[5m]), {a=~".*"})"#).as_deref(),
            Some(r#"info(rate(x[5m]), {__aion_info_selector__=~".+",a=~".*"})"#)
        );
    }
}

/// String literals of `query` that Go would decode to invalid UTF-8 (through
/// `\x` escapes): maps the text the parser produced to Go's `%q` form, so
/// label-name checks can reject them as Prometheus does.
pub fn invalid_utf8_literals(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let q = b[i];
        if q != b'"' && q != b'\'' {
            i += 1;
            continue;
        }
        let mut raw: Vec<u8> = Vec::new();
        let mut parsed = String::new();
        let mut has_x = false;
        i += 1;
        while i < b.len() && b[i] != q {
            if b[i] == b'\\' && i + 1 < b.len() {
                if b[i + 1] == b'x' && i + 3 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&query[i + 2..i + 4], 16) {
                        raw.push(v);
                        parsed.push(char::from(v));
                        has_x = true;
                        i += 4;
                        continue;
                    }
                }
                raw.extend_from_slice(&b[i..i + 2]);
                parsed.push(char::from(b[i + 1]));
                i += 2;
                continue;
            }
            let ch_len = query[i..].chars().next().map_or(1, char::len_utf8);
            raw.extend_from_slice(&b[i..i + ch_len]);
            parsed.push_str(&query[i..i + ch_len]);
            i += ch_len;
        }
        i += 1;
        if has_x && std::str::from_utf8(&raw).is_err() {
            out.push((parsed, go_quote_bytes(&raw)));
        }
    }
    out
}

/// Go's `%q` of a byte string: invalid UTF-8 bytes as `\xNN`.
fn go_quote_bytes(raw: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c => s.push(c),
            }
        }
        for byte in chunk.invalid() {
            s.push_str(&format!("\\x{byte:02x}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod literal_tests {
    use super::*;

    #[test]
    fn finds_invalid_utf8_escapes() {
        let v = invalid_utf8_literals(r#"count_values("a\xc5z", x) + label_replace(y, "ok", "\x41", "", "")"#);
        assert_eq!(v, vec![("a\u{c5}z".to_string(), "\"a\\xc5z\"".to_string())]);
    }
}
