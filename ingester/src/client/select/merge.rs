//! Merging the per-shard answers of a fan-out read into one result.
//!
//! Each shard returns its series sorted by labels. After a topology change
//! (a series re-homed to another shard) the same label set can come back
//! from two shards: its samples are merged by timestamp, identical samples
//! kept once, and on a timestamp clash the first shard's sample (lowest
//! shard id) wins, so the answer is deterministic.

use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::Series;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// Merges series from many shards (given in shard order) into one list
/// sorted by labels, one entry per label set.
pub fn merge_series(parts: Vec<Vec<Series>>) -> Vec<Series> {
    if parts.len() == 1 {
        if let Some(only) = parts.into_iter().next() {
            return sorted_unique(only);
        }
        return Vec::new();
    }
    let mut by_labels: BTreeMap<Labels, (Vec<Sample>, bool)> = BTreeMap::new();
    for s in parts.into_iter().flatten() {
        match by_labels.entry(s.labels) {
            Entry::Vacant(v) => {
                v.insert((s.samples, false));
            }
            Entry::Occupied(mut o) => {
                let (samples, merged) = o.get_mut();
                samples.extend(s.samples);
                *merged = true;
            }
        }
    }
    by_labels
        .into_iter()
        .map(|(labels, (mut samples, merged))| {
            if merged {
                dedup_by_time(&mut samples);
            }
            Series { labels, samples }
        })
        .collect()
}

/// One shard's answer is already one entry per label set; make sure it is sorted.
fn sorted_unique(mut series: Vec<Series>) -> Vec<Series> {
    if !series.windows(2).all(|w| w[0].labels < w[1].labels) {
        return merge_series(vec![series, Vec::new()]);
    }
    series.shrink_to_fit();
    series
}

/// Sorts by timestamp (stable: earlier shards first) and keeps the first sample per timestamp.
fn dedup_by_time(samples: &mut Vec<Sample>) {
    samples.sort_by_key(|s| s.t);
    samples.dedup_by_key(|s| s.t);
}

/// The sorted union of string lists (label names or values).
pub fn union_sorted(parts: Vec<Vec<String>>) -> Vec<String> {
    let all: BTreeSet<String> = parts.into_iter().flatten().collect();
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::storage::{merge_selected, SelectedSeries};

    fn s(job: &str, pts: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", "m"), ("job", job)]),
            samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn same_series_on_two_shards_merges_and_dedups() {
        let shard0 = vec![s("a", &[(1, 1.0), (3, 3.0)]), s("c", &[(1, 9.0)])];
        let shard1 = vec![s("a", &[(2, 2.0), (3, 3.0), (4, 4.0)]), s("b", &[(5, 5.0)])];
        let out = merge_series(vec![shard0, shard1]);
        let jobs: Vec<_> = out.iter().map(|x| x.labels.get("job").unwrap_or_default().to_string()).collect();
        assert_eq!(jobs, ["a", "b", "c"]);
        let ts: Vec<i64> = out[0].samples.iter().map(|x| x.t).collect();
        assert_eq!(ts, [1, 2, 3, 4], "identical sample at t=3 kept once");
    }

    #[test]
    fn timestamp_clash_keeps_the_lower_shard() {
        let out = merge_series(vec![vec![s("a", &[(1, 1.0)])], vec![s("a", &[(1, 7.0)])]]);
        assert_eq!(out[0].samples, vec![Sample::new(1, 1.0)]);
    }

    #[test]
    fn single_shard_passes_through_and_unsorted_input_is_fixed() {
        let one = vec![s("a", &[(1, 1.0)]), s("b", &[(1, 1.0)])];
        assert_eq!(merge_series(vec![one.clone()]), one);
        let unsorted = vec![s("b", &[(1, 1.0)]), s("a", &[(1, 1.0)])];
        assert_eq!(merge_series(vec![unsorted]), one);
        assert!(merge_series(vec![]).is_empty());
    }

    fn enc(job: &str, ts: &[i64], lo: i64, hi: i64) -> SelectedSeries {
        let mut c = aion_model::chunk::XorChunk::new();
        for &t in ts {
            c.append(t, t as f64);
        }
        let mut cs = aion_model::chunk::ChunkSeries::new(Labels::from_pairs([("__name__", "m"), ("job", job)]), lo, hi);
        cs.push_chunk(c.bytes());
        SelectedSeries::Encoded(cs)
    }

    #[test]
    fn selected_parts_stay_encoded_unless_two_shards_share_a_series() {
        let shard0 = vec![enc("a", &[1, 3, 9], 0, 5), enc("c", &[1], 0, 5)];
        let shard1 = vec![enc("a", &[2, 3, 4], 0, 5), enc("b", &[5, 6], 0, 5)];
        let out = merge_selected(vec![shard0, shard1]).unwrap();
        let jobs: Vec<_> = out.iter().map(|x| x.labels().get("job").unwrap_or_default().to_string()).collect();
        assert_eq!(jobs, ["a", "b", "c"]);
        assert!(matches!(out[1], SelectedSeries::Encoded(_)) && matches!(out[2], SelectedSeries::Encoded(_)));
        let SelectedSeries::Decoded(a) = &out[0] else { panic!("duplicate label set must be merged: {:?}", out[0]) };
        let ts: Vec<i64> = a.samples.iter().map(|x| x.t).collect();
        assert_eq!(ts, [1, 2, 3, 4], "clipped to the range, t=3 kept once, t=9 outside");
        let b = out[1].clone().into_series().unwrap();
        assert_eq!(b.samples, vec![Sample::new(5, 5.0)], "decoding clips to the wanted range");
        // Same outcome as the decoded merge.
        let decoded = |p: Vec<SelectedSeries>| p.into_iter().map(|s| s.into_series().unwrap()).collect::<Vec<_>>();
        let want = merge_series(vec![
            decoded(vec![enc("a", &[1, 3, 9], 0, 5), enc("c", &[1], 0, 5)]),
            decoded(vec![enc("a", &[2, 3, 4], 0, 5), enc("b", &[5, 6], 0, 5)]),
        ]);
        assert_eq!(decoded(out), want);
        assert!(merge_selected(vec![]).unwrap().is_empty());
    }

    #[test]
    fn string_union_is_sorted_and_distinct() {
        let out = union_sorted(vec![vec!["b".into(), "a".into()], vec!["a".into(), "c".into()]]);
        assert_eq!(out, ["a", "b", "c"]);
    }
}
