//! The handles behind the public API's types: transaction and span guards, detached spans,
//! transactions driven by futures, captured contexts. `off.rs` has the same items with the
//! agent compiled out.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::future::{bind, Frame, Instrumented};
use super::propagation;
use super::shared::TxnShared;
use super::span::{self, ActiveSpan, Mode};
use super::stack::{self, ChildTimer, Token};
use super::transaction;
use crate::queue::tracer;
use crate::types::headers::{HeaderSink, HeaderSource};
use crate::types::ids;
use crate::types::outcome::{LabelValue, Outcome};
use crate::types::record::TransactionName;
#[cfg(feature = "tracing")]
use crate::types::span_context::Labels;
use crate::types::span_context::Link;
use crate::types::span_context::{Db, Destination, Message, SpanExtra, MAX_LINKS};
use crate::types::user::User;
use crate::types::{messaging, web};

/// Guards are `!Send`: an entry on a thread's context stack must be closed on that thread
/// (futures carry their context with `Instrumented` instead).
pub(super) type NotSend = PhantomData<*const ()>;

/// Manual transaction guard (also what `#[apm::transaction]` uses on sync functions).
#[derive(Debug)]
pub(crate) struct TransactionGuard {
    txn: Option<Arc<TxnShared>>,
    token: Option<Token>,
    /// Outcome derived from the function's return value; an explicit one wins.
    pub(super) fallback: Outcome,
    _not_send: NotSend,
}

impl TransactionGuard {
    /// Inlined into the public API's generic function, so that the name's parts are written
    /// straight into the transaction's name: passed by reference from there, they were read
    /// back 16 bytes at a time right after being stored 8 at a time, waiting for the stores.
    #[inline]
    pub(crate) fn start(
        name: Cow<'static, str>,
        kind: Cow<'static, str>,
        headers: Option<&dyn HeaderSource>,
    ) -> Self {
        Self::open(TransactionName::Dynamic(name, kind), headers)
    }

    #[inline]
    pub(super) fn open(name: TransactionName, headers: Option<&dyn HeaderSource>) -> Self {
        let txn = transaction::open_transaction(name, headers);
        // SAFETY: the guard keeps `txn` until its drop closes the entry with `token`
        // (`end_owned_transaction`, which never drops it where the entry may be left: a
        // stack it cannot reach, a forked child), and a guard cannot leave its thread.
        let token = txn
            .as_ref()
            .and_then(|t| unsafe { stack::push_lent_owner(t, t.id, ChildTimer::default()) });
        TransactionGuard {
            txn,
            token,
            fallback: Outcome::Unknown,
            _not_send: PhantomData,
        }
    }

    /// Runs `f` on the transaction, if one is recorded.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&CurrentTransaction<'_>) -> R) -> Option<R> {
        self.txn.as_deref().map(|t| f(&CurrentTransaction(t)))
    }
}

