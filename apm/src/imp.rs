//! The runtime behind the public API (feature `enable`). `noop.rs` has the same surface with
//! the feature off.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::context::{self, ChildTimer, Entry, Token};
use crate::guard::{self, ActiveSpan};
use crate::headers::{HeaderSink, HeaderSource};
use crate::record::TransactionName;
use crate::span_context::{Db, Message, SpanExtra};
use crate::tracer::TxnShared;
use crate::{ids, propagation, LabelValue, Outcome};

pub(crate) use crate::agent::Agent;

/// Manual transaction guard (also what `#[apm::transaction]` uses on sync functions).
/// Guards are `!Send`: an entry on a thread's context stack must be closed on that thread
/// (futures carry their context with `Instrumented` instead).
type NotSend = PhantomData<*const ()>;

#[derive(Debug)]
pub(crate) struct TransactionGuard {
    txn: Option<Arc<TxnShared>>,
    token: Option<Token>,
    /// Outcome derived from the function's return value; an explicit one wins.
    fallback: Outcome,
    _not_send: NotSend,
}

impl TransactionGuard {
    pub(crate) fn start(
        name: Cow<'static, str>,
        kind: Cow<'static, str>,
        headers: Option<&dyn HeaderSource>,
    ) -> Self {
        Self::open(TransactionName::Dynamic(name, kind), headers)
    }

    #[inline]
    pub(crate) fn open(name: TransactionName, headers: Option<&dyn HeaderSource>) -> Self {
        match guard::open_transaction(name, headers) {
            Some(txn) => {
                let token =
                    context::push_owner(Arc::clone(&txn), txn.id, ChildTimer::default(), true);
                TransactionGuard {
                    txn: Some(txn),
                    token,
                    fallback: Outcome::Unknown,
                    _not_send: PhantomData,
                }
            }
            None => TransactionGuard {
                txn: None,
                token: None,
                fallback: Outcome::Unknown,
                _not_send: PhantomData,
            },
        }
    }

    pub(crate) fn set_name(&self, name: Cow<'static, str>) {
        if let Some(t) = &self.txn {
            guard::set_transaction_name(t, name);
        }
    }
    pub(crate) fn set_result(&self, result: Cow<'static, str>) {
        if let Some(t) = &self.txn {
            guard::set_transaction_result(t, result);
        }
    }
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        if let Some(t) = &self.txn {
            guard::set_transaction_outcome(t, outcome);
        }
    }
    pub(crate) fn set_label(&self, key: Cow<'static, str>, value: LabelValue) {
        if let Some(t) = &self.txn {
            guard::set_transaction_label(t, key, value);
        }
    }
    pub(crate) fn is_sampled(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.sampled)
    }
    pub(crate) fn trace_id(&self) -> Option<String> {
        self.txn.as_ref().map(|t| ids::hex128(t.trace_id))
    }
    pub(crate) fn id(&self) -> Option<String> {
        self.txn.as_ref().map(|t| ids::hex64(t.id))
    }
}

impl Drop for TransactionGuard {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            guard::end_transaction(&t, self.token, None, self.fallback);
        }
    }
}

/// A span's record while it runs, with what can be set on it (shared by the guard and the
/// detached handle). Empty when nothing is recorded.
#[derive(Debug, Default)]
pub(crate) struct SpanCore(Option<ActiveSpan>);

