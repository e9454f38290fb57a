//! Query cancellation: how the API tells a backend that the client of the
//! query it is serving went away, without changing the [`super::Queryable`]
//! signatures. Like the warning sink, the flag is per thread: the API runs a
//! query's evaluation on one blocking thread inside [`with_cancel_flag`],
//! and a backend doing slow remote work (the cluster fan-out) polls
//! [`current_cancel_flag`] to stop early.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

thread_local! {
    static FLAG: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Runs `f` with `flag` as this thread's cancellation flag (restored after).
pub fn with_cancel_flag<R>(flag: Arc<AtomicBool>, f: impl FnOnce() -> R) -> R {
    let outer = FLAG.with(|s| s.borrow_mut().replace(flag));
    let r = f();
    FLAG.with(|s| *s.borrow_mut() = outer);
    r
}

/// The cancellation flag of the query running on this thread, if any.
pub fn current_cancel_flag() -> Option<Arc<AtomicBool>> {
    FLAG.with(|s| s.borrow().clone())
}

/// Sets its flag when dropped: hold it in the future serving a request, so
/// the flag is raised when the server drops that future (client gone).
#[derive(Debug)]
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_is_scoped_and_raised_on_drop() {
        assert!(current_cancel_flag().is_none());
        let flag = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(flag.clone());
        let seen = with_cancel_flag(flag.clone(), || current_cancel_flag().map(|f| f.load(Ordering::SeqCst)));
        assert_eq!(seen, Some(false));
        assert!(current_cancel_flag().is_none(), "restored after the scope");
        drop(guard);
        assert!(flag.load(Ordering::SeqCst));
    }
}
