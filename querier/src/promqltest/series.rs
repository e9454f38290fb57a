//! Series descriptions of the test-script language: `name{l="v"} 1+2x3 _ stale`,
//! plus Prometheus durations (`1h30m`, `10s53ms`).

use aion_model::Labels;

/// One point of a series description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    /// No sample at this slot (`_`).
    Gap,
    /// A float sample.
    Float(f64),
    /// The staleness marker (`stale`).
    Stale,
    /// A native histogram sample (`{{...}}`), not interpreted.
    Histogram,
}

/// A parsed series description line.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDesc {
    /// The labels (metric name included as `__name__`).
    pub labels: Labels,
    /// One point per slot.
    pub points: Vec<Point>,
    /// The line gives start timestamps (`name{...}@st ...`), not values.
    pub start_timestamps: bool,
}

/// Parses a Prometheus duration such as `1h30m`, `10s53ms`, `0` or `-5m`, in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    if body.is_empty() {
        return Err(format!("empty duration {s:?}"));
    }
    if let Ok(secs) = body.parse::<f64>() {
        let ms = (secs * 1000.0).round() as i64;
        return Ok(if neg { -ms } else { ms });
    }
    let mut total: i64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("bad duration unit {u:?} in {s:?}")),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Ok(if neg { -total } else { total })
}

/// Parses a float as the test language writes it (`1`, `-2.5e3`, `Inf`, `NaN`, `0x1f`).
pub fn parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (sign, body) = match lower.as_bytes().first() {
        Some(b'+') => (1.0, &lower[1..]),
        Some(b'-') => (-1.0, &lower[1..]),
        _ => (1.0, lower.as_str()),
    };
    let v = match body {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        b if b.starts_with("0x") => i64::from_str_radix(&b[2..], 16).ok()? as f64,
        b if b.starts_with(|c: char| c.is_ascii_digit() || c == '.') => b.parse::<f64>().ok()?,
        _ => return None,
    };
    Some(sign * v)
}

/// Splits `s` into the label part and the values part, parsing the labels.
pub fn parse_labels_prefix(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let name_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    let name = &s[..name_end];
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".into(), name.into()));
    }
    let mut rest = &s[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (lname, r) = if rest.starts_with(['"', '\'', '`']) {
                read_quoted(rest)?
            } else {
                let e = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                if e == 0 {
                    return Err(format!("bad label set at {rest:?}"));
                }
                (rest[..e].to_string(), &rest[e..])
            };
            let r = r.trim_start();
            let Some(r) = r.strip_prefix('=') else {
                if lname.is_empty() {
                    return Err(format!("bad label set at {rest:?}"));
                }
                // A quoted bare name is the metric name (`{"foo.bar"}`).
                pairs.push(("__name__".into(), lname));
                rest = r;
                continue;
            };
            let (value, r) = read_quoted(r.trim_start())?;
            pairs.push((lname, value));
            rest = r;
        }
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Reads one quoted string (`"..."`, `'...'` or `` `...` ``) with Go-style escapes.
pub fn read_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let Some((_, q)) = chars.next() else { return Err("expected a quoted string".into()) };
    if !matches!(q, '"' | '\'' | '`') {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some((i, c)) = chars.next() {
        if c == q {
            flush_bytes(&mut bytes, &mut out);
            return Ok((out, &s[i + 1..]));
        }
        if c == '\\' && q != '`' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'x' => {
                    let h: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                    let b = u8::from_str_radix(&h, 16).map_err(|_| format!("bad \\x escape in {s:?}"))?;
                    bytes.push(b);
                    continue;
                }
                'u' => {
                    let h: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                    let c = u32::from_str_radix(&h, 16).ok().and_then(char::from_u32);
                    out.push(c.ok_or_else(|| format!("bad \\u escape in {s:?}"))?);
                }
                other => out.push(other),
            }
            continue;
        }
        flush_bytes(&mut bytes, &mut out);
        out.push(c);
    }
    Err(format!("unterminated string {s:?}"))
}