impl SpanCore {
    fn extra(&mut self) -> Option<&mut SpanExtra> {
        self.0.as_mut().map(ActiveSpan::extra)
    }
    pub(crate) fn set_subtype(&mut self, subtype: Cow<'static, str>) {
        if let Some(s) = &mut self.0 {
            s.set_subtype(subtype);
        }
    }
    pub(crate) fn set_action(&mut self, action: Cow<'static, str>) {
        if let Some(s) = &mut self.0 {
            s.set_action(action);
        }
    }
    #[inline]
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        if let Some(s) = &mut self.0 {
            s.set_outcome(outcome);
        }
    }
    pub(crate) fn set_label(&mut self, key: Cow<'static, str>, value: LabelValue) {
        if let Some(s) = &mut self.0 {
            s.set_label(key, value);
        }
    }
    pub(crate) fn set_exit(&mut self) {
        if let Some(e) = self.extra() {
            e.exit = true;
        }
    }
    pub(crate) fn set_http_request(&mut self, method: Cow<'static, str>, url: String) {
        if let Some(e) = self.extra() {
            let h = e.http.get_or_insert_with(Default::default);
            h.method = Some(method);
            h.url = Some(url);
        }
    }
    pub(crate) fn set_http_status(&mut self, status: u16) {
        if let Some(e) = self.extra() {
            e.http.get_or_insert_with(Default::default).status_code = Some(status);
        }
    }
    pub(crate) fn set_db(
        &mut self,
        kind: Cow<'static, str>,
        instance: Option<String>,
        statement: Option<String>,
    ) {
        if let Some(e) = self.extra() {
            e.db = Some(Db {
                kind: Some(kind),
                instance,
                statement,
            });
        }
    }
    pub(crate) fn set_message_queue(&mut self, queue: String) {
        if let Some(e) = self.extra() {
            e.message = Some(Message { queue: Some(queue) });
        }
    }
    pub(crate) fn set_service_target(
        &mut self,
        kind: Cow<'static, str>,
        name: Option<Cow<'static, str>>,
    ) {
        if let Some(e) = self.extra() {
            e.target_type = Some(kind);
            e.target_name = name;
        }
    }
    pub(crate) fn is_recording(&self) -> bool {
        self.0.is_some()
    }
    pub(crate) fn id(&self) -> Option<String> {
        self.0.as_ref().map(|s| ids::hex64(s.rec.id))
    }
    /// The propagation headers of a call made by this span (or, when it records nothing, by
    /// the current context).
    pub(crate) fn inject(&self, sink: &mut dyn HeaderSink) {
        match &self.0 {
            Some(s) => {
                sink.set_header(
                    propagation::TRACEPARENT,
                    &propagation::format_traceparent(s.rec.trace_id, s.rec.id, true),
                );
                if let Some(state) = context::with_current(|t, _| t.tracestate.clone()).flatten() {
                    sink.set_header(propagation::TRACESTATE, &state);
                }
            }
            None => Context::current().inject(sink),
        }
    }
}

/// Manual span guard (also what `#[apm::span]` uses on sync functions).
#[derive(Debug)]
pub(crate) struct SpanGuard {
    core: SpanCore,
    token: Option<Token>,
    _not_send: NotSend,
}

impl SpanGuard {
    /// Records nothing.
    const NONE: SpanGuard = SpanGuard {
        core: SpanCore(None),
        token: None,
        _not_send: PhantomData,
    };

    pub(crate) fn start(name: Cow<'static, str>, kind: Cow<'static, str>) -> Self {
        Self::open(guard::dynamic_span_name(name, kind))
    }

    #[inline]
    pub(crate) fn open(name: crate::record::SpanName) -> Self {
        match guard::open_span(name, guard::Mode::Enter) {
            Some((span, token)) => SpanGuard {
                core: SpanCore(Some(span)),
                token,
                _not_send: PhantomData,
            },
            None => SpanGuard::NONE,
        }
    }

    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.core
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.core
    }
}

impl Default for SpanGuard {
    fn default() -> Self {
        SpanGuard::NONE
    }
}

/// Whether a span started on this thread now would be recorded (integrations check it before
/// building a span's name).
#[inline]
#[cfg(any(feature = "minreq-client", feature = "reqwest"))]
pub(crate) fn spans_recorded_here() -> bool {
    crate::tracer::is_active() && context::may_record_spans()
}

impl Drop for SpanGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(s) = self.core.0.take() {
            match self.token {
                Some(token) => s.end(token),
                None => s.end_beside(&ChildTimer::default()),
            }
        }
    }
}

/// A span that is never current: for a call whose progress happens elsewhere (an HTTP client
/// request awaited in a task). `Send`; ends when dropped. Its time is the parent's child time
/// (wherever it ends).
#[derive(Debug, Default)]
pub(crate) struct Span {
    core: SpanCore,
}

