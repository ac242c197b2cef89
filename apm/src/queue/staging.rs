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
    /// What the thread published (it left its last recorded transaction): locked by the thread
    /// once per transaction, hence a spin lock (see `util/spin_lock.rs`).
    events: SpinLock<Vec<Event>>,
    /// The thread holds staged events the transport cannot reach: it is inside a recorded
    /// transaction. Set by its first event after a hand-over (once per batch, never per
    /// event), cleared when it hands them over; a flush then knows it did not send everything.
    holds: AtomicBool,
}

static REGISTRY: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

/// Events a thread stages inside a recorded transaction before it takes back what it last
/// published, if the transport thread has not swept it yet. A transaction with fewer events
/// locks its thread's shared buffer once, when it ends, and its events are appended to what
/// waits there (a copy of a few events costs about what a second lock would); a larger one
/// takes the published vector back once, with its first events appended, and goes on filling
/// it, so that when it ends the vector moves and its events are not copied.
const RECLAIM_AT: usize = 8;

thread_local! {
    /// This thread's events not yet visible to the transport thread, and its shared buffer.
    static STAGE: RefCell<Stage> = const { RefCell::new(Stage { staged: Vec::new(), shared: None }) };
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
/// takes nothing: a poll of a task's future that records nothing takes no lock, and a
/// transaction with fewer than [`RECLAIM_AT`] events takes one lock, when it leaves.
#[inline]
pub(crate) fn set_in_recorded_transaction(on: bool) {
    let was = IN_RECORDED_TRANSACTION
        .try_with(|c| c.replace(on))
        .unwrap_or(false);
    if was && !on {
        publish_own();
    }
}

/// A thread's staged events and its shared buffer; a thread that exits inside a transaction
/// hands its staged events over rather than losing them.
struct Stage {
    /// Events of this thread not yet visible to the transport thread.
    staged: Vec<Event>,
    /// This thread's buffer in the registry (what the transport thread sweeps), made at its
    /// first publish.
    shared: Option<Buffer>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        if !self.staged.is_empty() {
            hand_over(std::mem::take(&mut self.staged));
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

impl Stage {
    fn buffer(&mut self) -> &Buffer {
        self.shared.get_or_insert_with(register)
    }

    /// Tells the transport thread whether this thread holds staged events it cannot reach.
    #[cold]
    fn set_holding(&mut self, holds: bool) {
        self.buffer().holds.store(holds, Relaxed);
    }

    /// Takes back what this thread last published, if the transport thread has not swept it
    /// yet, with the staged events appended to it, to go on filling it (see [`RECLAIM_AT`]).
    /// Without room there for the staged events it takes nothing: they go on as they are.
    #[cold]
    fn reclaim(&mut self) {
        let Some(buf) = &self.shared else {
            return;
        };
        #[cfg(test)]
        LOCKS_TAKEN.with(|n| n.set(n.get() + 1));
        let mut shared = buf.events.lock();
        if shared.is_empty() || shared.len() + self.staged.len() > BATCH {
            return;
        }
        shared.append(&mut self.staged);
        std::mem::swap(&mut *shared, &mut self.staged);
    }

    /// Makes the staged events visible to the transport thread: the staged vector itself when
    /// the shared buffer is empty, else the events appended to what waits there; when there is
    /// no room for them, what waits there is handed over as a batch and the staged vector
    /// takes its place. Events are moved, or copied a few at a time (see [`RECLAIM_AT`]).
    fn publish(&mut self) {
        let staged = &mut self.staged;
        let buf = self.shared.get_or_insert_with(register);
        buf.holds.store(false, Relaxed);
        #[cfg(test)]
        LOCKS_TAKEN.with(|n| n.set(n.get() + 1));
        let mut shared = buf.events.lock();
        if shared.is_empty() && shared.capacity() >= BATCH {
            // Swap rather than copy: the shared buffer's empty vector becomes the stage.
            std::mem::swap(&mut *shared, staged);
            return;
        }
        if shared.len() + staged.len() <= BATCH {
            shared.append(staged);
            return;
        }
        let full = std::mem::replace(&mut *shared, std::mem::take(staged));
        drop(shared);
        hand_over(full);
        *staged = batch::fresh();
    }
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
    let _ = STAGE.try_with(|stage| {
        let Ok(mut stage) = stage.try_borrow_mut() else {
            return;
        };
        let stage = &mut *stage;
        let staged = &mut stage.staged;
        if staged.capacity() == 0 {
            *staged = batch::fresh();
        }
        if let Some(make) = make.take() {
            // Built straight into its slot: `push` would build the event aside and copy it.
            crate::util::in_place::push(staged, make);
        }
        let staged_len = staged.len();
        if staged_len >= BATCH {
            let full = std::mem::replace(staged, batch::fresh());
            hand_over(full);
            stage.set_holding(false);
        } else if !in_recorded_transaction() {
            // Outside any recorded transaction: nothing tells when this thread comes back.
            stage.publish();
        } else if staged_len == 1 {
            // The first event staged inside a transaction since the last hand-over.
            stage.set_holding(true);
        } else if staged_len == RECLAIM_AT {
            stage.reclaim();
        }
    });
    // Thread-local storage already torn down: send this one event on its own.
    if let Some(make) = make {
        hand_over(vec![make()]);
    }
}

#[cfg(test)]
thread_local! {
    /// How many times this thread took its shared buffer's lock.
    static LOCKS_TAKEN: Cell<usize> = const { Cell::new(0) };
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

/// Makes what this thread staged visible to the transport thread (it left its last recorded
/// transaction, or asks for a flush inside one: what it recorded so far goes too).
pub(crate) fn publish_own() {
    let _ = STAGE.try_with(|stage| {
        if let Ok(mut stage) = stage.try_borrow_mut() {
            if !stage.staged.is_empty() {
                stage.publish();
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
    let _ = STAGE.try_with(|stage| {
        if let Ok(mut stage) = stage.try_borrow_mut() {
            // SAFETY: shortening a vector; its events are leaked, not dropped.
            unsafe { stage.staged.set_len(0) };
            std::mem::forget(stage.shared.take());
        }
    });
    let _ = IN_RECORDED_TRANSACTION.try_with(|c| c.set(false));
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe { crate::util::after_fork::reset_mutex(&REGISTRY, Vec::new()) };
}

/// Holds the registry's lock until `release` says so (tests of a fork while it is held).
#[cfg(test)]
pub(crate) fn hold_registry(
    held: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
) {
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
        STAGE.with(|s| ids(&s.borrow().staged))
    }

    fn published_ids() -> Vec<u64> {
        STAGE.with(|s| {
            s.borrow()
                .shared
                .as_ref()
                .map_or_else(Vec::new, |b| ids(&b.events.lock()))
        })
    }

    fn ids(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Transaction(t) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    fn locks() -> usize {
        LOCKS_TAKEN.with(Cell::get)
    }

    #[test]
    fn a_transaction_of_few_events_locks_its_shared_buffer_once() {
        let run = std::thread::spawn(|| {
            // Outside any transaction an event is published at once: the thread now has a
            // shared buffer holding it.
            push(event(1));
            assert!(staged_ids().is_empty());
            assert_eq!(locks(), 1);
            // In and out with nothing recorded, as a poll that waits: no lock.
            set_in_recorded_transaction(true);
            set_in_recorded_transaction(false);
            assert_eq!(locks(), 1);
            // Fewer than `RECLAIM_AT` events: staged without a lock, appended when it leaves.
            set_in_recorded_transaction(true);
            for id in 2..1 + RECLAIM_AT as u64 {
                push(event(id));
            }
            assert_eq!(locks(), 1);
            assert_eq!(published_ids(), [1]);
            set_in_recorded_transaction(false);
            assert_eq!(locks(), 2);
            assert!(staged_ids().is_empty(), "published on leaving");
            let all: Vec<u64> = (1..1 + RECLAIM_AT as u64).collect();
            assert_eq!(published_ids(), all, "appended after what waited, in order");
        });
        assert!(run.join().is_ok());
    }

    #[test]
    fn a_larger_transaction_takes_back_what_waits_and_its_events_are_moved_not_copied() {
        let run = std::thread::spawn(|| {
            push(event(1));
            set_in_recorded_transaction(true);
            for id in 2..2 + RECLAIM_AT as u64 {
                push(event(id));
            }
            // The `RECLAIM_AT`-th event took back what was published, its own appended.
            assert_eq!(locks(), 2);
            assert!(published_ids().is_empty());
            let stage_ptr = STAGE.with(|s| s.borrow().staged.as_ptr());
            for id in 2 + RECLAIM_AT as u64..40 {
                push(event(id));
            }
            assert_eq!(locks(), 2, "no lock per event");
            set_in_recorded_transaction(false);
            assert_eq!(locks(), 3);
            let all: Vec<u64> = (1..40).collect();
            assert_eq!(published_ids(), all);
            let shared_ptr =
                STAGE.with(|s| s.borrow().shared.as_ref().map(|b| b.events.lock().as_ptr()));
            assert_eq!(
                shared_ptr,
                Some(stage_ptr),
                "the vector moved, its events were not copied"
            );
        });
        assert!(run.join().is_ok());
    }

    #[test]
    fn events_that_overflow_the_shared_buffer_go_as_a_batch_and_none_is_lost() {
        let run = std::thread::spawn(|| {
            // Published one at a time, outside transactions: the shared buffer fills up to a
            // batch less three.
            for id in 0..BATCH as u64 - 3 {
                push(event(id));
            }
            assert_eq!(published_ids().len(), BATCH - 3);
            // Five more inside a transaction: no room for them, so what waited is handed over
            // (there is no agent here: it is dropped) and the five take its place.
            set_in_recorded_transaction(true);
            let five: Vec<u64> = (1000..1005).collect();
            for &id in &five {
                push(event(id));
            }
            set_in_recorded_transaction(false);
            assert_eq!(published_ids(), five);
            assert!(staged_ids().is_empty());
        });
        assert!(run.join().is_ok());
    }
}
