//! Query planning: parsing with `promql-parser` and the checks Prometheus
//! makes before evaluating.

use super::EngineError;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;

/// Parses `query`, mapping parser errors to [`EngineError::Parse`].
pub fn parse(query: &str) -> Result<Expr, EngineError> {
    promql_parser::parser::parse(query).map_err(EngineError::Parse)
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
        assert!(parse("sum(rate(x[5m]))").is_ok());
        assert!(matches!(parse("sum(("), Err(EngineError::Parse(_))));
        let m = parse("x[5m]").unwrap();
        assert!(check_range_query(&m).is_err());
        assert!(check_range_query(&parse("1 + 1").unwrap()).is_ok());
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
