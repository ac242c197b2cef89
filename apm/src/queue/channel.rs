//! The bounded channel between the application threads and the transport thread, with both of
//! its ends: batches of events one way (dropped, never waited for, when the queue is full),
//! and commands (flush, shutdown) on a channel of their own.
//!
//! The transport thread polls the queue instead of blocking on it: a blocked receiver would
//! make every hand-over pay for a futex wake-up. A doorbell wakes it for commands, and when a
//! hand-over fills half the queue.
//!
//! Metrics reports (one per `metrics_interval`) do not share the events' slots: they wait in a
//! place of their own, so that a queue full of spans cannot drop the report that counts those
//! drops. Reports not taken yet (the transport thread is waiting on the network) are kept
//! together, up to [`METRICS_ROOM`] metricsets.
//!
//! Under pressure spans go first: when the queue is full, a batch's spans are dropped, and its
//! transactions and errors wait in a second place, up to as many events as the queue holds.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use parking_lot::Mutex;

use super::batch::BATCH;
use crate::types::record::Event;

/// Metricsets that may wait for the transport thread: many reports' worth (a report is a few
/// metricsets, and at most about a thousand with breakdown metrics).
pub(crate) const METRICS_ROOM: usize = 4096;

/// What travels on the queue.
pub(crate) enum Message {
    /// Finished events, in the order their thread recorded them.
    Events(Vec<Event>),
}

/// What the agent handle asks of the transport thread.
pub(crate) enum Command {
    /// Send everything now; answer whether the server took it.
    Flush(Sender<bool>),
    /// Flush, answer, and stop.
    Shutdown(Sender<bool>),
}

/// A queue of `slots` batches, with room for `slots` batches' worth of transactions and errors
/// beside it once it is full: its producing end (held by the tracer) and its consuming end
/// (held by the transport thread).
pub(crate) fn bounded(slots: usize) -> (Producer, Consumer) {
    let (events_tx, events) = mpsc::sync_channel(slots);
    let (commands_tx, commands) = mpsc::channel();
    let metrics = Arc::new(Place::new(METRICS_ROOM));
    let held = Arc::new(Place::new(slots * BATCH));
    let doorbell = Arc::new(Doorbell {
        transport: OnceLock::new(),
        queued: AtomicUsize::new(0),
        half: (slots / 2).max(1),
    });
    (
        Producer {
            events: events_tx,
            commands: commands_tx,
            doorbell: Arc::clone(&doorbell),
            metrics: Arc::clone(&metrics),
            held: Arc::clone(&held),
        },
        Consumer {
            events,
            commands,
            doorbell,
            metrics,
            held,
        },
    )
}

#[derive(Debug)]
struct Doorbell {
    transport: OnceLock<Thread>,
    /// Batches in the queue.
    queued: AtomicUsize,
    /// The bell rings when a hand-over fills this many slots.
    half: usize,
}

impl Doorbell {
    fn ring(&self) {
        if let Some(t) = self.transport.get() {
            t.unpark();
        }
    }
}

/// The application's end.
#[derive(Debug)]
pub(crate) struct Producer {
    events: SyncSender<Message>,
    commands: Sender<Command>,
    doorbell: Arc<Doorbell>,
    metrics: Arc<Place>,
    held: Arc<Place>,
}

/// Events waiting beside the queue for the transport thread, up to `room` of them.
#[derive(Debug)]
struct Place {
    events: Mutex<Vec<Event>>,
    room: usize,
}

impl Place {
    fn new(room: usize) -> Place {
        Place {
            events: Mutex::new(Vec::new()),
            room,
        }
    }

    /// Moves `events` in, after those waiting; `false` (and nothing moved) when they would
    /// hold more than `room`. An empty place takes any number.
    fn put(&self, events: &mut Vec<Event>) -> bool {
        let mut place = self.events.lock();
        if place.is_empty() {
            std::mem::swap(&mut *place, events);
            return true;
        }
        if place.len() + events.len() > self.room {
            return false;
        }
        place.append(events);
        true
    }

    fn take(&self) -> Option<Vec<Event>> {
        let mut place = self.events.lock();
        (!place.is_empty()).then(|| std::mem::take(&mut *place))
    }
}

