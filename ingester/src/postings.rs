//! The inverted index of one tenant: label name -> value -> sorted series refs,
//! and matcher evaluation over it with Prometheus semantics (a missing label
//! matches as the empty string).

use crate::head::U64Map;
use crate::series::Interner;
use aion_model::labels::Labels;
use aion_model::matcher::{MatchOp, Matcher};
use std::collections::HashMap;
use std::sync::Arc;

/// Per-tenant index: postings, the list of all series, and the labels-hash lookup.
#[derive(Debug, Default)]
pub(crate) struct TenantIndex {
    /// name -> value -> sorted refs.
    pub postings: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u64>>>,
    /// Every series ref of the tenant, sorted.
    pub all: Vec<u64>,
    /// labels hash -> the first series with that hash (collisions compared by labels).
    by_hash: U64Map<u64>,
    /// labels hash -> further series with that hash (xxh3-64 collisions; almost always empty).
    by_hash_more: U64Map<Vec<u64>>,
}

/// Inserts `r` into the sorted list `v` (appending in the common case).
fn insert_sorted(v: &mut Vec<u64>, r: u64) {
    match v.last() {
        None => v.push(r),
        Some(&last) if last < r => v.push(r),
        _ => {
            if let Err(i) = v.binary_search(&r) {
                v.insert(i, r);
            }
        }
    }
}

impl TenantIndex {
    /// Adds series `r` with its hash to `all` and the hash index (not the postings).
    pub(crate) fn add_series(&mut self, r: u64, hash: u64) {
        insert_sorted(&mut self.all, r);
        match self.by_hash.get(&hash) {
            None => {
                self.by_hash.insert(hash, r);
            }
            Some(&first) if first == r => {}
            Some(_) => {
                let more = self.by_hash_more.entry(hash).or_default();
                if !more.contains(&r) {
                    more.push(r);
                }
            }
        }
    }

    /// The first series whose labels hash is `hash` (a candidate to compare by labels).
    pub(crate) fn first_with_hash(&self, hash: u64) -> Option<u64> {
        self.by_hash.get(&hash).copied()
    }

    /// Every series whose labels hash is `hash` (candidates to compare by labels).
    pub(crate) fn refs_with_hash(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let more = if self.by_hash_more.is_empty() {
            None
        } else {
            self.by_hash_more.get(&hash)
        };
        self.by_hash
            .get(&hash)
            .copied()
            .into_iter()
            .chain(more.into_iter().flatten().copied())
    }

    /// Adds `r` to the postings of `name="value"`.
    pub(crate) fn add_posting(&mut self, name: Arc<str>, value: Arc<str>, r: u64) {
        insert_sorted(
            self.postings
                .entry(name)
                .or_default()
                .entry(value)
                .or_default(),
            r,
        );
    }

    /// Adds `r` to the postings of each of its labels.
    /// Names and values are interned in `interner` (shared by all tenants).
    pub(crate) fn add_postings(&mut self, interner: &mut Interner, labels: &Labels, r: u64) {
        for l in labels {
            self.add_posting(interner.intern(&l.name), interner.intern(&l.value), r);
        }
    }

