//! Duration expressions (Prometheus 3 `promql-duration-expr`): arithmetic in
//! range brackets (`x[2m*15]`, `[29s+1s:5s+5s]`) and after `offset`
//! (`offset (20*8000ms)`, `offset -step()`), with `step()`, `range()`,
//! `min_of()` and `max_of()`. `promql-parser` does not parse them, so they
//! are evaluated here and replaced by literal millisecond durations.

/// What `step()` and `range()` mean for this query, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct DurationContext {
    /// The query step (0 for instant queries).
    pub step_ms: i64,
    /// `end - start` of the query (0 for instant queries).
    pub range_ms: i64,
}

/// Rewrites duration expressions in `query` into literals; `None` when there are none.
pub fn rewrite(query: &str, ctx: DurationContext) -> Option<String> {
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let (mut i, mut last, mut braces, mut changed) = (0usize, 0usize, 0i32, false);
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
            b'{' => {
                braces += 1;
                i += 1;
            }
            b'}' => {
                braces -= 1;
                i += 1;
            }
            b'[' if braces == 0 => {
                let close = query[i..].find(']').map(|j| i + j)?;
                let inner = &query[i + 1..close];
                let parts: Vec<&str> = inner.splitn(2, ':').collect();
                let mut lits = Vec::new();
                for p in &parts {
                    lits.push(if p.trim().is_empty() || is_literal(p.trim()) {
                        p.trim().to_string()
                    } else {
                        literal(p, ctx)?
                    });
                }
                let new = lits.join(":");
                if new != inner {
                    out.push_str(&query[last..=i]);
                    out.push_str(&new);
                    last = close;
                    changed = true;
                }
                i = close + 1;
            }
            c if braces == 0 && (c == b'o' || c == b'O') && is_keyword(query, i, "offset") => {
                let start = i + 6;
                let Some(end) = offset_atom_end(b, start) else {
                    i = start;
                    continue;
                };
                let atom = query[start..end].trim();
                if !is_literal(atom.trim_start_matches('-')) {
                    let lit = literal(atom, ctx)?;
                    if lit == "0ms" {
                        // A zero offset is no offset (the parser rejects `offset 0ms`).
                        out.push_str(&query[last..i]);
                    } else {
                        out.push_str(&query[last..start]);
                        out.push(' ');
                        out.push_str(&lit);
                    }
                    last = end;
                    changed = true;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[last..]);
    changed.then_some(out)
}

fn skip_string(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() && b[i] != q {
        i += if b[i] == b'\\' && q != b'`' { 2 } else { 1 };
    }
    i + 1
}

fn is_keyword(q: &str, i: usize, kw: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    q.len() >= i + kw.len()
        && q[i..i + kw.len()].eq_ignore_ascii_case(kw)
        && (i == 0 || !word(q.as_bytes()[i - 1]))
        && q.as_bytes().get(i + kw.len()).is_none_or(|c| !word(*c))
}

/// A plain Prometheus duration (`5m`, `1h30m`, `500ms`).
fn is_literal(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let d = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if d == 0 {
            return false;
        }
        rest = &rest[d..];
        let u = ["ms", "s", "m", "h", "d", "w", "y"].iter().find(|u| rest.starts_with(**u));
        match u {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// End of the atom after `offset`: a signed number/duration, a parenthesised
/// expression or a duration function call.
fn offset_atom_end(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    while i < b.len() && (b[i] == b'-' || b[i] == b'+' || b[i].is_ascii_whitespace()) {
        i += 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && b[i] == b'(' {
        let mut depth = 0;
        while i < b.len() {
            depth += match b[i] {
                b'(' => 1,
                b')' => -1,
                _ => 0,
            };
            i += 1;
            if depth == 0 {
                return Some(i);
            }
        }
        return None;
    }
    (i > start).then_some(i)
}

fn literal(expr: &str, ctx: DurationContext) -> Option<String> {
    let toks = tokenize(expr)?;
    let mut p = Parser { toks, pos: 0, ctx };
    let secs = p.sum()?;
    if p.pos != p.toks.len() || !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round() as i64;
    Some(if ms < 0 { format!("-{}ms", -ms) } else { format!("{ms}ms") })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Op(u8),
    Ident(String),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let c = rest.as_bytes()[0];
        if b"+-*/%^(),".contains(&c) {
            out.push(Tok::Op(c));
            rest = &rest[1..];
        } else if c.is_ascii_digit() || c == b'.' {
            let e = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.')).unwrap_or(rest.len());
            let tok = &rest[..e];
            let secs = match tok.parse::<f64>() {
                Ok(v) => v,
                Err(_) if is_literal(tok) => crate::promqltest::series::parse_duration_ms(tok).ok()? as f64 / 1000.0,
                Err(_) => return None,
            };
            out.push(Tok::Num(secs));
            rest = &rest[e..];
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let e = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(rest.len());
            out.push(Tok::Ident(rest[..e].to_ascii_lowercase()));
            rest = &rest[e..];
        } else {
            return None;
        }
        rest = rest.trim_start();
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    ctx: DurationContext,
}

impl Parser {
    fn peek_op(&self) -> Option<u8> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(c)) => Some(*c),
            _ => None,
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek_op()? == c).then(|| self.pos += 1)
    }

    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        while let Some(c @ (b'+' | b'-')) = self.peek_op() {
            self.pos += 1;
            let r = self.product()?;
            v = if c == b'+' { v + r } else { v - r };
        }
        Some(v)
    }

    fn product(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        while let Some(c @ (b'*' | b'/' | b'%')) = self.peek_op() {
            self.pos += 1;
            let r = self.unary()?;
            v = match c {
                b'*' => v * r,
                b'/' => v / r,
                _ => v % r,
            };
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<f64> {
        match self.peek_op() {
            Some(b'-') => {
                self.pos += 1;
                Some(-self.unary()?)
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.peek_op() == Some(b'^') {
            self.pos += 1;
            return Some(base.powf(self.unary()?));
        }
        Some(base)
    }

    fn atom(&mut self) -> Option<f64> {
        let tok = self.toks.get(self.pos)?.clone();
        self.pos += 1;
        match tok {
            Tok::Num(v) => Some(v),
            Tok::Op(b'(') => {
                let v = self.sum()?;
                self.expect(b')')?;
                Some(v)
            }
            Tok::Ident(name) => {
                self.expect(b'(')?;
                let v = match name.as_str() {
                    "step" => self.ctx.step_ms as f64 / 1000.0,
                    "range" => self.ctx.range_ms as f64 / 1000.0,
                    "min_of" | "max_of" => {
                        let mut v = self.sum()?;
                        while self.expect(b',').is_some() {
                            let o = self.sum()?;
                            v = if name == "min_of" { v.min(o) } else { v.max(o) };
                        }
                        v
                    }
                    _ => return None,
                };
                self.expect(b')')?;
                Some(v)
            }
            Tok::Op(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CTX: DurationContext = DurationContext { step_ms: 5000, range_ms: 60_000 };

    #[test]
    fn rewrites_brackets_and_offsets() {
        assert_eq!(rewrite("changes(x[2m*(10+5)])", CTX).unwrap(), "changes(x[1800000ms])");
        assert_eq!(rewrite("x[29s+1s:5s+5s]", CTX).unwrap(), "x[30000ms:10000ms]");
        assert_eq!(rewrite("x offset -step()*2", CTX).unwrap(), "x offset -5000ms*2");
        assert_eq!(rewrite("x offset min_of(step(), 1s)+8000", CTX).unwrap(), "x offset 1000ms+8000");
        assert_eq!(rewrite(r#"x{a="[1+1]"}[5m] offset 1m"#, CTX), None);
        assert_eq!(rewrite("x[1h30m % 1h]", CTX).unwrap(), "x[1800000ms]");
        assert_eq!(rewrite("x offset step()*0", CTX).unwrap(), "x offset 5000ms*0");
        assert_eq!(rewrite("x offset (step()*0)", CTX).unwrap(), "x ");
    }
}