impl Drop for TransactionGuard {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            transaction::end_owned_transaction(t, self.token, self.fallback);
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
    /// Appends `labels` to the span's, moved (left empty); nothing when it records nothing.
    #[cfg(feature = "tracing")]
    pub(crate) fn add_labels(&mut self, labels: &mut Labels) {
        if let Some(s) = &mut self.0 {
            let own = &mut s.extra().labels;
            // Moved into a spare vector's room when it has enough (spare parts keep theirs).
            if own.is_empty() && own.capacity() < labels.len() {
                std::mem::swap(own, labels);
            } else {
                own.append(labels);
            }
        }
    }
    fn set_exit(&mut self) {
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
            let db = e.db.get_or_insert_with(Db::default);
            db.kind = Some(kind);
            db.instance = instance;
            db.statement = statement;
        }
    }
    pub(crate) fn set_db_user(&mut self, user: String) {
        if let Some(e) = self.extra() {
            e.db.get_or_insert_with(Db::default).user = Some(user);
        }
    }
    pub(crate) fn set_db_rows_affected(&mut self, rows: u64) {
        #[cfg(apm_sql)]
        if let Some(s) = &mut self.0 {
            if let crate::types::record::SpanName::Db(call) = &mut s.rec.name {
                call.rows = rows;
                return;
            }
        }
        if let Some(e) = self.extra() {
            e.db.get_or_insert_with(Db::default).rows_affected = Some(rows);
        }
    }
    pub(crate) fn set_db_link(&mut self, link: String) {
        if let Some(e) = self.extra() {
            e.db.get_or_insert_with(Db::default).link = Some(link);
        }
    }
    pub(crate) fn set_destination(&mut self, address: Option<String>, port: Option<u16>) {
        if let Some(e) = self.extra() {
            e.destination = Some(Destination { address, port });
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
    pub(crate) fn set_name(&mut self, name: Cow<'static, str>) {
        if let Some(s) = &mut self.0 {
            s.dynamic_name().name = name;
        }
    }
    /// Links to the span the `traceparent` of `headers` names; false when there is none that
    /// parses, or the span already has [`MAX_LINKS`] links.
    pub(crate) fn add_link(&mut self, headers: &dyn HeaderSource) -> bool {
        let Some(e) = self.extra() else { return false };
        if e.links.len() >= MAX_LINKS {
            return false;
        }
        let Some(parent) = propagation::find_traceparent(headers) else {
            return false;
        };
        e.links.push(Link {
            trace_id: parent.trace_id,
            span_id: parent.parent_id,
        });
        true
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
                inject(s.transaction(), s.rec.id, sink);
                s.propagated();
            }
            None => Context::current().inject(sink),
        }
    }
}

/// Manual span guard: current on this thread until dropped.
#[derive(Debug)]
pub(crate) struct SpanGuard {
    core: SpanCore,
    token: Option<Token>,
    _not_send: NotSend,
}

impl SpanGuard {
    pub(crate) fn start(name: Cow<'static, str>, kind: Cow<'static, str>) -> Self {
        Self::opened(span::open_span(
            span::dynamic_span_name(name, kind),
            Mode::Enter,
        ))
    }

    /// The guard of what [`span::open_span`] opened, in [`Mode::Enter`].
    #[inline]
    pub(super) fn opened(opened: Option<(ActiveSpan, Option<Token>)>) -> Self {
        match opened {
            Some((span, token)) => SpanGuard {
                core: SpanCore(Some(span)),
                token,
                _not_send: PhantomData,
            },
            None => SpanGuard::default(),
        }
    }

    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.core
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.core
    }
    /// An exit span, current on this thread: a leaf, under which no span is recorded.
    pub(crate) fn set_exit(&mut self) {
        if self.core.is_recording() {
            self.core.set_exit();
            if let Some(token) = self.token {
                stack::mark_leaf(token);
            }
        }
    }
}

impl Default for SpanGuard {
    /// Records nothing.
    fn default() -> Self {
        SpanGuard {
            core: SpanCore(None),
            token: None,
            _not_send: PhantomData,
        }
    }
}

impl Drop for SpanGuard {
    #[inline]
    fn drop(&mut self) {
        ActiveSpan::end_in(&mut self.core.0, self.token, &ChildTimer::default());
    }
}

