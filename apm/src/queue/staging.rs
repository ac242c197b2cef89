//! Per-thread event buffers between the application and the transport thread.
//!
//! Each thread appends finished events to a vector only it touches (no lock, no atomic: a
//! locked instruction per span would also wait for the span's own stores to drain). A full
//! vector is handed over whole through a bounded channel with `try_send`; when the channel is
//! full the events are dropped and counted, and the vector is reused: the application never
//! blocks and memory never grows. When the thread leaves its last recorded transaction, what
//! it staged moves to its shared buffer, behind a spin lock that only that thread and (every few
//! tens of milliseconds) the transport thread take; the transport thread sweeps those of idle
//! threads, and gives emptied vectors back to a pool so that recording allocates nothing.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch::{self, BATCH};
use super::tracer;
use crate::types::record::Event;
use crate::util::spin_lock::SpinLock;

type Buffer = Arc<Shared>;

/// A thread's buffer as the transport thread sees it.
#[derive(Debug, Default)]
struct Shared {
    /// What the thread published (it left its last recorded transaction): taken by the thread
    /// once per transaction, hence a spin lock (see `util/spin_lock.rs`).
    events: SpinLock<Vec<Event>>,
    /// The thread holds staged events the transport cannot reach: it is inside a recorded
    /// transaction. Set by its first event after a hand-over (once per batch, never per
    /// event), cleared when it hands them over; a flush then knows it did not send everything.
    holds: AtomicBool,
}

static REGISTRY: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

thread_local! {
    /// Events of this thread not yet visible to the transport thread.
    static STAGED: RefCell<Staged> = const { RefCell::new(Staged(Vec::new())) };
    /// This thread's buffer in the registry (what the transport thread sweeps).
    static LOCAL: RefCell<Option<Buffer>> = const { RefCell::new(None) };
    /// Whether this thread is inside a recorded (sampled) transaction: what it stages waits
    /// until it leaves. A `const` thread-local without destructor, read on every span's path
    /// (capture's first check).
    static IN_RECORDED_TRANSACTION: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a recorded transaction (see [`set_in_recorded_transaction`]).
#[inline]
pub(crate) fn in_recorded_transaction() -> bool {
    IN_RECORDED_TRANSACTION.try_with(Cell::get).unwrap_or(false)
}

/// The thread entered or left its recorded transactions: leaving the last one makes what it
/// staged visible to the transport thread (nothing tells when it comes back). Entering one
/// takes nothing back yet: the first event staged inside it does (see [`reclaim_into`]), so
/// that a poll of a task's future that records nothing takes no lock.
#[inline]
pub(crate) fn set_in_recorded_transaction(on: bool) {
    let was = IN_RECORDED_TRANSACTION
        .try_with(|c| c.replace(on))
        .unwrap_or(false);
    if was && !on {
        publish_staged();
    }
}

/// A thread's staged events; a thread that exits inside a transaction hands them over rather
/// than losing them.
struct Staged(Vec<Event>);

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            hand_over(std::mem::take(&mut self.0));
        }
    }
}

#[cold]
fn register() -> Buffer {
    let b: Buffer = Arc::new(Shared {
        events: SpinLock::new(Vec::with_capacity(BATCH)),
        holds: AtomicBool::new(false),
    });
    REGISTRY.lock().push(Arc::clone(&b));
    b
}

/// Tells the transport thread whether this thread holds staged events it cannot reach.
#[cold]
fn set_holding(holds: bool) {
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            local.get_or_insert_with(register).holds.store(holds, Relaxed);
        }
    });
}

/// Hands one event to the transport thread (eventually). Never blocks, never panics. An error
/// goes at once, with what the thread staged before it, rather than waiting for the thread to
/// leave its transaction or fill a batch.
#[inline]
pub(crate) fn push(event: Event) {
    let urgent = matches!(event, Event::Error(_));
    push_with(|| event);
    if urgent {
        publish_own();
    }
}

