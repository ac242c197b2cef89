//! What messaging integrations share: `ignore_message_queues`, compiled once per
//! configuration in effect, and the handle of a message's send span.

use super::facade::OverLimitExit;
use crate::{Outcome, Span};

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

/// A message's send span; past `transaction_max_spans` (the span records nothing), the
/// timing that counts the message in its transaction's `dropped_spans_stats`.
pub(crate) struct SendSpan {
    span: Span,
    over_limit: Option<OverLimitExit>,
}

impl SendSpan {
    /// `span`, started for a message to `queue` through `system` (`rabbitmq`, `nats`): the
    /// caller describes it when it records.
    pub(crate) fn new(span: Span, system: &'static str, queue: &str) -> SendSpan {
        let over_limit = if span.is_recording() {
            None
        } else {
            OverLimitExit::start_message(system, queue)
        };
        let mut send = SendSpan { span, over_limit };
        // Until the client answers: a send dropped before that (cancelled) ends `unknown`.
        send.set_outcome(Outcome::Unknown);
        send
    }

    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.span.set_outcome(outcome);
        if let Some(o) = &mut self.over_limit {
            o.set_outcome(outcome);
        }
    }

    /// Success or failure, as `result` says.
    pub(crate) fn end<T, E>(mut self, result: &Result<T, E>) {
        self.set_outcome(if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
    }
}