    /// Sorted refs of the series matching every matcher.
    ///
    /// Matchers that do not match the empty string are answered from
    /// postings and intersected (smallest first). Matchers that do match it
    /// (`foo=""`, `foo!="x"`, `foo!~"a.*"`, ...) also select series lacking the
    /// label: with some restricting matcher they filter its result through
    /// `series_matches(ref, matcher)`; alone, they subtract the postings of the
    /// values they reject from the tenant's full series list.
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        series_matches: impl Fn(u64, &Matcher) -> bool,
    ) -> Vec<u64> {
        let (empty_matching, restricting): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| m.matches_empty());
        let mut positive: Vec<Vec<u64>> =
            restricting.iter().map(|m| self.postings_for(m)).collect();
        positive.sort_by_key(Vec::len);
        let mut it = positive.into_iter();
        let Some(first) = it.next() else {
            let mut out = self.all.clone();
            for m in empty_matching {
                if out.is_empty() {
                    break;
                }
                let values = self.postings.get(m.name.as_str());
                let rejected = union(
                    values
                        .into_iter()
                        .flatten()
                        .filter(|(v, _)| !m.matches(v))
                        .map(|(_, r)| r),
                );
                out = subtract(&out, &rejected);
            }
            return out;
        };
        let mut out = it.fold(first, |acc, p| intersect(&acc, &p));
        out.retain(|&r| empty_matching.iter().all(|m| series_matches(r, m)));
        out
    }

    /// An upper bound of how many series [`TenantIndex::select`] returns
    /// for `matchers`, without selecting: the shortest postings list of an
    /// equality matcher on a non-empty value (`None` when there is none).
    pub(crate) fn select_bound(&self, matchers: &[Matcher]) -> Option<usize> {
        matchers
            .iter()
            .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
            .map(|m| {
                let values = self.postings.get(m.name.as_str());
                values.and_then(|vs| vs.get(m.value.as_str())).map_or(0, Vec::len)
            })
            .min()
    }

    /// Sorted refs having label `m.name` with a value `m` accepts.
    fn postings_for(&self, m: &Matcher) -> Vec<u64> {
        let values = self.postings.get(m.name.as_str());
        if m.op == MatchOp::Equal {
            return values
                .and_then(|vs| vs.get(m.value.as_str()))
                .cloned()
                .unwrap_or_default();
        }
        union(
            values
                .into_iter()
                .flatten()
                .filter(|(v, _)| m.matches(v))
                .map(|(_, r)| r),
        )
    }
}

