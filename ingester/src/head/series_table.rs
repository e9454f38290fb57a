//! The head's series by ref. Refs are dense (1, 2, 3, ... in creation order,
//! never freed), so series live in a vector indexed by ref: a look-up is one
//! memory access instead of a hash-table probe (control bytes, then the
//! slot), which on the append path is a cache miss per sample. A ref far past
//! the end (only possible from a damaged or foreign series CF) goes to a
//! side map instead of growing the vector to match.

use super::{MemSeries, U64Map};

/// Largest jump past the end of the dense vector a new ref may make.
const MAX_DENSE_GAP: u64 = 1 << 16;

/// Series by ref: a dense vector plus a map for outlying refs.
#[derive(Default)]
pub(crate) struct SeriesTable {
    dense: Vec<Option<MemSeries>>,
    sparse: U64Map<MemSeries>,
    len: usize,
}

impl SeriesTable {
    /// Number of series.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The series with ref `r`.
    pub(crate) fn get(&self, r: &u64) -> Option<&MemSeries> {
        match usize::try_from(*r).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => slot.as_ref(),
            None if self.sparse.is_empty() => None,
            None => self.sparse.get(r),
        }
    }

    /// The series with ref `r`, mutably.
    pub(crate) fn get_mut(&mut self, r: &u64) -> Option<&mut MemSeries> {
        match usize::try_from(*r).ok().and_then(|i| self.dense.get_mut(i)) {
            Some(slot) => slot.as_mut(),
            None => self.sparse.get_mut(r),
        }
    }

    /// True when series `r` exists.
    pub(crate) fn contains_key(&self, r: &u64) -> bool {
        self.get(r).is_some()
    }

    /// Inserts (or replaces) series `r`.
    pub(crate) fn insert(&mut self, r: u64, s: MemSeries) {
        let dense_end = self.dense.len() as u64;
        let old = if r < dense_end {
            self.dense[r as usize].replace(s)
        } else if r - dense_end <= MAX_DENSE_GAP && self.sparse.is_empty() {
            self.dense.resize_with(r as usize, || None);
            self.dense.push(Some(s));
            None
        } else {
            self.sparse.insert(r, s)
        };
        if old.is_none() {
            self.len += 1;
        }
    }

    /// Every series with its ref (dense ones in ref order, then the others).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &MemSeries)> + '_ {
        let dense = self.dense.iter().enumerate();
        dense
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u64, s)))
            .chain(self.sparse.iter().map(|(r, s)| (*r, s)))
    }

    /// Every series, mutably.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut MemSeries> + '_ {
        self.dense.iter_mut().flatten().chain(self.sparse.values_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadState;
    use crate::series::PackedLabels;
    use aion_model::labels::Labels;

    fn series(name: &str) -> MemSeries {
        MemSeries {
            tenant: "t".into(),
            labels: PackedLabels::new(&Labels::from_pairs([("__name__", name)])),
            state: HeadState::default(),
        }
    }

    #[test]
    fn dense_and_outlying_refs() {
        let mut t = SeriesTable::default();
        t.insert(1, series("a"));
        t.insert(3, series("c"));
        t.insert(u64::MAX, series("far"));
        t.insert(1, series("a2"));
        assert_eq!(t.len(), 3);
        assert!(t.contains_key(&1) && t.contains_key(&3) && t.contains_key(&u64::MAX));
        assert!(!t.contains_key(&2) && !t.contains_key(&0) && !t.contains_key(&4));
        assert!(t.get_mut(&u64::MAX).is_some());
        t.insert(4, series("d")); // after an outlier: goes to the side map, still found
        let refs: Vec<u64> = t.iter().map(|(r, _)| r).collect();
        assert_eq!(refs.len(), 4);
        assert!(refs.starts_with(&[1, 3]) && refs.contains(&4) && refs.contains(&u64::MAX));
        assert_eq!(t.values_mut().count(), 4);
        assert_eq!(t.get(&1).map(|s| s.labels.clone()), Some(PackedLabels::new(&Labels::from_pairs([("__name__", "a2")]))));
    }
}
