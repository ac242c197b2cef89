//! What generated code calls: the entry points of `#[apm::span]`, `#[apm::transaction]` and
//! `capture_error!`, re-exported by `__private`. Not public API.

use std::future::Future;
use std::marker::PhantomData;

use super::errors;
pub use super::future::{Frame, Instrumented, NoHook, OutcomeHook};
use super::handles::{NotSend, TransactionGuard};
use super::span;
use super::stack::{self, Token};
use super::transaction;
use crate::queue::tracer;
use crate::types::clock;
use crate::types::headers::HeaderSource;
use crate::types::meta::{Level, Site, SpanMeta, TransactionMeta};
use crate::types::outcome::Outcome;

/// A span or transaction entered on this thread by an instrumented sync function.
/// Empty (`None`: a word to write and test) when nothing is recorded.
#[derive(Debug)]
pub struct Guard(Option<GuardInner>);

#[derive(Debug)]
enum GuardInner {
    /// The span of a `#[apm::span]` function: its data waits on the context stack.
    StaticSpan(StaticSpanGuard),
    Transaction(TransactionGuard),
}

#[derive(Debug)]
struct StaticSpanGuard {
    token: Token,
    /// Derived from the function's return value; success when none is.
    outcome: Outcome,
    _not_send: NotSend,
}

impl Drop for StaticSpanGuard {
    #[inline]
    fn drop(&mut self) {
        exit_static_span(self.token, self.outcome);
    }
}

/// Out of line, like [`open_static_span`].
#[inline(never)]
fn exit_static_span(token: Token, outcome: Outcome) {
    stack::exit_static_span(token, clock::now(), outcome);
}

/// The recording path, kept out of the instrumented function: inlined, it made every
/// call save and restore registers and reserve stack, even with the agent off.
#[inline(never)]
fn open_static_span(meta: &'static SpanMeta) -> Option<Token> {
    stack::enter_static_span(meta, clock::now())
}

impl Guard {
    /// The outcome derived from the function's return value.
    #[inline]
    pub fn set_outcome(&mut self, outcome: Outcome) {
        use GuardInner as Guard;
        match &mut self.0 {
            Some(Guard::StaticSpan(s)) => s.outcome = outcome,
            Some(Guard::Transaction(t)) => t.fallback = outcome,
            None => {}
        }
    }
}

/// `#[apm::span]` on a sync function: enters its span until the guard drops.
#[inline]
pub fn enter_span(meta: &'static SpanMeta) -> Guard {
    // The common "nothing to record" cases (agent off, unsampled, no transaction) cost
    // one load and one thread-local read, whatever the compiler decides about inlining
    // the rest.
    if !tracer::is_active() || !stack::may_record_spans() {
        return Guard(None);
    }
    Guard(open_static_span(meta).map(|token| {
        GuardInner::StaticSpan(StaticSpanGuard {
            token,
            outcome: Outcome::Unknown,
            _not_send: PhantomData,
        })
    }))
}

/// `#[apm::transaction]` on a sync function: enters its transaction until the guard drops.
#[inline]
pub fn enter_transaction(meta: &'static TransactionMeta) -> Guard {
    Guard(Some(GuardInner::Transaction(TransactionGuard::open(
        transaction::transaction_name(meta),
        None,
    ))))
}

/// `#[apm::transaction(headers = ..)]`: continues the trace of the incoming headers.
#[inline]
pub fn enter_transaction_with(meta: &'static TransactionMeta, headers: &dyn HeaderSource) -> Guard {
    Guard(Some(GuardInner::Transaction(TransactionGuard::open(
        transaction::transaction_name(meta),
        Some(headers),
    ))))
}

/// Lets `headers = arg` accept an argument of any `HeaderSource` type, by value or reference.
#[inline]
pub fn as_header_source<H: HeaderSource>(headers: &H) -> &dyn HeaderSource {
    headers
}

/// Starts a span for a future (entered by `Instrumented` on each poll).
#[inline]
pub fn start_span(meta: &'static SpanMeta) -> Frame {
    Frame::from_span(span::FrameSpan::open(meta))
}

/// Starts a transaction for a future.
#[inline]
pub fn start_transaction(meta: &'static TransactionMeta) -> Frame {
    transaction_frame(meta, None)
}

/// A future's transaction continuing the trace of the incoming headers.
#[inline]
pub fn start_transaction_with(meta: &'static TransactionMeta, headers: &dyn HeaderSource) -> Frame {
    transaction_frame(meta, Some(headers))
}

fn transaction_frame(meta: &'static TransactionMeta, headers: Option<&dyn HeaderSource>) -> Frame {
    Frame::from_transaction(transaction::open_transaction(
        transaction::transaction_name(meta),
        headers,
    ))
}

/// The outcome hook of futures whose output does not decide it.
#[inline]
pub fn no_outcome<T: ?Sized>(_output: &T) -> Outcome {
    Outcome::Unknown
}

impl<F: Future, H: FnOnce(&F::Output) -> Outcome> Instrumented<F, H> {
    /// `fut` running inside `frame`; `hook` decides the outcome from its output.
    #[inline]
    pub fn new(fut: F, frame: Frame, hook: H) -> Self {
        Instrumented::with_hook(fut, frame, hook)
    }
}

/// `capture_error!`: an error event for `err`, captured at `site`.
#[inline]
pub fn capture_error(
    err: &dyn std::error::Error,
    type_name: &'static str,
    backtrace: Option<&std::backtrace::Backtrace>,
    site: &'static Site,
) {
    errors::capture(err, type_name, backtrace, site);
}

/// `capture_message!`: a message event at `level`, formatted only when an agent records it.
#[inline]
pub fn capture_message(
    level: Level,
    message: std::fmt::Arguments<'_>,
    format: &'static str,
    site: &'static Site,
) {
    if tracer::is_active() {
        errors::capture_message(message.to_string(), level.as_str(), format, site);
    }
}