/// Sorted, deduplicated union of sorted lists.
fn union<'a>(lists: impl Iterator<Item = &'a Vec<u64>>) -> Vec<u64> {
    let mut lists: Vec<&Vec<u64>> = lists.collect();
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().cloned().unwrap_or_default(),
        _ => {
            let mut out: Vec<u64> = lists.into_iter().flatten().copied().collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Intersection of two sorted lists.
pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.len() * 16 < large.len() {
        return small
            .iter()
            .copied()
            .filter(|r| large.binary_search(r).is_ok())
            .collect();
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(small.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Elements of sorted `a` not in sorted `b`.
fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Interner;
    use aion_model::labels::Labels;

    fn index() -> (TenantIndex, HashMap<u64, Labels>) {
        let mut i = Interner::default();
        let mut idx = TenantIndex::default();
        let mut by_ref = HashMap::new();
        let series = [
            (1, vec![("__name__", "up"), ("job", "api"), ("env", "prod")]),
            (2, vec![("__name__", "up"), ("job", "db")]),
            (3, vec![("__name__", "up"), ("job", "api"), ("env", "dev")]),
            (4, vec![("__name__", "down")]),
        ];
        for (r, pairs) in series {
            let labels = Labels::from_pairs(pairs);
            idx.add_series(r, r);
            idx.add_postings(&mut i, &labels, r);
            by_ref.insert(r, labels);
        }
        (idx, by_ref)
    }

    fn select(ms: &[Matcher]) -> Vec<u64> {
        let (idx, by_ref) = index();
        idx.select(ms, |r, m| m.matches_labels(&by_ref[&r]))
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn hash_index_keeps_every_series_of_a_colliding_hash() {
        let mut idx = TenantIndex::default();
        idx.add_series(1, 77);
        idx.add_series(1, 77);
        assert_eq!(idx.refs_with_hash(77).collect::<Vec<_>>(), vec![1]);
        idx.add_series(5, 77);
        idx.add_series(9, 77);
        idx.add_series(5, 77);
        idx.add_series(2, 78);
        assert_eq!(idx.refs_with_hash(77).collect::<Vec<_>>(), vec![1, 5, 9]);
        assert_eq!(idx.refs_with_hash(78).collect::<Vec<_>>(), vec![2]);
        assert_eq!(idx.refs_with_hash(79).count(), 0);
        assert_eq!((idx.first_with_hash(77), idx.first_with_hash(79)), (Some(1), None));
        assert_eq!(idx.all, vec![1, 2, 5, 9]);
    }

    #[test]
    fn all_four_matcher_types() {
        assert_eq!(select(&[m(MatchOp::Equal, "job", "api")]), vec![1, 3]);
        assert_eq!(select(&[m(MatchOp::NotEqual, "job", "api")]), vec![2, 4]);
        assert_eq!(select(&[m(MatchOp::Regex, "job", "a.*|d.")]), vec![1, 2, 3]);
        assert_eq!(select(&[m(MatchOp::NotRegex, "job", "a.*")]), vec![2, 4]);
        assert_eq!(
            select(&[
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::NotEqual, "env", "prod")
            ]),
            vec![2, 3]
        );
        assert_eq!(select(&[]), vec![1, 2, 3, 4]);
        assert!(select(&[m(MatchOp::Equal, "nope", "x")]).is_empty());
    }

    #[test]
    fn select_bound_is_the_shortest_equality_postings_and_bounds_the_select() {
        let (idx, _) = index();
        let up = || m(MatchOp::Equal, "__name__", "up");
        let cases: Vec<(Vec<Matcher>, Option<usize>)> = vec![
            (vec![up()], Some(3)),
            (vec![up(), m(MatchOp::Equal, "job", "api")], Some(2)),
            (vec![m(MatchOp::Equal, "job", "api"), m(MatchOp::Equal, "env", "dev")], Some(1)),
            (vec![m(MatchOp::Equal, "job", "nope"), m(MatchOp::Regex, "env", ".+")], Some(0)),
            (vec![m(MatchOp::Equal, "nope", "x")], Some(0)),
            // Nothing an equality on a value bounds: unknown.
            (vec![m(MatchOp::Regex, "job", "api")], None),
            (vec![m(MatchOp::Equal, "env", ""), m(MatchOp::NotEqual, "job", "db")], None),
            (vec![], None),
        ];
        for (ms, want) in cases {
            assert_eq!(idx.select_bound(&ms), want, "{ms:?}");
            if let Some(bound) = want {
                assert!(select(&ms).len() <= bound, "{ms:?}");
            }
        }
    }

    #[test]
    fn matchers_matching_empty_select_series_without_the_label() {
        assert_eq!(select(&[m(MatchOp::Equal, "env", "")]), vec![2, 4]);
        assert_eq!(select(&[m(MatchOp::NotRegex, "env", ".+")]), vec![2, 4]);
        assert_eq!(select(&[m(MatchOp::Regex, "env", "prod|")]), vec![1, 2, 4]);
        assert_eq!(select(&[m(MatchOp::NotEqual, "env", "")]), vec![1, 3]);
        assert_eq!(select(&[m(MatchOp::Regex, "env", ".+")]), vec![1, 3]);
        assert_eq!(select(&[m(MatchOp::Regex, "nope", ".*")]), vec![1, 2, 3, 4]);
        // With a restricting matcher, empty-matching ones filter its result.
        assert_eq!(
            select(&[
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::Equal, "env", "")
            ]),
            vec![2]
        );
        assert_eq!(
            select(&[
                m(MatchOp::Regex, "job", ".+"),
                m(MatchOp::NotRegex, "env", "p.*")
            ]),
            vec![2, 3]
        );
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        let big: Vec<u64> = (0..1000).collect();
        assert_eq!(intersect(&[5, 2000], &big), vec![5]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[2, 4, 9]), vec![1, 3]);
        assert_eq!(union([vec![1, 3], vec![2, 3]].iter()), vec![1, 2, 3]);
    }
}