/// [`push`] of the event `make` builds, built in place where it can be.
#[inline(always)]
pub(crate) fn push_with(make: impl FnOnce() -> Event) {
    let mut make = Some(make);
    let _ = STAGED.try_with(|staged| {
        let Ok(mut staged) = staged.try_borrow_mut() else {
            return;
        };
        let staged = &mut staged.0;
        if staged.is_empty() {
            if in_recorded_transaction() {
                reclaim_into(staged);
            }
            if staged.capacity() == 0 {
                *staged = batch::fresh();
            }
        }
        if let Some(make) = make.take() {
            if staged.len() == staged.capacity() {
                staged.reserve(1);
            }
            // Built straight into its slot: `push` would build the event on the stack first
            // (its capacity check may reallocate) and then copy it.
            if let Some(slot) = staged.spare_capacity_mut().first_mut() {
                slot.write(make());
                // SAFETY: the slot at `len` is within the capacity and was just initialised.
                unsafe { staged.set_len(staged.len() + 1) };
            }
        }
        if staged.len() >= BATCH {
            let full = std::mem::replace(staged, batch::fresh());
            hand_over(full);
            set_holding(false);
        } else if !in_recorded_transaction() {
            // Outside any recorded transaction: nothing tells when this thread comes back.
            publish(staged);
        } else if staged.len() == 1 {
            // The first event staged inside a transaction since the last hand-over.
            set_holding(true);
        }
    });
    // Thread-local storage already torn down: send this one event on its own.
    if let Some(make) = make {
        hand_over(vec![make()]);
    }
}

/// Makes what this thread staged visible to the transport thread (it left its last recorded
/// transaction).
fn publish_staged() {
    let _ = STAGED.try_with(|staged| {
        if let Ok(mut staged) = staged.try_borrow_mut() {
            if !staged.0.is_empty() {
                publish(&mut staged.0);
            }
        }
    });
}

/// Takes back into the empty `staged` what this thread last published, if the transport
/// thread has not swept it yet, to go on filling it (its first event inside a recorded
/// transaction): publishing and reclaiming move a vector, never the events, so that a thread
/// that goes in and out of transactions does not copy its events each time.
#[cold]
fn reclaim_into(staged: &mut Vec<Event>) {
    let _ = LOCAL.try_with(|local| {
        if let Some(buf) = local.try_borrow().ok().as_ref().and_then(|l| l.as_ref()) {
            #[cfg(test)]
            RECLAIMS_LOCKED.with(|n| n.set(n.get() + 1));
            let mut shared = buf.events.lock();
            if !shared.is_empty() {
                std::mem::swap(&mut *shared, staged);
                buf.holds.store(true, Relaxed);
            }
        }
    });
}

#[cfg(test)]
thread_local! {
    /// How many times this thread took its shared buffer's lock to take events back.
    static RECLAIMS_LOCKED: Cell<usize> = const { Cell::new(0) };
}

fn publish(staged: &mut Vec<Event>) {
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        let buf = local.get_or_insert_with(register);
        buf.holds.store(false, Relaxed);
        let mut shared = buf.events.lock();
        if shared.is_empty() && shared.capacity() >= BATCH {
            // Swap rather than copy: the shared buffer's empty vector becomes the stage.
            std::mem::swap(&mut *shared, staged);
            return;
        }
        let room = BATCH.saturating_sub(shared.len());
        if staged.len() > room {
            let full = std::mem::replace(&mut *shared, batch::fresh());
            drop(shared);
            hand_over(full);
            shared = buf.events.lock();
        }
        shared.append(staged);
    });
}

/// Hands a batch to the transport thread at once, bypassing this thread's stage (a panic's
/// error: the thread may be about to end).
pub(crate) fn send(batch: Vec<Event>) {
    hand_over(batch);
}

fn hand_over(batch: Vec<Event>) {
    if let Some(t) = tracer::get() {
        t.hand_over(batch);
    }
}