impl Span {
    pub(crate) fn start(name: Cow<'static, str>, kind: Cow<'static, str>) -> Self {
        Span {
            core: SpanCore(
                guard::open_span(guard::dynamic_span_name(name, kind), guard::Mode::Beside)
                    .map(|(s, _)| s),
            ),
        }
    }
    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.core
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.core
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(s) = self.core.0.take() {
            s.end_beside(&ChildTimer::default());
        }
    }
}

/// The current transaction, for the `apm::set_*` helpers.
pub(crate) struct CurrentTransaction<'a>(&'a TxnShared);

impl CurrentTransaction<'_> {
    pub(crate) fn default_result(&self, result: Cow<'static, str>) {
        guard::default_transaction_result(self.0, result);
    }
    pub(crate) fn default_outcome(&self, outcome: Outcome) {
        guard::default_transaction_outcome(self.0, outcome);
    }
    pub(crate) fn integration_failed(&self) {
        guard::transaction_failed_by_integration(self.0);
    }
    pub(crate) fn set_request(&self, request: crate::web::Request) {
        guard::set_transaction_request(self.0, request);
    }
    pub(crate) fn set_response(&self, response: crate::web::Response) {
        guard::set_transaction_response(self.0, response);
    }
    pub(crate) fn set_name(&self, name: Cow<'static, str>) {
        guard::set_transaction_name(self.0, name);
    }
    pub(crate) fn set_result(&self, result: Cow<'static, str>) {
        guard::set_transaction_result(self.0, result);
    }
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        guard::set_transaction_outcome(self.0, outcome);
    }
    pub(crate) fn set_label(&self, key: Cow<'static, str>, value: LabelValue) {
        guard::set_transaction_label(self.0, key, value);
    }
}

