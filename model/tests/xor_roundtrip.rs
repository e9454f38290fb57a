//! Property tests of the XOR chunk codec: exact round trips for any timestamps
//! and any float bit patterns, and no panics or endless loops on any bytes.

use aion_model::chunk::{decode_chunks_range_into, XorChunk, XorIter};
use aion_model::sample::{Sample, STALE_NAN_BITS};
use aion_model::ModelError;
use proptest::prelude::*;

/// Float bit patterns, weighted towards the ones that stress the codec.
fn value_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        1 => prop::sample::select(vec![
            STALE_NAN_BITS,
            f64::NAN.to_bits(),
            0xfff8_0000_0000_0000,
            0x7ff0_0000_0000_0001,
            0x7fff_ffff_ffff_ffff,
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            (-0.0f64).to_bits(),
            0,
            1,
            u64::MAX,
        ]),
        2 => (0u32..5_000).prop_map(|i| f64::from(i).to_bits()),
        1 => (any::<f64>(), -3i32..4).prop_map(|(x, e)| (x * 2f64.powi(e)).to_bits()),
    ]
}

/// Values where runs repeat or step slightly, as real series do.
fn value_series(max: usize) -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec((value_bits(), 0u8..4), 0..max).prop_map(|items| {
        let mut out: Vec<u64> = Vec::with_capacity(items.len());
        for (bits, how) in items {
            let v = match (how, out.last()) {
                (0, Some(&prev)) => prev,
                (1, Some(&prev)) => prev ^ (bits & 0xff),
                _ => bits,
            };
            out.push(v);
        }
        out
    })
}

/// Strictly increasing timestamps: anywhere in i64, or scrape-like.
fn increasing_ts(max: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        prop::collection::btree_set(any::<i64>(), 0..max)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        (
            any::<i64>(),
            prop::collection::vec(
                prop_oneof![1i64..20, 14_990i64..15_010, 1i64..i64::MAX / 1024],
                0..max
            )
        )
            .prop_map(|(start, deltas)| {
                let mut t = start;
                let mut out = vec![t];
                for d in deltas {
                    match t.checked_add(d) {
                        Some(n) => t = n,
                        None => break,
                    }
                    out.push(t);
                }
                out
            }),
    ]
}

fn encode(ts: &[i64], vs: &[u64]) -> XorChunk {
    let mut c = XorChunk::new();
    for (&t, &v) in ts.iter().zip(vs) {
        c.append(t, f64::from_bits(v));
    }
    c
}

fn check_round_trip(ts: &[i64], vs: &[u64]) -> Result<(), TestCaseError> {
    let n = ts.len().min(vs.len());
    let c = encode(ts, vs);
    prop_assert_eq!(c.num_samples(), n);
    let got = XorChunk::decode_all(c.bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(got.len(), n);
    for (i, s) in got.iter().enumerate() {
        prop_assert!(
            s.bit_eq(&Sample::new(ts[i], f64::from_bits(vs[i]))),
            "sample {}: {:?}",
            i,
            s
        );
    }
    let via_iter: Vec<Sample> = c
        .iter()
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(via_iter.len(), n);
    check_range_decode(c.bytes(), i64::MIN, i64::MAX)?;
    if n > 0 {
        let (a, b) = (ts[n / 3], ts[(2 * n) / 3]);
        check_range_decode(c.bytes(), a.min(b), a.max(b))?;
    }
    prop_assert_eq!(c.first_t(), ts.first().copied().filter(|_| n > 0));
    prop_assert_eq!(c.last_t(), ts.get(n.wrapping_sub(1)).copied());
    prop_assert_eq!(
        c.last_value().map(f64::to_bits),
        vs.get(n.wrapping_sub(1)).copied()
    );
    Ok(())
}

/// The range decode keeps exactly what iterating keeps, and fails exactly
/// when iterating meets an error before a sample after `end`.
fn check_range_decode(bytes: &[u8], start: i64, end: i64) -> Result<(), TestCaseError> {
    let mut want = Vec::new();
    let mut want_err = false;
    for item in XorIter::new(bytes) {
        match item {
            Err(_) => {
                want_err = true;
                break;
            }
            Ok(s) if s.t > end => break,
            Ok(s) if s.t >= start => want.push(s),
            Ok(_) => {}
        }
    }
    let mut got = Vec::new();
    let res = XorIter::new(bytes).decode_range_into(start, end, &mut got);
    prop_assert_eq!(res.is_err(), want_err, "range {}..={}: {:?}", start, end, res);
    if let Err(e) = res {
        prop_assert!(matches!(e, ModelError::CorruptChunk(_)));
    }
    prop_assert_eq!(got.len(), want.len(), "range {}..={}", start, end);
    for (g, w) in got.iter().zip(&want) {
        prop_assert!(g.bit_eq(w), "{:?} != {:?}", g, w);
    }
    Ok(())
}

/// Decodes arbitrary bytes every way; must not panic and must terminate with
/// at most one error, which comes last.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = XorChunk::decode_all(bytes);
    check_range_decode(bytes, i64::MIN, i64::MAX)?;
    if let Ok(c) = XorChunk::from_bytes(bytes.to_vec()) {
        // Accepted chunks decode cleanly and keep accepting appends.
        prop_assert!(c.iter().all(|s| s.is_ok()));
        let mut c = c;
        let t = c.last_t().map_or(0, |t| t.wrapping_add(1));
        c.append(t, 1.0);
        let last = c.iter().last().and_then(Result::ok);
        prop_assert!(last.is_some_and(|s| s.bit_eq(&Sample::new(t, 1.0))));
    }
    let mut it = XorIter::new(bytes);
    let bound = it.remaining() + 1;
    let mut seen = 0usize;
    let mut errors = 0usize;
    for item in it.by_ref() {
        seen += 1;
        prop_assert!(
            seen <= bound,
            "iterator yielded more items than the header allows"
        );
        if let Err(e) = item {
            prop_assert!(matches!(e, ModelError::CorruptChunk(_)));
            errors += 1;
        } else {
            prop_assert_eq!(errors, 0, "sample after an error");
        }
    }
    prop_assert!(errors <= 1);
    prop_assert!(it.next().is_none());
    Ok(())
}