/// Whether a span started on this thread now would be recorded (integrations check it before
/// building a span's name, so that unsampled calls allocate nothing).
#[cfg(any(apm_client, feature = "tracing"))]
#[inline]
pub(crate) fn spans_recorded_here() -> bool {
    crate::queue::tracer::is_active() && stack::may_record_spans()
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
        Self::opened(span::open_span(
            span::dynamic_span_name(name, kind),
            Mode::Beside,
        ))
    }

    /// The handle of what [`span::open_span`] opened, in [`Mode::Beside`].
    #[inline]
    pub(super) fn opened(opened: Option<(ActiveSpan, Option<Token>)>) -> Self {
        Span {
            core: SpanCore(opened.map(|(s, _)| s)),
        }
    }
    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.core
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.core
    }
    /// An exit span (never current: nothing opens under it anyway).
    pub(crate) fn set_exit(&mut self) {
        self.core.set_exit();
    }
    /// Starts, in this empty handle, a span named by a static description (no allocation for
    /// its name), built where the handle lies; `false` when it records nothing.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(super) fn start_static_in(&mut self, meta: &'static crate::types::meta::SpanMeta) -> bool {
        span::open_span_in(span::static_span_name(meta), &mut self.core.0)
    }
    /// Its transaction and id, while recording.
    #[cfg(feature = "opentelemetry")]
    pub(super) fn frame(&self) -> Option<(Arc<TxnShared>, u64)> {
        self.core
            .0
            .as_ref()
            .map(|s| (Arc::clone(s.transaction()), s.rec.id))
    }
    /// Its transaction, while recording.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(super) fn transaction(&self) -> Option<&Arc<TxnShared>> {
        self.core.0.as_ref().map(ActiveSpan::transaction)
    }
    /// Its id, while recording.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(super) fn id_if_recording(&self) -> Option<u64> {
        self.core.0.as_ref().map(|s| s.rec.id)
    }
    /// The span being recorded, for the OpenTelemetry bridge's setters.
    #[cfg(feature = "opentelemetry")]
    pub(super) fn active(&mut self) -> Option<&mut span::ActiveSpan> {
        self.core.0.as_mut()
    }
    /// Renames the span.
    #[cfg(apm_bridge)]
    pub(super) fn rename(&mut self, name: Cow<'static, str>) {
        if let Some(s) = &mut self.core.0 {
            s.dynamic_name().name = name;
        }
    }
    /// Ends the span, whose own children ran for `timer`; the handle is left empty (where it
    /// lies: a bridge's table ends its spans in place).
    #[cfg(apm_bridge)]
    pub(super) fn end_with(&mut self, timer: &ChildTimer) {
        ActiveSpan::end_in(&mut self.core.0, None, timer);
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        ActiveSpan::end_in(&mut self.core.0, None, &ChildTimer::default());
    }
}

/// A recorded transaction, as the public API's setters see it (whichever handle they came
/// through).
pub(crate) struct CurrentTransaction<'a>(&'a TxnShared);

impl CurrentTransaction<'_> {
    pub(crate) fn set_name(&self, name: Cow<'static, str>) {
        self.0.set_name(name);
    }
    pub(crate) fn set_result(&self, result: Cow<'static, str>) {
        self.0.set_result(result);
    }
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        self.0.set_outcome(outcome);
    }
    pub(crate) fn set_label(&self, key: Cow<'static, str>, value: LabelValue) {
        self.0.set_label(key, value);
    }
    pub(crate) fn set_user(&self, user: User) {
        self.0.set_user(user);
    }
    pub(crate) fn set_custom(&self, key: Cow<'static, str>, value: LabelValue) {
        self.0.set_custom(key, value);
    }
    pub(crate) fn set_request(&self, request: web::Request) {
        self.0.set_request(request);
    }
    pub(crate) fn set_response(&self, response: web::Response) {
        self.0.set_response(response);
    }
    #[cfg(apm_server)]
    pub(crate) fn set_request_with(&self, write: impl FnOnce(&mut web::Request)) {
        self.0.set_request_with(write);
    }
    #[cfg(apm_server)]
    pub(crate) fn set_response_with(&self, write: impl FnOnce(&mut web::Response)) {
        self.0.set_response_with(write);
    }
    pub(crate) fn set_message(&self, message: messaging::Message) {
        self.0.set_message(message);
    }
    #[cfg(apm_server)]
    pub(crate) fn default_result(&self, result: Cow<'static, str>) {
        self.0.default_result(result);
    }
    #[cfg(apm_server)]
    pub(crate) fn default_outcome(&self, outcome: Outcome) {
        self.0.default_outcome(outcome);
    }
    #[cfg(apm_server)]
    pub(crate) fn integration_failed(&self) {
        self.0.integration_failed();
    }
    pub(crate) fn is_sampled(&self) -> bool {
        self.0.sampled
    }
    pub(crate) fn trace_id(&self) -> String {
        ids::hex128(self.0.trace_id)
    }
    pub(crate) fn id(&self) -> String {
        ids::hex64(self.0.id)
    }
}

