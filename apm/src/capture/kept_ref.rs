//! A thread's kept reference to a transaction's state: what an `async` span held, kept when
//! the span ends for the next one opened under the same transaction on this thread, so that
//! neither takes nor drops a reference of its own. Each was a locked instruction, about 12 ns
//! of an 80 ns async span (BENCHMARKS.md §12u). It is a real reference, counted: the state
//! cannot be freed or reused while it is kept here. A transaction that ends on this thread
//! takes it back first, so that its state is reused for the next one.

use std::cell::Cell;
use std::sync::Arc;

use super::shared::TxnShared;

thread_local! {
    static KEPT: Cell<Option<Arc<TxnShared>>> = const { Cell::new(None) };
}

/// A reference to `txn`: the one kept here when it is `txn`'s, else a new one.
#[inline]
pub(super) fn take(txn: &Arc<TxnShared>) -> Arc<TxnShared> {
    KEPT.try_with(|kept| take_if_of(kept, txn))
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::clone(txn))
}

/// Keeps `txn` (a span's reference, as it ends) for the next span here; a reference kept
/// before, most likely of an earlier transaction, is let go.
#[inline]
pub(super) fn keep(txn: Arc<TxnShared>) {
    let earlier = KEPT.try_with(|kept| kept.replace(Some(txn)));
    // Dropped outside the thread-local's access.
    drop(earlier);
}

/// Lets go of the reference kept here when it is `txn`'s: a transaction ending on this thread
/// does so before it looks whether anything else refers to its state.
#[inline]
pub(super) fn release(txn: &Arc<TxnShared>) {
    let kept = KEPT.try_with(|kept| take_if_of(kept, txn));
    drop(kept);
}

#[inline]
fn take_if_of(kept: &Cell<Option<Arc<TxnShared>>>, txn: &Arc<TxnShared>) -> Option<Arc<TxnShared>> {
    match kept.take() {
        Some(k) if Arc::ptr_eq(&k, txn) => Some(k),
        other => {
            kept.set(other);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<TxnShared> {
        TxnShared::for_tests(true)
    }

    #[test]
    fn a_kept_reference_is_taken_again_by_its_transaction_only_and_released_at_its_end() {
        let run = std::thread::spawn(|| {
            let a = state();
            let b = state();
            // A first span takes a new reference; at its end it is kept.
            let first = take(&a);
            assert_eq!(Arc::strong_count(&a), 2);
            keep(first);
            assert_eq!(Arc::strong_count(&a), 2, "kept, not dropped");
            // The next span under the same transaction takes it: no new reference.
            let second = take(&a);
            assert_eq!(Arc::strong_count(&a), 2);
            keep(second);
            // Another transaction's span takes one of its own, and leaves `a`'s kept.
            let other = take(&b);
            assert_eq!(Arc::strong_count(&b), 2);
            assert_eq!(Arc::strong_count(&a), 2);
            // `b`'s end finds nothing of its own kept: `a`'s stays.
            release(&b);
            assert_eq!(Arc::strong_count(&a), 2);
            drop(other);
            // `a`'s end lets its kept reference go: its state is referred to once again.
            release(&a);
            assert_eq!(Arc::strong_count(&a), 1);
            // A span's reference kept replaces an earlier transaction's.
            keep(take(&a));
            keep(take(&b));
            assert_eq!(Arc::strong_count(&a), 1);
            assert_eq!(Arc::strong_count(&b), 2);
        });
        assert!(run.join().is_ok());
    }
}
