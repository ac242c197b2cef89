//! The thread-local stack of what is current: a transaction, then the spans opened inside it.
//!
//! An entry that owns a reference to its transaction is pushed when a transaction starts, a
//! future is polled or a context is attached; span entries only record how far below their
//! owner is, so starting a span touches no reference count. Always accessed with `try_with`:
//! during thread teardown the stack is simply absent.

use std::cell::RefCell;
use std::sync::Arc;

use crate::tracer::TxnShared;

#[derive(Debug)]
pub(crate) struct Entry {
    /// The id children of this entry take as `parent_id` (a span id, or the transaction id).
    pub(crate) id: u64,
    /// Set on entries that own their transaction.
    owner: Option<Arc<TxnShared>>,
    /// Distance down to the entry that owns the transaction (0 for owners).
    to_owner: u32,
}

thread_local! {
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Where an entry was pushed; pops verify it by id.
pub(crate) type Slot = u32;

fn owner_of(stack: &[Entry], index: usize) -> Option<&Arc<TxnShared>> {
    let e = stack.get(index)?;
    stack
        .get(index.checked_sub(e.to_owner as usize)?)?
        .owner
        .as_ref()
}

/// Runs `f` with the current transaction and the id that a new child would take as parent.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<TxnShared>, u64) -> R) -> Option<R> {
    STACK
        .try_with(|s| {
            let s = s.try_borrow().ok()?;
            let top = s.len().checked_sub(1)?;
            let txn = owner_of(&s, top)?;
            Some(f(txn, s[top].id))
        })
        .ok()
        .flatten()
}

/// Opens a child of the current entry: `decide` sees the transaction and the parent id and
/// returns the child's id (or `None` to open nothing) plus anything else it computed.
#[inline]
pub(crate) fn push_child<R>(
    decide: impl FnOnce(&TxnShared, u64) -> Option<(u64, R)>,
) -> Option<(Slot, R)> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let top = s.len().checked_sub(1)?;
            let to_owner = s[top].to_owner;
            let owner = top.checked_sub(to_owner as usize)?;
            let txn = s[owner].owner.as_deref()?;
            let (id, r) = decide(txn, s[top].id)?;
            let slot = s.len() as Slot;
            s.push(Entry {
                id,
                owner: None,
                to_owner: to_owner + 1,
            });
            Some((slot, r))
        })
        .ok()
        .flatten()
}

/// Makes `txn` current with `id` as the parent of what opens next.
pub(crate) fn push_owner(txn: Arc<TxnShared>, id: u64) -> Option<Slot> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let slot = s.len() as Slot;
            s.push(Entry {
                id,
                owner: Some(txn),
                to_owner: 0,
            });
            Some(slot)
        })
        .ok()
        .flatten()
}

/// Closes the entry pushed at `slot` with `id`. Out-of-order closes (a guard dropped after a
/// later one) remove the entry and keep the entries above pointing at their owners; a close
/// on another thread than the open finds nothing and does nothing.
#[inline]
pub(crate) fn pop(slot: Slot, id: u64) {
    let _ = STACK.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        let slot = slot as usize;
        if slot + 1 == s.len() && s[slot].id == id {
            s.pop();
        } else if slot < s.len() && s[slot].id == id {
            remove_at(&mut s, slot);
        }
    });
}

#[cold]
fn remove_at(s: &mut Vec<Entry>, slot: usize) {
    for (i, e) in s.iter_mut().enumerate().skip(slot + 1) {
        if e.owner.is_none() && i - (e.to_owner as usize) < slot {
            e.to_owner -= 1;
        } else if e.owner.is_none() && i - (e.to_owner as usize) == slot {
            // Its owner is the entry being removed: it cannot stay attached; make it an orphan
            // that no child can open under.
            e.to_owner = u32::MAX / 2;
        }
    }
    s.remove(slot);
}

/// Current depth of the stack (0 when absent).
pub(crate) fn depth() -> usize {
    STACK
        .try_with(|s| s.try_borrow().map(|s| s.len()).unwrap_or(0))
        .unwrap_or(0)
}

/// Moves the entries above `len` out (a future yielding with spans still open).
pub(crate) fn take_above(len: usize) -> Vec<Entry> {
    STACK
        .try_with(|s| match s.try_borrow_mut() {
            Ok(mut s) if s.len() > len => s.split_off(len),
            _ => Vec::new(),
        })
        .unwrap_or_default()
}

/// Puts back entries taken with [`take_above`] (the future is polled again).
pub(crate) fn restore(entries: &mut Vec<Entry>) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.append(entries);
        }
    });
}

/// Drops every entry above `len` (after a poll, whatever happened inside).
pub(crate) fn truncate(len: usize) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.truncate(len);
        }
    });
}

/// The current transaction and parent id, as an owned snapshot.
pub(crate) fn snapshot() -> Option<(Arc<TxnShared>, u64)> {
    with_current(|t, parent| (Arc::clone(t), parent))
}