/// Runs `f` on the transaction current on this thread (or in this future), if any.
pub(crate) fn with_current_transaction(f: impl FnOnce(&CurrentTransaction<'_>)) {
    // Clone out first: `f` must not run while the context stack is borrowed.
    if let Some((txn, _)) = stack::snapshot() {
        f(&CurrentTransaction(&txn));
    }
}

/// The trace, transaction and span ids current here (`None` for the span when the
/// transaction itself is current).
pub(crate) fn current_ids() -> Option<(u128, u64, Option<u64>)> {
    stack::with_current(|t, parent| (t.trace_id, t.id, (parent != t.id).then_some(parent)))
}

/// A captured context: a transaction and the id under which new children open.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context(pub(super) Option<(Arc<TxnShared>, u64)>);

impl Context {
    pub(crate) fn current() -> Self {
        Context(stack::snapshot())
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
                stack::push_owner(Arc::clone(t), *parent, ChildTimer::default(), false)
            }),
            PhantomData,
        )
    }

    /// Wraps `fut` so that every poll of it runs inside this context.
    pub(crate) fn bind<F: Future>(self, fut: F) -> Instrumented<F> {
        bind(fut, Frame::from_context(self.0))
    }
}

/// The propagation headers of a call from `parent` (a span or transaction id) in `txn`; the
/// legacy `elastic-apm-traceparent` too unless `use_elastic_traceparent_header` is off.
fn inject(txn: &TxnShared, parent: u64, sink: &mut dyn HeaderSink) {
    let traceparent = propagation::format_traceparent(txn.trace_id, parent, txn.sampled);
    sink.set_header(propagation::TRACEPARENT, &traceparent);
    if tracer::get().is_none_or(|t| t.live.legacy_traceparent.load(Relaxed)) {
        sink.set_header(propagation::LEGACY_TRACEPARENT, &traceparent);
    }
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
        Transaction(transaction::open_transaction(
            TransactionName::Dynamic(name, kind),
            headers,
        ))
    }
    pub(crate) fn bind<F: Future>(&self, fut: F) -> Instrumented<F> {
        bind(fut, Frame::from_transaction(self.0.clone()))
    }
    /// Like [`Transaction::bind`], but the transaction stays open when `fut` completes,
    /// until [`Instrumented::take_pending_end`]'s result is dropped.
    #[cfg(apm_server)]
    pub(crate) fn bind_until_handed_over<F: Future>(&self, fut: F) -> Instrumented<F> {
        self.bind(fut).deferring_end()
    }
    pub(crate) fn end(&self) {
        if let Some(t) = &self.0 {
            transaction::end_transaction(t, None, None, Outcome::Unknown);
        }
    }
    /// [`Context::attach`] of [`Transaction::context`], without the context's own reference
    /// to the transaction (a server attaches its request's transaction on every request).
    #[cfg(apm_server)]
    pub(crate) fn attach(&self) -> ContextGuard {
        ContextGuard(
            self.0
                .as_ref()
                .and_then(|t| stack::push_owner(Arc::clone(t), t.id, ChildTimer::default(), false)),
            PhantomData,
        )
    }
    pub(crate) fn context(&self) -> Context {
        Context(self.0.as_ref().map(|t| (Arc::clone(t), t.id)))
    }
    /// Runs `f` on the transaction, if one is recorded.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&CurrentTransaction<'_>) -> R) -> Option<R> {
        self.0.as_deref().map(|t| f(&CurrentTransaction(t)))
    }
    /// The transaction itself, while recording.
    #[cfg(apm_bridge)]
    pub(super) fn shared(&self) -> Option<&Arc<TxnShared>> {
        self.0.as_ref()
    }
}

/// Keeps a context current on this thread; restores the previous one on drop.
#[derive(Debug)]
pub(crate) struct ContextGuard(Option<Token>, NotSend);

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(token) = self.0 {
            stack::pop(token, None);
        }
    }
}
