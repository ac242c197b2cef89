//! Whether the running thread is one of the agent's own. What runs there (the HTTP client, TLS,
//! the resolver) may log through the application's logger; a record from there captured as an
//! error event would be sent by the same thread, log again, and loop.

use std::cell::Cell;

thread_local! {
    static AGENTS: Cell<bool> = const { Cell::new(false) };
}

/// Marks the running thread as the agent's, for as long as it runs.
#[cfg(feature = "enable")]
pub(crate) fn mark_current() {
    AGENTS.with(|a| a.set(true));
}

/// `true` on a thread the agent started.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) fn is_current() -> bool {
    // During the thread's teardown the slot may be gone: such a thread is not capturing.
    AGENTS.try_with(Cell::get).unwrap_or(true)
}

/// A log record or `tracing` event the agent must never send as an error: the agent's own
/// (its target is `apm` or under it), or one logged on an agent thread.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) fn logged_by_agent(target: &str) -> bool {
    target == "apm" || target.starts_with("apm::") || is_current()
}

#[cfg(all(test, feature = "enable", any(feature = "log", feature = "tracing")))]
mod tests {
    use super::*;

    #[test]
    fn only_a_marked_thread_is_the_agents() {
        assert!(!is_current());
        let marked = std::thread::spawn(|| {
            mark_current();
            is_current()
        });
        assert!(marked.join().unwrap_or(false));
        assert!(!is_current());
    }
}
