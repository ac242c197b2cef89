//! The bounded channel between the application threads and the transport thread, with both of
//! its ends: batches of events one way (dropped, never waited for, when the queue is full),
//! and commands (flush, shutdown) on a channel of their own.
//!
//! The transport thread polls the queue instead of blocking on it: a blocked receiver would
//! make every hand-over pay for a futex wake-up. A doorbell wakes it for commands, and when a
//! hand-over fills half the queue.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use crate::types::record::Event;

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

/// A queue of `slots` batches: its producing end (held by the tracer) and its consuming end
/// (held by the transport thread).
pub(crate) fn bounded(slots: usize) -> (Producer, Consumer) {
    let (events_tx, events) = mpsc::sync_channel(slots);
    let (commands_tx, commands) = mpsc::channel();
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
        },
        Consumer {
            events,
            commands,
            doorbell,
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
}

impl Producer {
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
}

impl Consumer {
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
