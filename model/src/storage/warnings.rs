//! Read warnings: how a backend that answered only in part (a cluster
//! fan-out with partial responses enabled skipping an unreachable shard)
//! tells the API, without changing the [`super::Queryable`] signatures.
//!
//! The sink is per thread: the API runs a query's whole evaluation on one
//! blocking thread inside [`collect_warnings`], and the backend calls
//! [`report_warning`] from that same thread. Outside a collection scope a
//! warning is only logged by the caller's tracing, never lost silently: the
//! function returns `false` so the backend can decide to fail instead.

use std::cell::RefCell;

thread_local! {
    static SINK: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `f`, returning its result and the distinct warnings reported by
/// storage on this thread meanwhile (in report order). Scopes nest: an
/// inner scope's warnings are not seen by the outer one.
pub fn collect_warnings<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let outer = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let r = f();
    let mine = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer)).unwrap_or_default();
    (r, mine)
}

/// Reports a warning to the current collection scope (duplicates dropped).
/// Returns whether a scope was there to receive it.
pub fn report_warning(msg: impl Into<String>) -> bool {
    let msg = msg.into();
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(list) => {
            if !list.contains(&msg) {
                list.push(msg);
            }
            true
        }
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_reach_only_their_scope() {
        assert!(!report_warning("nobody listens"));
        let ((), outer) = collect_warnings(|| {
            assert!(report_warning("a"));
            assert!(report_warning("a"));
            let ((), inner) = collect_warnings(|| {
                report_warning("b");
            });
            assert_eq!(inner, vec!["b".to_string()]);
            report_warning("c");
        });
        assert_eq!(outer, vec!["a".to_string(), "c".to_string()]);
        assert!(!report_warning("after"));
    }
}
