//! A forked child inherits the agent's memory but none of its threads. A `pthread_atfork`
//! child handler, registered when the first agent starts, runs in the child on the forking
//! thread (its only one) before `fork` returns there:
//!
//! - the inherited agent stops recording and is forgotten: recording is a no-op until the child
//!   calls `init`, which starts the child's own agent; the inherited handle's `flush` returns
//!   `false` at once and dropping it waits for no thread;
//! - the forking thread's id generator is seeded afresh (else it draws the parent's next ids);
//! - what the parent had staged, and the transactions and spans open on the forking thread,
//!   stay the parent's to send (the child sending them too would send them twice);
//! - every process-wide lock the child may take (the buffers' registry, the vector pool, the
//!   log's history) is made anew, its old contents left unread: a thread of the parent
//!   (`apm-transport` sweeping the buffers, say) may have held it at the fork; the spin locks
//!   that are not process-wide (the tracing layer's table shards) are taken over by the
//!   child's first thread that wants one, held since the fork's generation before
//!   (`util/spin_lock.rs`).
//!
//! Nothing in the child reads what those locks guarded, so the fork does not wait for them.
//! It waits only for an agent thread inside a lock outside the agent's reach (the loader's,
//! listing the modules for the stack walk; `backtrace`'s, resolving symbols): those sections
//! hold a gate (`util/after_fork.rs`) that the prepare handler takes around the fork, as glibc
//! takes malloc's locks. The child's handler only stores, takes no lock and frees nothing.

use std::sync::Once;

use crate::capture;
use crate::queue::{batch, spare, staging, tracer};
use crate::types::ids;
use crate::util::{after_fork, diag};

static REGISTER: Once = Once::new();

/// Registers the child handler (once per process; a child inherits the registration).
pub(crate) fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that lives as long as the process.
        let rc = unsafe { libc::pthread_atfork(Some(before), Some(in_parent), Some(in_child)) };
        if rc != 0 {
            diag::warn_once!(
                "could not register the fork handler ({rc}): a forked child must not record"
            );
        }
    });
}

extern "C" fn before() {
    after_fork::close_gate();
}

extern "C" fn in_parent() {
    after_fork::open_gate();
}

extern "C" fn in_child() {
    // Before anything takes a spin lock: those held at the fork are then told apart.
    after_fork::next_generation();
    // SAFETY: the child's handler, on its only thread.
    unsafe { after_fork::reset_gate() };
    tracer::after_fork_in_child();
    ids::after_fork_in_child();
    capture::after_fork_in_child();
    staging::after_fork_in_child();
    batch::after_fork_in_child();
    spare::after_fork_in_child();
    crate::export::symbolize::after_fork_in_child();
    diag::after_fork_in_child();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use crate::types::record::Event;

    /// Waits for `pid` to exit, up to `limit`; kills it past that. Its exit status, or `None`
    /// when it had to be killed.
    fn wait_bounded(pid: libc::pid_t, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            let mut status = 0;
            // SAFETY: plain system calls on our own child.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                return Some(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    -1
                });
            }
            if Instant::now() >= deadline {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_forked_child_draws_other_ids_than_its_parent() {
        register();
        // This thread's generator is seeded before the fork.
        let _ = ids::next_u64();
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child's id.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child runs the code below only and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let id = ids::next_u64().to_ne_bytes();
            // SAFETY: writes 8 bytes to the pipe, then leaves the child.
            unsafe {
                libc::write(fds[1], id.as_ptr().cast(), id.len());
                libc::_exit(0);
            }
        }
        assert!(pid > 0, "fork failed");
        let parent = ids::next_u64();
        assert_eq!(wait_bounded(pid, Duration::from_secs(10)), Some(0));
        let mut child = [0u8; 8];
        // SAFETY: reads the child's 8 bytes (it has exited: they are in the pipe).
        let n = unsafe { libc::read(fds[0], child.as_mut_ptr().cast(), child.len()) };
        // SAFETY: closes this test's pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(n, 8);
        assert_ne!(
            u64::from_ne_bytes(child),
            parent,
            "the child drew its parent's next id"
        );
    }

    #[test]
    fn a_child_takes_over_a_spin_lock_another_thread_held_at_the_fork_its_value_left_behind() {
        use crate::util::spin_lock::SpinLock;
        static LOCK: SpinLock<Vec<u32>> = SpinLock::new(Vec::new());
        register();
        // Another thread of the parent is inside the lock at the moment of the fork (as a
        // tracing span's callback holds its table shard), halfway through a change.
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut v = LOCK.lock();
            v.push(7);
            let _ = held_tx.send(());
            let _ = release_rx.recv();
        });
        held_rx.recv().expect("the lock is held");
        // SAFETY: the child only runs the code below and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut v = LOCK.lock();
            // What the parent's thread left there is not the child's.
            let code = if v.is_empty() { 0 } else { 3 };
            v.push(1);
            drop(v);
            let again = LOCK.lock().len();
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(if again == 1 { code } else { 4 }) };
        }
        assert!(pid > 0, "fork failed");
        let status = wait_bounded(pid, Duration::from_secs(10));
        let _ = release_tx.send(());
        let _ = holder.join();
        assert_eq!(
            status,
            Some(0),
            "the child hung on the spin lock, or read the parent's value"
        );
        // In the parent, the lock and its value are as its thread left them.
        assert_eq!(*LOCK.lock(), [7]);
    }

    #[test]
    fn a_child_forked_while_other_threads_hold_the_agent_s_locks_does_not_wait_for_them() {
        register();
        // Threads of the parent (as `apm-transport` sweeping the buffers, or logging) hold the
        // registry's, the pool's and the log history's locks at the moment of the fork.
        type Hold = fn(mpsc::Sender<()>, mpsc::Receiver<()>);
        let holds: [Hold; 3] = [staging::hold_registry, batch::hold_pool, diag::hold_history];
        let mut releases = Vec::new();
        let mut holders = Vec::new();
        for hold in holds {
            let (held_tx, held_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel();
            holders.push(std::thread::spawn(move || hold(held_tx, release_rx)));
            held_rx.recv().expect("the lock is held");
            releases.push(release_tx);
        }

        // SAFETY: the child only runs the agent's own code below and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // The paths a child takes: its thread's first hand-over registers a buffer, a new
            // agent fills the pool, the agent logs.
            staging::push(Event::Metricset(Box::default()));
            batch::prefill(8);
            diag::report(log::Level::Error, "fork-test", format_args!("in the child"));
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let status = wait_bounded(pid, Duration::from_secs(10));
        for r in releases {
            let _ = r.send(());
        }
        for h in holders {
            let _ = h.join();
        }
        assert_eq!(
            status,
            Some(0),
            "the child hung on a lock held by the parent's threads"
        );
    }
}
