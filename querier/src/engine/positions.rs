//! Query positions for annotations. `promql-parser` keeps no source spans,
//! so the `(line:column)` Prometheus appends to warnings and infos is found
//! in the query text: the n-th call (or aggregation) named `f` in a pre-order
//! walk of the AST is the n-th `f(` in the text, and its arguments are split
//! at top-level commas.

use promql_parser::parser::{AggregateExpr, Call, Expr};
use std::collections::HashMap;

/// Where calls and aggregations of one query start, by AST node address.
#[derive(Debug, Default)]
pub struct Positions {
    query: String,
    /// Node address → (name, occurrence of that name in pre-order).
    nodes: HashMap<usize, (String, usize)>,
}

impl Positions {
    /// Indexes the calls and aggregations of `expr`, parsed from `query`.
    pub fn new(query: &str, expr: &Expr) -> Self {
        let mut p = Positions { query: query.to_string(), nodes: HashMap::new() };
        let mut counts: HashMap<String, usize> = HashMap::new();
        p.walk(expr, &mut counts);
        p
    }

    fn walk(&mut self, e: &Expr, counts: &mut HashMap<String, usize>) {
        let mut note = |addr: usize, name: String, counts: &mut HashMap<String, usize>| {
            let n = counts.entry(name.clone()).or_default();
            self.nodes.insert(addr, (name, *n));
            *n += 1;
        };
        match e {
            Expr::Call(c) => {
                note(c as *const Call as usize, c.func.name.to_string(), counts);
                c.args.args.iter().for_each(|a| self.walk(a, counts));
            }
            Expr::Aggregate(a) => {
                note(a as *const AggregateExpr as usize, a.op.to_string(), counts);
                if let Some(p) = &a.param {
                    self.walk(p, counts);
                }
                self.walk(&a.expr, counts);
            }
            Expr::Unary(u) => self.walk(&u.expr, counts),
            Expr::Binary(b) => {
                self.walk(&b.lhs, counts);
                self.walk(&b.rhs, counts);
            }
            Expr::Paren(p) => self.walk(&p.expr, counts),
            Expr::Subquery(s) => self.walk(&s.expr, counts),
            _ => {}
        }
    }

    /// ` (line:col)` of argument `arg` of the node at `addr` (the node itself
    /// when `arg` is `None`); empty when it cannot be found.
    pub fn suffix(&self, addr: usize, arg: Option<usize>) -> String {
        let Some((name, n)) = self.nodes.get(&addr) else { return String::new() };
        let Some(call) = self.nth_call(name, *n) else { return String::new() };
        let off = match arg {
            None => Some(call),
            Some(i) => self.arg_offset(call + name.len(), i),
        };
        off.map_or_else(String::new, |o| {
            let before = &self.query[..o];
            let line = before.matches('\n').count() + 1;
            let col = o - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" ({line}:{col})")
        })
    }

    /// Byte offset of the `n`-th `name` followed by `(` (or a grouping clause), outside strings.
    fn nth_call(&self, name: &str, n: usize) -> Option<usize> {
        let b = self.query.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let (mut i, mut seen) = (0usize, 0usize);
        while i < b.len() {
            let c = b[i];
            if c == b'"' || c == b'\'' || c == b'`' {
                i = skip_string(b, i);
                continue;
            }
            let at_word = (i == 0 || !word(b[i - 1])) && self.query[i..].starts_with(name);
            let end = i + name.len();
            if at_word && b.get(end).is_none_or(|c| !word(*c)) {
                let rest = self.query[end..].trim_start();
                let lower = rest.to_ascii_lowercase();
                if rest.starts_with('(') || lower.starts_with("by") || lower.starts_with("without") {
                    if seen == n {
                        return Some(i);
                    }
                    seen += 1;
                }
                i = end;
                continue;
            }
            i += 1;
        }
        None
    }

    /// Offset of the first character of argument `arg` of the call whose name ends at `from`.
    fn arg_offset(&self, from: usize, arg: usize) -> Option<usize> {
        let b = self.query.as_bytes();
        let mut i = from;
        // Skip a `by (...)` / `without (...)` clause before the arguments.
        let rest = self.query[i..].trim_start();
        if !rest.starts_with('(') {
            i = self.query.len() - rest.len();
            i = close_paren(b, self.query[i..].find('(')? + i)? + 1;
        }
        i = self.query[i..].find('(')? + i + 1;
        let (mut depth, mut idx, mut start) = (0i32, 0usize, i);
        while i < b.len() {
            match b[i] {
                b'"' | b'\'' | b'`' => {
                    i = skip_string(b, i);
                    continue;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => break,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => {
                    if idx == arg {
                        break;
                    }
                    idx += 1;
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        if idx != arg {
            return None;
        }
        let ws = self.query[start..].len() - self.query[start..].trim_start().len();
        Some(start + ws)
    }
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    let q = b[i];
    i += 1;
    while i < b.len() && b[i] != q {
        i += if b[i] == b'\\' && q != b'`' { 2 } else { 1 };
    }
    i + 1
}

fn close_paren(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in b.iter().enumerate().skip(open) {
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_and_arguments() {
        let q = r#"sum(sort(x)) + histogram_quantile(0.8, series) + quantile by (a) (2, y)"#;
        let e = promql_parser::parser::parse(q).unwrap();
        let p = Positions::new(q, &e);
        let addr_of = |name: &str| p.nodes.iter().find(|(_, (n, _))| n == name).map(|(a, _)| *a).unwrap();
        assert_eq!(p.suffix(addr_of("sort"), None), " (1:5)");
        assert_eq!(p.nth_call("histogram_quantile", 0), Some(15));
        assert_eq!(p.arg_offset(15 + 18, 1), Some(39));
        assert_eq!(p.suffix(addr_of("quantile"), Some(0)), " (1:67)");
    }
}