pub(crate) fn with_current_transaction(f: impl FnOnce(&CurrentTransaction<'_>)) {
    // Clone out first: `f` must not run while the context stack is borrowed.
    if let Some((txn, _)) = context::snapshot() {
        f(&CurrentTransaction(&txn));
    }
}

/// A captured context: a transaction and the id under which new children open.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context(Option<(Arc<TxnShared>, u64)>);

impl Context {
    pub(crate) fn current() -> Self {
        Context(context::snapshot())
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    /// Writes `traceparent` (and `tracestate` when there is one) for a call made in this
    /// context.
    pub(crate) fn inject(&self, sink: &mut dyn HeaderSink) {
        if let Some((t, parent)) = &self.0 {
            inject(t, *parent, sink);
        }
    }

    pub(crate) fn attach(&self) -> ContextGuard {
        ContextGuard(
            self.0.as_ref().and_then(|(t, parent)| {
                // A context carried here: the time of children started in it is not counted.
                context::push_owner(Arc::clone(t), *parent, ChildTimer::default(), false)
            }),
            PhantomData,
        )
    }
}

/// The propagation headers of a call from `parent` (a span or transaction id) in `txn`.
pub(crate) fn inject(txn: &TxnShared, parent: u64, sink: &mut dyn HeaderSink) {
    sink.set_header(
        propagation::TRACEPARENT,
        &propagation::format_traceparent(txn.trace_id, parent, txn.sampled),
    );
    if let Some(state) = &txn.tracestate {
        sink.set_header(propagation::TRACESTATE, state);
    }
}

/// A transaction handle for code that drives futures (web frameworks): not entered anywhere;
/// [`Transaction::bind`] runs a future inside it and ends it when the future completes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transaction(Option<Arc<TxnShared>>);

impl Transaction {
    pub(crate) fn start(
        name: Cow<'static, str>,
        kind: Cow<'static, str>,
        headers: Option<&dyn HeaderSource>,
    ) -> Self {
        Transaction(guard::open_transaction(
            TransactionName::Dynamic(name, kind),
            headers,
        ))
    }
    pub(crate) fn bind<F: Future>(&self, fut: F) -> Instrumented<F> {
        let frame = match &self.0 {
            Some(t) => Frame(FrameInner::Transaction(Arc::clone(t))),
            None => Frame::EMPTY,
        };
        bind(fut, frame)
    }
    /// Like [`Transaction::bind`], but the transaction stays open when `fut` completes,
    /// until [`Instrumented::take_pending_end`]'s result is dropped.
    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn bind_until_handed_over<F: Future>(&self, fut: F) -> Instrumented<F> {
        let mut bound = self.bind(fut);
        bound.state.defer_end = true;
        bound
    }
    pub(crate) fn end(&self) {
        if let Some(t) = &self.0 {
            guard::end_transaction(t, None, None, Outcome::Unknown);
        }
    }
    pub(crate) fn context(&self) -> Context {
        Context(self.0.as_ref().map(|t| (Arc::clone(t), t.id)))
    }
    pub(crate) fn with(&self, f: impl FnOnce(&CurrentTransaction<'_>)) {
        if let Some(t) = &self.0 {
            f(&CurrentTransaction(t));
        }
    }
    pub(crate) fn is_sampled(&self) -> bool {
        self.0.as_ref().is_some_and(|t| t.sampled)
    }
    pub(crate) fn trace_id(&self) -> Option<String> {
        self.0.as_ref().map(|t| ids::hex128(t.trace_id))
    }
    pub(crate) fn id(&self) -> Option<String> {
        self.0.as_ref().map(|t| ids::hex64(t.id))
    }
}

#[derive(Debug)]
pub(crate) struct ContextGuard(Option<Token>, NotSend);

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(token) = self.0 {
            context::pop(token, None);
        }
    }
}

/// What an instrumented future carries: the span or transaction it times, or a context it
/// runs inside.
#[derive(Debug)]
pub struct Frame(FrameInner);

#[derive(Debug)]
enum FrameInner {
    Empty,
    Span(ActiveSpan),
    Transaction(Arc<TxnShared>),
    Context(Arc<TxnShared>, u64),
}

impl Frame {
    const EMPTY: Frame = Frame(FrameInner::Empty);

    pub(crate) fn from_context(ctx: Context) -> Frame {
        match ctx.0 {
            Some((t, parent)) => Frame(FrameInner::Context(t, parent)),
            None => Frame::EMPTY,
        }
    }

    fn current(&self) -> Option<(Arc<TxnShared>, u64)> {
        use FrameInner as Frame;
        match &self.0 {
            Frame::Empty => None,
            Frame::Span(s) => Some((Arc::clone(s.transaction()), s.rec.id)),
            Frame::Transaction(t) => Some((Arc::clone(t), t.id)),
            Frame::Context(t, parent) => Some((Arc::clone(t), *parent)),
        }
    }

    fn finish(&mut self, outcome: Outcome, timer: &ChildTimer) {
        use FrameInner as Frame;
        match std::mem::replace(&mut self.0, Frame::Empty) {
            Frame::Span(mut s) => {
                s.default_outcome(outcome);
                s.end_beside(timer);
            }
            Frame::Transaction(t) => guard::end_transaction(&t, None, Some(timer), outcome),
            Frame::Empty | Frame::Context(..) => {}
        }
    }
}

/// Decides an outcome from a future's output.
pub trait OutcomeHook<O> {
    fn outcome(self, output: &O) -> Outcome;
}

/// The hook of futures whose output does not decide the outcome.
#[derive(Debug, Clone, Copy)]
pub struct NoHook;

impl<O> OutcomeHook<O> for NoHook {
    #[inline]
    fn outcome(self, _output: &O) -> Outcome {
        Outcome::Unknown
    }
}

impl<O, C: FnOnce(&O) -> Outcome> OutcomeHook<O> for C {
    #[inline]
    fn outcome(self, output: &O) -> Outcome {
        self(output)
    }
}

/// A frame made current for the length of each poll, and what it keeps between polls.
#[derive(Debug)]
struct FrameState<H = NoHook> {
    frame: Frame,
    /// Decides the outcome from the future's output.
    hook: Option<H>,
    /// Entries opened in an earlier poll and still open (a guard held across `.await`).
    parked: Vec<Entry>,
    /// Time the frame's children ran, kept between polls.
    timer: ChildTimer,
    /// A poll panicked: the frame ends as a failure even if the panic is caught.
    unwound: bool,
    /// The frame outlives the future's completion: [`Instrumented::take_pending_end`] hands
    /// it over (an HTTP server's transaction, which ends with the response's body).
    defer_end: bool,
}

impl<H> FrameState<H> {
    fn new(frame: Frame, hook: Option<H>) -> FrameState<H> {
        FrameState {
            frame,
            hook,
            parked: Vec::new(),
            timer: ChildTimer::default(),
            unwound: false,
            defer_end: false,
        }
    }

    /// Runs `poll` with the frame current on this thread.
    #[inline]
    fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        match self.frame.current().and_then(|(txn, id)| {
            let own_timer = !matches!(self.frame.0, FrameInner::Context(..));
            context::push_owner(txn, id, self.timer, own_timer)
        }) {
            None => poll(),
            Some(token) => {
                context::restore(&mut self.parked);
                let _scope = PollScope {
                    token,
                    parked: &mut self.parked,
                    timer: &mut self.timer,
                    unwound: &mut self.unwound,
                };
                poll()
            }
        }
    }

    /// Ends the frame's span or transaction, if it has not ended (`outcome` unless one was
    /// set; a failure after a poll that panicked).
    fn finish(&mut self, outcome: Outcome) {
        let outcome = if self.unwound {
            Outcome::Failure
        } else {
            outcome
        };
        self.frame.finish(outcome, &self.timer);
    }
}

