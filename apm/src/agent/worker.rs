//! The agent's background threads: named, stoppable (their waits end at once on shutdown)
//! and joined within a deadline (a thread stuck in I/O is left behind rather than hanging the
//! application).

use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(crate) struct Stop {
    state: Mutex<StopState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct StopState {
    stopped: bool,
    /// Times [`Stop::wake`] was called: work for a waiter, before its deadline.
    wakes: u64,
}

impl Stop {
    /// Asks every waiter to stop.
    pub(crate) fn stop(&self) {
        self.state.lock().stopped = true;
        self.cv.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.state.lock().stopped
    }

    /// Waits `d` (or until stopped); `true` when stopped. Wakes do not end this wait.
    pub(crate) fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut state = self.state.lock();
        while !state.stopped {
            if self.cv.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.stopped
    }

    /// Ends the waits of [`Stop::wait_or_woken`] early (there is work for their thread).
    pub(crate) fn wake(&self) {
        self.state.lock().wakes += 1;
        self.cv.notify_all();
    }

    /// Waits `d`, or until stopped, or until woken since `seen` (which it updates); `true`
    /// when stopped.
    pub(crate) fn wait_or_woken(&self, d: Duration, seen: &mut u64) -> bool {
        let deadline = Instant::now() + d;
        let mut state = self.state.lock();
        while !state.stopped && state.wakes == *seen {
            if self.cv.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        *seen = state.wakes;
        state.stopped
    }
}

/// A running background thread.
#[derive(Debug)]
pub(crate) struct Worker {
    handle: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl Worker {
    /// Starts `body` on a thread named `name`. Returns once the thread runs, so its name is
    /// visible when `init` returns (bounded: a starved machine only delays).
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (done_tx, done) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::util::own_thread::mark_current();
                let _ = started_tx.send(());
                body();
                let _ = done_tx.send(());
            })?;
        let _ = started.recv_timeout(Duration::from_secs(1));
        Ok(Worker {
            handle: Some(handle),
            done,
        })
    }

    /// Joins the thread if it finishes before `deadline`; `false` if it was left running.
    pub(crate) fn join_by(mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if self.done.recv_timeout(left).is_err() {
            return false;
        }
        self.handle.take().is_some_and(|h| h.join().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_wake_ends_the_waits_that_listen_for_it_only() {
        let stop = Arc::new(Stop::default());
        let mut seen = 0;
        let started = Instant::now();
        let waiter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || stop.wait_or_woken(Duration::from_secs(60), &mut seen))
        };
        stop.wake();
        assert!(!waiter.join().unwrap_or(true), "woken, not stopped");
        // Long before its 60 s deadline.
        assert!(started.elapsed() < Duration::from_secs(30));
        // A wake already seen does not end the next wait; one not yet seen does at once.
        let mut seen = 0;
        assert!(!stop.wait_or_woken(Duration::from_millis(1), &mut seen));
        assert_eq!(seen, 1);
        let start = Instant::now();
        assert!(!stop.wait_or_woken(Duration::from_millis(50), &mut seen));
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "waited its time"
        );
        // A plain wait is not ended by a wake.
        assert!(!stop.wait(Duration::from_millis(1)));
    }

    #[test]
    fn stop_interrupts_a_wait() {
        let stop = Arc::new(Stop::default());
        let waiter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || stop.wait(Duration::from_secs(60)))
        };
        stop.stop();
        assert!(waiter.join().unwrap_or(false));
        assert!(stop.is_stopped());
        assert!(
            stop.wait(Duration::from_secs(60)),
            "returns at once once stopped"
        );
    }

    #[test]
    fn workers_are_named_and_joined_or_left_by_the_deadline() {
        let stop = Arc::new(Stop::default());
        let w = {
            let stop = Arc::clone(&stop);
            Worker::spawn("apm-test-worker", move || {
                assert_eq!(std::thread::current().name(), Some("apm-test-worker"));
                stop.wait(Duration::from_secs(60));
            })
            .unwrap()
        };
        stop.stop();
        assert!(w.join_by(Instant::now() + Duration::from_secs(10)));
        let stuck = Arc::new(Stop::default());
        let w = {
            let stuck = Arc::clone(&stuck);
            Worker::spawn("apm-test-stuck", move || {
                stuck.wait(Duration::from_secs(60));
            })
            .unwrap()
        };
        assert!(!w.join_by(Instant::now() + Duration::from_millis(20)));
        stuck.stop();
    }

    #[test]
    fn a_wait_ends_after_its_duration() {
        let stop = Stop::default();
        let t = Instant::now();
        assert!(!stop.wait(Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
