//! Orderings for `sort`, `sort_desc`, `sort_by_label` and
//! `sort_by_label_desc`. The caller sorts its output vector with these.

use aion_model::Labels;
use std::cmp::Ordering;

/// `sort`: ascending by value, NaN after every number.
pub fn sort_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `sort_desc`: descending by value, NaN still after every number.
pub fn sort_desc_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => sort_cmp(a, b),
    }
}

/// `sort_by_label(v, names...)` (or `_desc` when `descending`): compares the
/// values of `names` in turn with [`natural_cmp`] (absent labels as empty
/// strings); when all are equal, the whole label sets decide, so the order
/// is total and deterministic.
pub fn compare_by_labels(a: &Labels, b: &Labels, names: &[String], descending: bool) -> Ordering {
    let (a, b) = if descending { (b, a) } else { (a, b) };
    for name in names {
        let (va, vb) = (a.get(name).unwrap_or(""), b.get(name).unwrap_or(""));
        if va != vb {
            return natural_cmp(va, vb);
        }
    }
    a.cmp(b)
}

/// Natural ("human") string order: runs of ASCII digits compare as numbers,
/// other runs as strings, so `2 < 10`, `4m5 < 4m600 < 4m1000` and
/// `1.2.3 < 1.11.3 < 1.111.3`. Digit runs too long for `i64` compare as text.
/// When every run compares equal, fewer runs sort first, then plain byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut ca, mut cb) = (Chunks(a), Chunks(b));
    loop {
        match (ca.next(), cb.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<i64>(), y.parse::<i64>()) {
                    (Ok(nx), Ok(ny)) if is_digits(x) && is_digits(y) => nx.cmp(&ny),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn is_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits a string into alternating runs of ASCII digits and non-digits.
struct Chunks<'a>(&'a str);

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let first = self.0.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = self.0.find(|c: char| c.is_ascii_digit() != digit).unwrap_or(self.0.len());
        let (chunk, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(values: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    #[test]
    fn natural_order_matches_functions_test() {
        let cpus = ["100", "3", "21", "0", "12", "1", "20", "2", "11", "10"];
        assert_eq!(sorted(&cpus), ["0", "1", "2", "3", "10", "11", "12", "20", "21", "100"]);
        assert_eq!(sorted(&["4m1000", "4m600", "4m5"]), ["4m5", "4m600", "4m1000"]);
        assert_eq!(sorted(&["1.111.3", "1.11.3", "1.2.3"]), ["1.2.3", "1.11.3", "1.111.3"]);
        assert_eq!(sorted(&["b", "a10", "a9", "", "a"]), ["", "a", "a9", "a10", "b"]);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        assert_eq!(natural_cmp("99999999999999999999", "100000000000000000000"), Ordering::Greater);
    }

    #[test]
    fn by_labels_breaks_ties_on_full_label_set() {
        let l = |g: &str, i: &str, j: &str| Labels::from_pairs([("group", g), ("instance", i), ("job", j)]);
        let mut v = vec![
            l("production", "1", "api-server"),
            l("canary", "0", "app-server"),
            l("production", "0", "api-server"),
            l("canary", "0", "api-server"),
        ];
        let names = vec!["instance".to_string()];
        v.sort_by(|a, b| compare_by_labels(a, b, &names, false));
        assert_eq!(
            v,
            [
                l("canary", "0", "api-server"),
                l("canary", "0", "app-server"),
                l("production", "0", "api-server"),
                l("production", "1", "api-server"),
            ]
        );
        v.sort_by(|a, b| compare_by_labels(a, b, &names, true));
        assert_eq!(v[0], l("production", "1", "api-server"));
        assert_eq!(v[3], l("canary", "0", "api-server"));
    }

    #[test]
    fn value_sorts_put_nan_last() {
        let mut v = [300.0, f64::NAN, 100.0, 200.0];
        v.sort_by(|a, b| sort_cmp(*a, *b));
        assert_eq!(&v[..3], &[100.0, 200.0, 300.0]);
        assert!(v[3].is_nan());
        v.sort_by(|a, b| sort_desc_cmp(*a, *b));
        assert_eq!(&v[..3], &[300.0, 200.0, 100.0]);
        assert!(v[3].is_nan());
    }
}