impl Producer {
    /// Leaves a metrics report for the transport thread, after those not taken yet; gives it
    /// back when they would hold more than [`METRICS_ROOM`] metricsets.
    pub(crate) fn send_metrics(&self, mut report: Vec<Event>) -> Result<(), Vec<Event>> {
        if self.metrics.put(&mut report) {
            Ok(())
        } else {
            Err(report)
        }
    }

    /// Moves the events of `batch` (spans taken out already: the queue is full) to the room
    /// beside the queue; `false`, and `batch` left as it was, when there is not enough.
    pub(crate) fn send_held(&self, batch: &mut Vec<Event>) -> bool {
        self.held.put(batch)
    }

    /// Queues a batch without waiting; gives it back when the queue is full or closed.
    #[inline]
    pub(crate) fn send_events(&self, batch: Vec<Event>) -> Result<(), Vec<Event>> {
        match self.events.try_send(Message::Events(batch)) {
            Ok(()) => {
                if self.doorbell.queued.fetch_add(1, Relaxed) + 1 == self.doorbell.half {
                    self.doorbell.ring();
                }
                Ok(())
            }
            Err(TrySendError::Full(Message::Events(b)))
            | Err(TrySendError::Disconnected(Message::Events(b))) => Err(b),
        }
    }

    /// Sends a command and wakes the transport thread; `false` when it has stopped.
    pub(crate) fn send_command(&self, command: Command) -> bool {
        let sent = self.commands.send(command).is_ok();
        self.doorbell.ring();
        sent
    }
}

/// The transport thread's end.
#[derive(Debug)]
pub(crate) struct Consumer {
    events: Receiver<Message>,
    commands: Receiver<Command>,
    doorbell: Arc<Doorbell>,
    metrics: Arc<Place>,
    held: Arc<Place>,
}

impl Consumer {
    /// The metrics reports waiting, if any.
    pub(crate) fn try_recv_metrics(&self) -> Option<Vec<Event>> {
        self.metrics.take()
    }

    /// The transactions and errors held beside a full queue, if any.
    pub(crate) fn try_recv_held(&self) -> Option<Vec<Event>> {
        self.held.take()
    }

    /// Called by the transport thread when it starts: the doorbell wakes this thread.
    pub(crate) fn register(&self) {
        let _ = self.doorbell.transport.set(std::thread::current());
    }

    /// The next queued batch: `Ok(None)` when there is none now, `Err` when every producer
    /// is gone.
    pub(crate) fn try_recv_events(&self) -> Result<Option<Vec<Event>>, ()> {
        match self.events.try_recv() {
            Ok(Message::Events(batch)) => {
                let _ = self
                    .doorbell
                    .queued
                    .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
                Ok(Some(batch))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        }
    }

    /// The next command, if any.
    pub(crate) fn try_recv_command(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// Batches in the queue now.
    pub(crate) fn len(&self) -> usize {
        self.doorbell.queued.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: usize) -> Vec<Event> {
        (0..n).map(|_| Event::Metricset(Box::default())).collect()
    }

    #[test]
    fn metrics_do_not_share_the_events_slots() {
        let (producer, consumer) = bounded(1);
        assert!(producer.send_events(report(1)).is_ok());
        assert!(
            producer.send_events(report(1)).is_err(),
            "the events' queue is full"
        );
        // Reports still find room, and wait together until taken.
        assert!(producer.send_metrics(report(3)).is_ok());
        assert!(producer.send_metrics(report(2)).is_ok());
        assert!(producer.send_metrics(report(METRICS_ROOM)).is_err());
        assert_eq!(consumer.try_recv_metrics().map(|r| r.len()), Some(5));
        assert!(consumer.try_recv_metrics().is_none());
        // An empty place takes any report whole.
        assert!(producer.send_metrics(report(METRICS_ROOM + 1)).is_ok());
    }

    #[test]
    fn beside_a_full_queue_there_is_room_for_a_queue_s_worth() {
        let (producer, consumer) = bounded(2);
        let mut some = report(BATCH);
        assert!(producer.send_held(&mut some));
        assert!(some.is_empty(), "moved in");
        let mut more = report(BATCH);
        assert!(producer.send_held(&mut more));
        let mut too_many = report(1);
        assert!(!producer.send_held(&mut too_many));
        assert_eq!(too_many.len(), 1, "left as it was");
        assert_eq!(consumer.try_recv_held().map(|h| h.len()), Some(2 * BATCH));
        assert!(producer.send_held(&mut too_many));
    }
}
