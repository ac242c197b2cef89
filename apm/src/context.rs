//! The thread-local stack of what is current: a transaction, then the spans opened inside it.
//!
//! An entry that owns a reference to its transaction is pushed when a transaction starts, a
//! future is polled or a context is attached; span entries above it hold no reference, so
//! starting a span touches no reference count. Always accessed with `try_with`:
//! during thread teardown the stack is simply absent.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::tracer::TxnShared;

#[derive(Debug)]
pub(crate) struct Entry {
    /// The id children of this entry take as `parent_id` (a span id, or the transaction id).
    pub(crate) id: u64,
    /// Identifies the entry for its guard: entries are found by token, never by position, so
    /// closes in any order and futures polled at any depth find their own.
    token: Token,
    /// Set on entries that own their transaction; span entries belong to the nearest owner
    /// below them.
    owner: Option<Arc<TxnShared>>,
}

thread_local! {
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// Whether the current transaction is sampled, kept beside the stack in a `const`
    /// thread-local without destructor: spans of unsampled transactions (and spans outside
    /// any) stop after this one cheap read.
    static RECORDING_SPANS: Cell<bool> = const { Cell::new(false) };
}

/// Refreshes [`RECORDING_SPANS`] after the stack changed.
#[inline]
fn refresh(stack: &[Entry]) {
    let on = owner(stack).is_some_and(|t| t.sampled);
    let _ = RECORDING_SPANS.try_with(|c| c.set(on));
}

/// `false` when a span opened now would record nothing (no transaction, or unsampled).
#[inline]
pub(crate) fn may_record_spans() -> bool {
    RECORDING_SPANS.try_with(Cell::get).unwrap_or(false)
}

/// What a guard keeps to close its entry: a random 64-bit value (a span's own id for spans).
pub(crate) type Token = u64;

#[inline]
fn owner(stack: &[Entry]) -> Option<&Arc<TxnShared>> {
    // Usually the top entry itself (a transaction or a future's frame): check it first.
    match stack.last()?.owner.as_ref() {
        Some(o) => Some(o),
        None => stack.iter().rev().find_map(|e| e.owner.as_ref()),
    }
}

/// Runs `f` with the current transaction and the id that a new child would take as parent.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<TxnShared>, u64) -> R) -> Option<R> {
    STACK
        .try_with(|s| {
            let s = s.try_borrow().ok()?;
            let top = s.last()?;
            Some(f(owner(&s)?, top.id))
        })
        .ok()
        .flatten()
}

/// Opens a child of the current entry: `decide` sees the transaction and the parent id and
/// returns the child's id (also its token; or `None` to open nothing) plus anything else.
#[inline]
pub(crate) fn push_child<R>(
    decide: impl FnOnce(&TxnShared, u64) -> Option<(u64, R)>,
) -> Option<(Token, R)> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let parent = s.last()?.id;
            let (id, r) = decide(owner(&s)?, parent)?;
            s.push(Entry {
                id,
                token: id,
                owner: None,
            });
            Some((id, r))
        })
        .ok()
        .flatten()
}

/// Makes `txn` current with `id` as the parent of what opens next.
pub(crate) fn push_owner(txn: Arc<TxnShared>, id: u64) -> Option<Token> {
    let token = crate::ids::next_u64();
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            s.push(Entry {
                id,
                token,
                owner: Some(txn),
            });
            refresh(&s);
            Some(token)
        })
        .ok()
        .flatten()
}

/// Closes the entry opened with `token`, wherever it is on this thread's stack (guards may be
/// dropped out of order). Guards cannot move to another thread (they are `!Send`).
#[inline]
pub(crate) fn pop(token: Token) {
    let _ = STACK.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        if s.last().is_some_and(|e| e.token == token) {
            if s.pop().is_some_and(|e| e.owner.is_some()) {
                refresh(&s);
            }
        } else if let Some(i) = s.iter().rposition(|e| e.token == token) {
            s.remove(i);
            refresh(&s);
        }
    });
}

/// Leaves the entry opened with `token` and everything opened above it: the entries above are
/// returned (a future yielding with guards still open keeps them for its next poll).
pub(crate) fn leave(token: Token) -> Vec<Entry> {
    STACK
        .try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return Vec::new();
            };
            match s.iter().rposition(|e| e.token == token) {
                Some(i) => {
                    let above = s.split_off(i + 1);
                    s.pop();
                    refresh(&s);
                    above
                }
                None => Vec::new(),
            }
        })
        .unwrap_or_default()
}

/// Puts back entries returned by [`leave`] (the future is polled again).
pub(crate) fn restore(entries: &mut Vec<Entry>) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if !entries.is_empty() {
                s.append(entries);
                refresh(&s);
            }
        }
    });
}

/// The current transaction and parent id, as an owned snapshot.
pub(crate) fn snapshot() -> Option<(Arc<TxnShared>, u64)> {
    with_current(|t, parent| (Arc::clone(t), parent))
}