/// Makes what this thread staged visible to the transport thread even inside a transaction
/// (it asks for a flush: what it recorded so far goes too).
pub(crate) fn publish_own() {
    let _ = STAGED.try_with(|staged| {
        if let Ok(mut staged) = staged.try_borrow_mut() {
            if !staged.0.is_empty() {
                publish(&mut staged.0);
            }
        }
    });
}

/// In a forked child (its `pthread_atfork` handler, on the forking thread, the child's only
/// one): what the parent's threads staged stays the parent's to send (sending it here too would
/// send it twice), and no buffer or registry lock of the parent is ever taken here (a thread
/// of the parent may have held one at the fork). Nothing is freed: the child's handler does
/// not call the allocator.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    let _ = STAGED.try_with(|staged| {
        if let Ok(mut staged) = staged.try_borrow_mut() {
            // SAFETY: shortening a vector; its events are leaked, not dropped.
            unsafe { staged.0.set_len(0) };
        }
    });
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            std::mem::forget(local.take());
        }
    });
    let _ = IN_RECORDED_TRANSACTION.try_with(|c| c.set(false));
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe { crate::util::after_fork::reset_mutex(&REGISTRY, Vec::new()) };
}

/// Holds the registry's lock until `release` says so (tests of a fork while it is held).
#[cfg(test)]
pub(crate) fn hold_registry(held: std::sync::mpsc::Sender<()>, release: std::sync::mpsc::Receiver<()>) {
    let _held = REGISTRY.lock();
    let _ = held.send(());
    let _ = release.recv();
}

/// Whether a live thread holds staged events the transport thread cannot reach (it is inside
/// a recorded transaction).
pub(crate) fn held_elsewhere() -> bool {
    REGISTRY
        .lock()
        .iter()
        .any(|b| Arc::strong_count(b) > 1 && b.holds.load(Relaxed))
}

/// Takes whatever the threads' buffers hold (transport thread only). Buffers of threads that
/// have exited are emptied and forgotten.
pub(crate) fn sweep(mut sink: impl FnMut(Vec<Event>)) {
    let buffers: Vec<Buffer> = {
        let mut reg = REGISTRY.lock();
        reg.retain(|b| Arc::strong_count(b) > 1 || !b.events.lock().is_empty());
        reg.clone()
    };
    for b in buffers {
        let taken = {
            let mut events = b.events.lock();
            if events.is_empty() {
                continue;
            }
            std::mem::replace(&mut *events, batch::fresh())
        };
        sink(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::record::{TransactionName, TransactionRecord};

    fn event(id: u64) -> Event {
        Event::Transaction(Box::new(TransactionRecord::for_tests(
            id,
            TransactionName::Dynamic("t".into(), "custom".into()),
        )))
    }

    fn staged_ids() -> Vec<u64> {
        STAGED.with(|s| {
            s.borrow()
                .0
                .iter()
                .filter_map(|e| match e {
                    Event::Transaction(t) => Some(t.id),
                    _ => None,
                })
                .collect()
        })
    }

    #[test]
    fn entering_a_transaction_takes_nothing_back_until_its_first_event() {
        let run = std::thread::spawn(|| {
            let locked = || RECLAIMS_LOCKED.with(Cell::get);
            // Outside any transaction an event is published at once: the thread now has a
            // shared buffer holding it.
            push(event(1));
            assert!(staged_ids().is_empty());
            // In and out with nothing recorded, as a poll that waits: no lock.
            set_in_recorded_transaction(true);
            set_in_recorded_transaction(false);
            assert_eq!(locked(), 0);
            // The first event inside takes back what was published, to go on filling it.
            set_in_recorded_transaction(true);
            push(event(2));
            assert_eq!(locked(), 1);
            assert_eq!(staged_ids(), [1, 2]);
            push(event(3));
            assert_eq!(locked(), 1);
            set_in_recorded_transaction(false);
            assert!(staged_ids().is_empty(), "published on leaving");
        });
        assert!(run.join().is_ok());
    }
}