/// A future that makes its frame current during each of its polls and ends it when it
/// completes (or is dropped). Nothing is held across the polls on the thread.
#[derive(Debug)]
pub struct Instrumented<F, H = NoHook> {
    fut: F,
    state: FrameState<H>,
}

impl<F, H> Instrumented<F, H> {
    pub(crate) fn with_hook(fut: F, frame: Frame, hook: H) -> Self {
        Instrumented {
            fut,
            state: FrameState::new(frame, Some(hook)),
        }
    }

    /// After the future completed (bound with [`Transaction::bind_until_handed_over`]): its
    /// transaction, still open, to be ended by what follows the future.
    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn take_pending_end(self: Pin<&mut Self>) -> PendingEnd {
        debug_assert!(
            self.state.defer_end && self.state.hook.is_none(),
            "only a future bound until handed over, once completed, hands its transaction over"
        );
        // SAFETY: only the frame's state is moved, never the pinned `fut`.
        let state = unsafe { &mut self.get_unchecked_mut().state };
        PendingEnd(FrameState {
            frame: std::mem::replace(&mut state.frame, Frame::EMPTY),
            hook: None,
            parked: std::mem::take(&mut state.parked),
            timer: state.timer,
            unwound: state.unwound,
            defer_end: false,
        })
    }
}

/// A transaction whose future has completed and whose end waits for what follows it (an HTTP
/// response's body): makes it current while that is polled, and ends it when dropped.
#[derive(Debug)]
pub(crate) struct PendingEnd(FrameState);

impl PendingEnd {
    /// Runs `poll` with the transaction current on this thread.
    #[allow(dead_code)] // used by the optional server integrations
    #[inline]
    pub(crate) fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        self.0.run(poll)
    }

    /// Ends the transaction now.
    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn end(self) {}
}

impl Drop for PendingEnd {
    fn drop(&mut self) {
        self.0.finish(Outcome::Unknown);
    }
}

/// Wraps `fut` so that it runs inside `frame` (used by `Context::bind`).
pub(crate) fn bind<F: Future>(fut: F, frame: Frame) -> Instrumented<F> {
    Instrumented::with_hook(fut, frame, NoHook)
}

/// Leaves the frame when a poll returns or unwinds, keeping what is still open above it.
struct PollScope<'a> {
    token: Token,
    parked: &'a mut Vec<Entry>,
    timer: &'a mut ChildTimer,
    unwound: &'a mut bool,
}

impl Drop for PollScope<'_> {
    fn drop(&mut self) {
        let (parked, timer) = context::leave(self.token);
        *self.parked = parked;
        if let Some(t) = timer {
            *self.timer = t;
        }
        if std::thread::panicking() {
            *self.unwound = true;
        }
    }
}

