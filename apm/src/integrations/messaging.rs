//! What messaging integrations share: `ignore_message_queues`, compiled once per
//! configuration in effect.

/// Whether messages sent to or received from `queue` (a queue, topic or exchange) are not to
/// be traced (`ignore_message_queues`). Nothing is ignored when no agent runs: nothing is
/// recorded then anyway.
#[cfg(feature = "enable")]
pub(crate) fn ignored(queue: &str) -> bool {
    use super::facade::{derived, Derived};
    use crate::util::wildcard::WildcardList;

    thread_local! {
        static IGNORED: Derived<WildcardList> = const { std::cell::RefCell::new(None) };
    }
    derived(&IGNORED, |c| WildcardList::parse(&c.ignore_message_queues))
        .is_some_and(|list| list.any_match(queue))
}

/// The agent is compiled out: nothing is recorded, nothing ignored.
#[cfg(not(feature = "enable"))]
pub(crate) fn ignored(_queue: &str) -> bool {
    false
}