fn flush_bytes(bytes: &mut Vec<u8>, out: &mut String) {
    if !bytes.is_empty() {
        out.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
    }
}

/// Splits the values part into tokens, keeping `{{ ... }}` (with any `x3` suffix) whole.
fn value_tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut depth = 0i32;
        while i < b.len() && (depth > 0 || !b[i].is_ascii_whitespace()) {
            match b[i] {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        out.push(&s[start..i]);
    }
    out
}

/// Expands the values part of a series description into points.
pub fn parse_values(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for tok in value_tokens(s) {
        if tok.contains("{{") {
            let times = tok.rsplit_once("}}x").and_then(|(_, n)| n.parse::<usize>().ok());
            out.extend(std::iter::repeat_n(Point::Histogram, times.map_or(1, |n| n + 1)));
            continue;
        }
        let (head, times) = match tok.rsplit_once('x') {
            Some((h, n))
                if !h.is_empty() && n.parse::<usize>().is_ok() && !h.to_ascii_lowercase().starts_with("0x") =>
            {
                (h, Some(n.parse::<usize>().map_err(|e| e.to_string())?))
            }
            _ => (tok, None),
        };
        let single = |t: &str| -> Result<Point, String> {
            match t {
                "_" => Ok(Point::Gap),
                "stale" => Ok(Point::Stale),
                t => parse_float(t).map(Point::Float).ok_or_else(|| format!("bad value {t:?}")),
            }
        };
        let Some(n) = times else {
            out.push(single(head)?);
            continue;
        };
        // `a+bxn` / `a-bxn`: the sign splitting start from increment (not a leading sign or exponent).
        if let Some(pos) = split_increment(head) {
            let start = parse_float(&head[..pos]).ok_or_else(|| format!("bad value {head:?}"))?;
            let inc = parse_float(&head[pos..]).ok_or_else(|| format!("bad increment {head:?}"))?;
            let mut v = start;
            out.push(Point::Float(v));
            for _ in 0..n {
                v += inc;
                out.push(Point::Float(v));
            }
        } else {
            // `_xn` is n gaps; `vxn` is v repeated n+1 times (as `v+0xn`).
            let p = single(head)?;
            let count = if p == Point::Gap { n } else { n + 1 };
            out.extend(std::iter::repeat_n(p, count));
        }
    }
    Ok(out)
}

fn split_increment(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (1..b.len()).rev().find(|&i| (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E'))
}

/// Parses a whole series description line.
pub fn parse_series_desc(line: &str) -> Result<SeriesDesc, String> {
    let (labels, rest) = parse_labels_prefix(line)?;
    if rest.starts_with("@st") {
        // Start timestamps: kept only to recognise (and skip) the evals that need them.
        return Ok(SeriesDesc { labels, points: Vec::new(), start_timestamps: true });
    }
    Ok(SeriesDesc { labels, points: parse_values(rest)?, start_timestamps: false })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expands_series_notation() {
        let d = parse_series_desc(r#"foo{a="1", b='x\"y'} 1+2x3 _x2 stale -1-1x1 5x2"#).unwrap();
        assert_eq!(d.labels.get("__name__"), Some("foo"));
        assert_eq!(d.labels.get("b"), Some("x\"y"));
        use Point::*;
        assert_eq!(
            d.points,
            vec![
                Float(1.0),
                Float(3.0),
                Float(5.0),
                Float(7.0),
                Gap,
                Gap,
                Stale,
                Float(-1.0),
                Float(-2.0),
                Float(5.0),
                Float(5.0),
                Float(5.0)
            ]
        );
    }

    #[test]
    fn histograms_and_durations() {
        let d = parse_series_desc("h {{schema:0 sum:1 count:1}}x2 {{count:1}}").unwrap();
        assert_eq!(d.points.len(), 4);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("10s53ms").unwrap(), 10_053);
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        assert!(parse_duration_ms("5q").is_err());
    }
}
