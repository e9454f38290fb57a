//! Data parallelism for per-series work: a vector is cut into contiguous
//! pieces that the calling thread and up to one pool thread per other core
//! map, each taking the next piece as it finishes one; results come back in
//! input order. Small inputs stay on the calling thread (handing work to
//! another thread costs a wake-up and its cache).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// Below this much estimated work (samples to look at), don't spawn threads.
pub(crate) const MIN_PARALLEL_WORK: usize = 64 * 1024;

/// Most threads one query uses.
const MAX_THREADS: usize = 8;

/// Threads a parallel map uses at most (the machine's cores, capped).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism().map(NonZeroUsize::get).unwrap_or(1).min(MAX_THREADS)
    })
}

/// Pieces per thread: with several pieces each, a thread that loses its
/// core to another process holds up the query by one small piece, not by
/// half of the work.
const PIECES_PER_THREAD: usize = 8;

/// `items.into_iter().map(f).collect()`, in parallel when `work` (an
/// estimate of the total cost, e.g. samples to scan) is large enough to pay
/// for threads. Consumes `items`, so each is dropped right after it was
/// mapped (its memory is then reused for the results, not held to the end).
/// Threads take contiguous pieces from a shared counter; results are put
/// back in input order.
pub(crate) fn par_map<T, R, F>(items: Vec<T>, work: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    par_map_with(items, work, || (), |_, x| f(x))
}

/// [`par_map`] where every thread first makes a scratch state with `init`
/// (e.g. a decode buffer) that `f` reuses for all the items it maps.
pub(crate) fn par_map_with<T, R, S, I, F>(items: Vec<T>, work: usize, init: I, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, T) -> R + Sync,
{
    let threads = cores().min(items.len());
    if threads < 2 || work < MIN_PARALLEL_WORK {
        let mut state = init();
        return items.into_iter().map(|x| f(&mut state, x)).collect();
    }
    let total = items.len();
    let piece_len = total.div_ceil(threads * PIECES_PER_THREAD);
    let mut pieces: Vec<Mutex<Option<Vec<T>>>> = Vec::with_capacity(total.div_ceil(piece_len));
    let mut rest = items.into_iter();
    loop {
        let piece: Vec<T> = rest.by_ref().take(piece_len).collect();
        if piece.is_empty() {
            break;
        }
        pieces.push(Mutex::new(Some(piece)));
    }
    let results: Vec<Mutex<Vec<R>>> = pieces.iter().map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    let run = || {
        let mut state = init();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = pieces.get(i) else {
                break;
            };
            let piece = lock(slot).take().unwrap_or_default();
            let mapped: Vec<R> = piece.into_iter().map(|x| f(&mut state, x)).collect();
            *lock(&results[i]) = mapped;
        }
    };
    // The other shares run on rayon's pool of long-lived threads: spawning
    // an OS thread per map cost a `clone`, a fresh stack and an exit on
    // every large query. A panic in any share is re-raised here once all
    // have finished.
    rayon::in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| run());
        }
        run();
    });
    let mut out = Vec::with_capacity(total);
    for r in results {
        out.extend(r.into_inner().unwrap_or_else(PoisonError::into_inner));
    }
    out
}

/// Locks `m`; a poisoned lock (a worker panicked) is re-raised by the join.
fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_input_order_small_and_large() {
        let big: Vec<u64> = (0..10_001).collect();
        let owned = par_map(big.clone(), usize::MAX, |x| x * 3);
        assert_eq!(owned, big.iter().map(|x| x * 3).collect::<Vec<_>>());
        assert_eq!(par_map(vec![1u64, 2, 3], 0, |x| x + 1), vec![2, 3, 4]);
        assert!(par_map(Vec::<u64>::new(), usize::MAX, |x| x).is_empty());
    }

    #[test]
    fn scratch_state_is_per_thread_and_reused() {
        let items: Vec<u64> = (0..5_000).collect();
        // Each item sees how many items its thread mapped before it.
        let seen = par_map_with(items, usize::MAX, || 0u64, |n, x| {
            *n += 1;
            (x, *n)
        });
        assert!(seen.iter().enumerate().all(|(i, (x, _))| *x == i as u64), "order kept");
        let total_firsts = seen.iter().filter(|(_, n)| *n == 1).count();
        assert!((1..=cores()).contains(&total_firsts), "one fresh state per thread, got {total_firsts}");
        let serial = par_map_with(vec![1u64, 2, 3], 0, || 10u64, |n, x| {
            *n += x;
            *n
        });
        assert_eq!(serial, vec![11, 13, 16]);
    }
}