/// Decoding several chunks two at a time keeps what decoding them one after
/// another keeps, and reports the same first corrupt chunk.
fn check_chunks_decode(chunks: &[Vec<u8>], start: i64, end: i64) -> Result<(), TestCaseError> {
    let mut want = Vec::new();
    let mut want_err = None;
    for (i, c) in chunks.iter().enumerate() {
        if XorIter::new(c).decode_range_into(start, end, &mut want).is_err() {
            want_err = Some(i);
            break;
        }
    }
    let mut got = Vec::new();
    let res = decode_chunks_range_into(chunks.iter().map(Vec::as_slice), start, end, &mut got);
    prop_assert_eq!(res.err().map(|(i, _)| i), want_err);
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        prop_assert!(g.bit_eq(w), "{:?} != {:?}", g, w);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn increasing_timestamps_and_any_floats_round_trip(ts in increasing_ts(300), vs in value_series(300)) {
        let n = ts.len().min(vs.len());
        check_round_trip(&ts[..n], &vs[..n])?;
    }

    #[test]
    fn any_i64_sequence_round_trips(ts in prop::collection::vec(any::<i64>(), 0..100), vs in value_series(100)) {
        let n = ts.len().min(vs.len());
        check_round_trip(&ts[..n], &vs[..n])?;
    }

    #[test]
    fn append_after_from_bytes_matches_one_pass(ts in increasing_ts(120), vs in value_series(120), cut in 0usize..121) {
        let n = ts.len().min(vs.len());
        let cut = cut.min(n);
        let mut c = XorChunk::from_bytes(encode(&ts[..cut], &vs[..cut]).into_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for i in cut..n {
            c.append(ts[i], f64::from_bits(vs[i]));
        }
        let one_pass = encode(&ts[..n], &vs[..n]);
        prop_assert_eq!(c.bytes(), one_pass.bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        count in any::<u16>(),
        wide in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = if wide {
            let mut b = vec![0x02];
            b.extend_from_slice(&u32::from(count).to_be_bytes());
            b
        } else {
            let mut b = vec![0x01];
            b.extend_from_slice(&count.to_be_bytes());
            b
        };
        bytes.extend_from_slice(&body);
        decode_everything(&bytes)?;
    }

    #[test]
    fn corrupted_chunks_never_panic(
        ts in increasing_ts(60),
        vs in value_series(60),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let n = ts.len().min(vs.len());
        let mut bytes = encode(&ts[..n], &vs[..n]).into_bytes();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        decode_everything(&bytes)?;
        let len = cut.index(bytes.len() + 1);
        decode_everything(&bytes[..len])?;
    }

    #[test]
    fn chunks_decode_two_at_a_time_like_one_by_one(
        ts in increasing_ts(400),
        vs in value_series(400),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        damage in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>())),
        range in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let n = ts.len().min(vs.len());
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(n + 1)).collect();
        bounds.extend([0, n]);
        bounds.sort_unstable();
        let mut chunks: Vec<Vec<u8>> = bounds
            .windows(2)
            .map(|w| encode(&ts[w[0]..w[1]], &vs[w[0]..w[1]]).into_bytes())
            .collect();
        if let Some((which, at, mask)) = damage {
            let c = which.get_mut(&mut chunks);
            let len = at.index(c.len() + 1);
            c.truncate(len.max(1));
            if let Some(b) = c.last_mut() {
                *b ^= mask;
            }
        }
        check_chunks_decode(&chunks, i64::MIN, i64::MAX)?;
        if n > 0 {
            let (a, b) = (ts[range.0.index(n)], ts[range.1.index(n)]);
            check_chunks_decode(&chunks, a.min(b), a.max(b))?;
        }
    }
}
