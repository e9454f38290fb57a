//! A small process-wide memo for pure functions of a string (parsed
//! queries, compiled regexes): bounded, and simply cleared when full.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Results of a pure function keyed by its string argument, at most `cap`
/// of them; usable as a `static`.
pub struct StrMemo<V> {
    cap: usize,
    map: OnceLock<Mutex<HashMap<String, V>>>,
}

impl<V: Clone> StrMemo<V> {
    /// An empty memo holding at most `cap` entries.
    pub const fn new(cap: usize) -> Self {
        Self { cap, map: OnceLock::new() }
    }

    /// The memoized `f(key)`: computed (outside the lock) and kept when
    /// absent; an error is returned and not kept.
    pub fn get_or_try<E>(&self, key: &str, f: impl FnOnce(&str) -> Result<V, E>) -> Result<V, E> {
        let map = self.map.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(v) = map.lock().unwrap_or_else(PoisonError::into_inner).get(key) {
            return Ok(v.clone());
        }
        let v = f(key)?;
        let mut m = map.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= self.cap {
            m.clear();
        }
        m.insert(key.to_string(), v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_keeps_no_errors_and_stays_bounded() {
        static M: StrMemo<usize> = StrMemo::new(2);
        let calls = std::cell::Cell::new(0);
        let len = |k: &str| -> Result<usize, ()> {
            calls.set(calls.get() + 1);
            Ok(k.len())
        };
        assert_eq!(M.get_or_try("abc", len), Ok(3));
        assert_eq!(M.get_or_try("abc", len), Ok(3));
        assert_eq!(calls.get(), 1, "second lookup is served from the memo");
        assert_eq!(M.get_or_try("x", |_| Err::<usize, _>("bad")), Err("bad"));
        assert_eq!(M.get_or_try("x", len), Ok(1), "an error is not kept");
        assert_eq!(M.get_or_try("yy", len), Ok(2));
        let n = M.map.get().map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len());
        assert!(n.is_some_and(|n| n <= 2), "bounded: {n:?}");
    }
}