impl<F: Future, H: OutcomeHook<F::Output>> Future for Instrumented<F, H> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved, and `Drop` does not touch
        // it. The other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        let poll = this.state.run(|| fut.poll(cx));
        if let Poll::Ready(out) = &poll {
            let outcome = this
                .state
                .hook
                .take()
                .map_or(Outcome::Unknown, |h| h.outcome(out));
            if !this.state.defer_end {
                this.state.finish(outcome);
            }
        }
        poll
    }
}

impl<F, H> Drop for Instrumented<F, H> {
    fn drop(&mut self) {
        // Dropped before completion (cancelled, or after a poll that panicked), or completed
        // with its end deferred and never handed over.
        self.state.finish(Outcome::Unknown);
    }
}

/// What generated code calls (re-exported by `__private`).
pub(crate) mod private {
    use super::*;
    use crate::__private::{Site, SpanMeta, TransactionMeta};

    pub use super::{Frame, Instrumented, NoHook, OutcomeHook};

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
        let end = crate::clock::now();
        let outcome = if std::thread::panicking() {
            Outcome::Failure
        } else if outcome == Outcome::Unknown {
            Outcome::Success
        } else {
            outcome
        };
        context::exit_static_span(token, end, outcome);
    }

    /// The recording path, kept out of the instrumented function: inlined, it made every
    /// call save and restore registers and reserve stack, even with the agent off.
    #[inline(never)]
    fn open_static_span(meta: &'static SpanMeta) -> Option<Token> {
        context::enter_static_span(meta, crate::clock::now())
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

    #[inline]
    pub fn enter_span(meta: &'static SpanMeta) -> Guard {
        // The common "nothing to record" cases (agent off, unsampled, no transaction) cost
        // one load and one thread-local read, whatever the compiler decides about inlining
        // the rest.
        if !crate::tracer::is_active() || !context::may_record_spans() {
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

    #[inline]
    pub fn enter_transaction(meta: &'static TransactionMeta) -> Guard {
        Guard(Some(GuardInner::Transaction(TransactionGuard::open(
            guard::transaction_name(meta),
            None,
        ))))
    }

    /// `#[apm::transaction(headers = ..)]`: continues the trace of the incoming headers.
    #[inline]
    pub fn enter_transaction_with(
        meta: &'static TransactionMeta,
        headers: &dyn HeaderSource,
    ) -> Guard {
        Guard(Some(GuardInner::Transaction(TransactionGuard::open(
            guard::transaction_name(meta),
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
        let Some((span, _)) = guard::open_span(guard::static_span_name(meta), guard::Mode::Beside)
        else {
            return Frame::EMPTY;
        };
        Frame(FrameInner::Span(span))
    }

    /// Starts a transaction for a future.
    #[inline]
    pub fn start_transaction(meta: &'static TransactionMeta) -> Frame {
        transaction_frame(meta, None)
    }

    /// A future's transaction continuing the trace of the incoming headers.
    #[inline]
    pub fn start_transaction_with(
        meta: &'static TransactionMeta,
        headers: &dyn HeaderSource,
    ) -> Frame {
        transaction_frame(meta, Some(headers))
    }

    fn transaction_frame(
        meta: &'static TransactionMeta,
        headers: Option<&dyn HeaderSource>,
    ) -> Frame {
        match guard::open_transaction(guard::transaction_name(meta), headers) {
            Some(t) => Frame(FrameInner::Transaction(t)),
            None => Frame::EMPTY,
        }
    }

    /// The outcome hook of futures whose output does not decide it.
    #[inline]
    pub fn no_outcome<T: ?Sized>(_output: &T) -> Outcome {
        Outcome::Unknown
    }

    impl<F: Future, H: FnOnce(&F::Output) -> Outcome> Instrumented<F, H> {
        #[inline]
        pub fn new(fut: F, frame: Frame, hook: H) -> Self {
            Instrumented::with_hook(fut, frame, hook)
        }
    }

    #[inline]
    pub fn capture_error(
        err: &dyn std::error::Error,
        type_name: &'static str,
        site: &'static Site,
    ) {
        crate::error::capture(err, type_name, site);
    }
}
