//! Starting and ending transactions and spans: the hot path.
//!
//! A span's whole record lives in its guard (on the caller's stack) until it ends; ending it
//! appends the record to this thread's buffer. No lock, no allocation for static names, no
//! I/O, no formatting; nothing here can panic into the application.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::__private::{SpanMeta, TransactionMeta};
use crate::clock::Tick;
use crate::context::{self, ChildTimer, Token};
use crate::headers::HeaderSource;
use crate::propagation;
use crate::record::UNKNOWN_RATE;
use crate::record::{
    DynamicSpanName, Event, SpanName, SpanRecord, TransactionName, TransactionRecord,
};
use crate::span_context::SpanExtra;
use crate::tracer::{self, Tracer, TxnShared, TxnState};
use crate::{buffer, clock, ids, LabelValue, Outcome};

/// A span being recorded.
#[derive(Debug)]
pub(crate) struct ActiveSpan {
    pub(crate) rec: SpanRecord,
    /// The outcome was set explicitly (even to `unknown`, e.g. a cancelled call); otherwise
    /// it is derived when the span ends.
    outcome_set: bool,
    /// Its transaction: where the span, or a child of it that ended elsewhere, tells its
    /// parent about an end the parent did not see (breakdown metrics).
    txn: Arc<TxnShared>,
    /// Opened beside the stack and counted as running by its parent, which must hear of its
    /// end.
    counted_by_parent: bool,
}

/// Opens a span under the current transaction/span. `None` when there is nothing to record:
/// agent off, no current transaction, unsampled, or over `transaction_max_spans`.
/// How a new span relates to this thread's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pushed: current on this thread until it ends (guards).
    Enter,
    /// Not on the stack: carried by a future that enters it on each poll, or a handle for a
    /// call whose progress happens elsewhere (an HTTP client's request awaited in a task).
    /// Counted in its parent's child time from its start to its end when it starts where the
    /// parent's own entry is current (it may end anywhere).
    Beside,
}

#[inline]
pub(crate) fn open_span(name: SpanName, mode: Mode) -> Option<(ActiveSpan, Option<Token>)> {
    if !tracer::is_active() || !context::may_record_spans() {
        return None;
    }
    let decide = |txn: &Arc<TxnShared>, parent: u64| {
        let id = ids::next_u64();
        (id, (Arc::clone(txn), parent, id))
    };
    let start = clock::now();
    let (slot, (txn, parent_id, id)) = if mode == Mode::Enter {
        let (slot, ctx) = context::push_child(start, decide)?;
        (Some(slot), ctx)
    } else {
        let (_, ctx) = context::with_current(|txn, parent| {
            (txn.sampled && txn.reserve_span()).then(|| decide(txn, parent))
        })
        .flatten()?;
        (None, ctx)
    };
    // The current entry is the parent: it counts the child if it is the span or transaction
    // itself.
    let counted_by_parent = mode == Mode::Beside && context::child_started_here(parent_id, start);
    Some((
        ActiveSpan {
            outcome_set: false,
            rec: SpanRecord {
                trace_id: txn.trace_id,
                transaction_id: txn.id,
                parent_id,
                id,
                name,
                start,
                end: start,
                sample_rate: txn.sample_rate,
                outcome: Outcome::Unknown,
                extra: None,
                child_ns: 0,
            },
            txn,
            counted_by_parent,
        },
        slot,
    ))
}

impl ActiveSpan {
    /// The transaction the span belongs to.
    #[inline]
    pub(crate) fn transaction(&self) -> &Arc<TxnShared> {
        &self.txn
    }

    /// Ends the span opened on the stack with `token`: the outcome is failure while a panic
    /// unwinds, success if none was set.
    #[inline]
    pub(crate) fn end(self, token: Token) {
        let end = clock::now();
        let timer = context::pop(token, Some(end)).unwrap_or_default();
        self.finish(end, timer);
    }

    /// Ends a span opened beside the stack, whose own children ran for `timer`.
    pub(crate) fn end_beside(self, timer: &ChildTimer) {
        let end = clock::now();
        if self.counted_by_parent && !context::child_ended_under(self.rec.parent_id, end) {
            self.txn.child_ended_elsewhere(self.rec.parent_id, end);
        }
        self.finish(end, *timer);
    }

    #[inline]
    fn finish(mut self, end: Tick, mut timer: ChildTimer) {
        timer.settle(&self.txn, self.rec.id);
        let timer = &timer;
        self.rec.end = end;
        self.rec.child_ns = timer.busy_until(end);
        self.rec.outcome = if std::thread::panicking() || timer.errored && !self.outcome_set {
            Outcome::Failure
        } else if self.rec.outcome == Outcome::Unknown && !self.outcome_set {
            Outcome::Success
        } else {
            self.rec.outcome
        };
        buffer::push(Event::Span(self.rec));
    }

    /// An explicit outcome (the application's or an integration's): kept as set.
    #[inline]
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.rec.outcome = outcome;
        self.outcome_set = true;
    }

    /// An outcome derived by instrumentation (a `Result`, a future's end), unless one was
    /// set explicitly.
    #[inline]
    pub(crate) fn default_outcome(&mut self, outcome: Outcome) {
        if !self.outcome_set {
            self.rec.outcome = outcome;
        }
    }

    /// The span's optional parts, created on first use.
    pub(crate) fn extra(&mut self) -> &mut SpanExtra {
        self.rec.extra.get_or_insert_with(Default::default)
    }

    pub(crate) fn set_label(&mut self, key: Cow<'static, str>, value: LabelValue) {
        self.extra().labels.push((key, value));
    }
    pub(crate) fn set_subtype(&mut self, subtype: Cow<'static, str>) {
        self.rec.name.make_dynamic().subtype = Some(subtype);
    }
    pub(crate) fn set_action(&mut self, action: Cow<'static, str>) {
        self.rec.name.make_dynamic().action = Some(action);
    }
}

#[inline]
fn final_outcome(set: Outcome) -> Outcome {
    if std::thread::panicking() {
        Outcome::Failure
    } else if set == Outcome::Unknown {
        Outcome::Success
    } else {
        set
    }
}

pub(crate) fn dynamic_span_name(name: Cow<'static, str>, kind: Cow<'static, str>) -> SpanName {
    SpanName::Dynamic(Box::new(DynamicSpanName {
        name,
        kind,
        subtype: None,
        action: None,
    }))
}

pub(crate) fn static_span_name(meta: &'static SpanMeta) -> SpanName {
    SpanName::Static(meta)
}

/// Where a new transaction's trace comes from.
struct Origin {
    trace_id: u128,
    parent_id: Option<u64>,
    sampled: bool,
    sample_rate: u16,
    tracestate: Option<Arc<str>>,
    links: Vec<(u128, u64)>,
}

/// A new root: our sampling decision, our rate in the `es` tracestate entry (other vendors'
/// entries of a restarted trace kept).
fn root(t: &Tracer, others: &str, links: Vec<(u128, u64)>) -> Origin {
    let (sampled, rate) = t.sample();
    Origin {
        trace_id: ids::next_u128(),
        parent_id: None,
        sampled,
        sample_rate: rate,
        tracestate: if others.is_empty() {
            es_entry(rate)
        } else {
            propagation::format_tracestate(Some(f64::from(rate) / 10_000.0), others).map(Into::into)
        },
        links,
    }
}

/// `es=s:<rate>`, formatted once per thread and rate (formatting it per transaction cost more
/// than the rest of starting one).
fn es_entry(rate: u16) -> Option<Arc<str>> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u16, Arc<str>)>> = const { std::cell::RefCell::new(None) };
    }
    let make = || propagation::format_tracestate(Some(f64::from(rate) / 10_000.0), "");
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        match &*last {
            Some((r, s)) if *r == rate => Some(Arc::clone(s)),
            _ => {
                let s: Arc<str> = make()?.into();
                *last = Some((rate, Arc::clone(&s)));
                Some(s)
            }
        }
    })
    .ok()
    .flatten()
    .or_else(|| make().map(Into::into))
}

/// The trace context of incoming `headers`, per `trace_continuation_strategy`
/// (specs/agents/trace-continuation.md): continue it, or restart with a span link to it
/// (`restart`; `restart_external` only when the caller is not an Elastic agent, i.e. sent no
/// `es` tracestate entry).
fn from_headers(t: &Tracer, headers: &dyn HeaderSource) -> Origin {
    let Some(parent) = propagation::find_traceparent(headers) else {
        return root(t, "", Vec::new());
    };
    let state = propagation::find_tracestate(headers).unwrap_or_default();
    let restart = match t.live.continuation.load(Relaxed) {
        1 => true,
        2 => !state.has_es,
        _ => false,
    };
    if restart {
        return root(t, &state.others, vec![(parent.trace_id, parent.parent_id)]);
    }
    let sample_rate = match (parent.sampled, state.sample_rate) {
        (false, _) => 0,
        (true, Some(r)) => tracer::rate_to_fixed(r) as u16,
        (true, None) => UNKNOWN_RATE,
    };
    Origin {
        trace_id: parent.trace_id,
        parent_id: Some(parent.parent_id),
        sampled: parent.sampled,
        sample_rate,
        // Downstream the upstream's entries travel on as received; we never write `es` here.
        tracestate: propagation::format_tracestate_raw(&state).map(Into::into),
        links: Vec::new(),
    }
}

/// Starts a transaction: the continuation of the trace in `headers` when given; else a child
/// of the current context when there is one (same trace and sampling decision); otherwise the
/// root of a new trace sampled at the current rate.
pub(crate) fn open_transaction(
    name: TransactionName,
    headers: Option<&dyn HeaderSource>,
) -> Option<Arc<TxnShared>> {
    if !tracer::is_active() {
        return None;
    }
    let t = tracer::get()?;
    let origin = match headers {
        Some(h) => from_headers(t, h),
        None => context::with_current(|txn, parent| Origin {
            trace_id: txn.trace_id,
            parent_id: Some(parent),
            sampled: txn.sampled,
            sample_rate: txn.sample_rate,
            tracestate: txn.tracestate.clone(),
            links: Vec::new(),
        })
        .unwrap_or_else(|| root(t, "", Vec::new())),
    };
    Some(Arc::new(TxnShared {
        trace_id: origin.trace_id,
        id: ids::next_u64(),
        parent_id: origin.parent_id,
        sampled: origin.sampled,
        sample_rate: origin.sample_rate,
        max_spans: t.live.max_spans.load(Relaxed),
        started: Default::default(),
        dropped: Default::default(),
        tracestate: origin.tracestate,
        links: origin.links,
        start: clock::now(),
        errored: Default::default(),
        children_ended_elsewhere: Mutex::new(Vec::new()),
        children_ended_elsewhere_count: Default::default(),
        state: Mutex::new(TxnState {
            name,
            result: None,
            outcome: None,
            integration_outcome: None,
            labels: Vec::new(),
            request: None,
            response: None,
            ended: false,
        }),
    }))
}

pub(crate) fn transaction_name(meta: &'static TransactionMeta) -> TransactionName {
    TransactionName::Static(meta)
}

/// Ends a transaction (once; later calls do nothing). `fallback` is the outcome derived from
/// the instrumented function's return value, used unless one was set explicitly.
/// `token` is its entry on this thread's stack (sync), or `carried` the child timer of the
/// future that carried it.
pub(crate) fn end_transaction(
    txn: &TxnShared,
    token: Option<Token>,
    carried: Option<&ChildTimer>,
    fallback: Outcome,
) {
    let end = clock::now();
    // The entry below did not count the transaction as its child: it is not told of its end.
    let popped = token.and_then(|t| context::pop(t, None));
    if !txn.sampled && !tracer::get().is_some_and(|t| t.live.send_unsampled.load(Relaxed)) {
        // The server does not want it (8.0 and later): nothing to build or send.
        txn.state.lock().ended = true;
        return;
    }
    let mut timer = popped.or(carried.copied());
    if let Some(t) = &mut timer {
        t.settle(txn, txn.id);
    }
    let timer = timer.as_ref();
    let child_ns = timer.map_or(0, |t| t.busy_until(end));
    // Set wherever the transaction itself was current when an error was captured.
    let errored = txn.errored.load(Relaxed);
    let mut st = txn.state.lock();
    if st.ended {
        return;
    }
    st.ended = true;
    // The application's outcome as set (`unknown` included), else a failure if an error was
    // captured in the transaction itself, else the instrumentation's (e.g. from the HTTP
    // status), `unknown` there meaning nothing went wrong.
    let outcome = match st.outcome {
        _ if std::thread::panicking() => Outcome::Failure,
        Some(set) => set,
        None if errored => Outcome::Failure,
        None => final_outcome(st.integration_outcome.unwrap_or(fallback)),
    };
    let rec = TransactionRecord {
        trace_id: txn.trace_id,
        id: txn.id,
        parent_id: txn.parent_id,
        name: st.name.clone(),
        start: txn.start,
        end,
        sampled: txn.sampled,
        sample_rate: if txn.sampled { txn.sample_rate } else { 0 },
        result: st.result.take(),
        outcome,
        // Unsampled transactions carry no context.
        labels: if txn.sampled {
            std::mem::take(&mut st.labels)
        } else {
            Vec::new()
        },
        spans_started: txn.started.load(Relaxed).min(txn.max_spans),
        spans_dropped: txn.dropped.load(Relaxed),
        child_ns,
        request: if txn.sampled { st.request.take() } else { None },
        response: if txn.sampled {
            st.response.take()
        } else {
            None
        },
        links: txn
            .links
            .iter()
            .map(|&(trace, span)| crate::model::Link::new(trace, span))
            .collect(),
    };
    drop(st);
    buffer::push(Event::Transaction(Box::new(rec)));
}

/// Mutations of a running transaction (manual API), through its shared state.
pub(crate) fn set_transaction_name(txn: &TxnShared, name: Cow<'static, str>) {
    let mut st = txn.state.lock();
    let kind = match &st.name {
        TransactionName::Static(m) => Cow::Borrowed(m.kind),
        TransactionName::Dynamic(_, k) => k.clone(),
    };
    st.name = TransactionName::Dynamic(name, kind);
}
pub(crate) fn set_transaction_request(txn: &TxnShared, request: crate::web::Request) {
    txn.state.lock().request = Some(Box::new(request));
}
pub(crate) fn set_transaction_response(txn: &TxnShared, response: crate::web::Response) {
    txn.state.lock().response = Some(Box::new(response));
}
pub(crate) fn set_transaction_result(txn: &TxnShared, result: Cow<'static, str>) {
    txn.state.lock().result = Some(result);
}
/// An integration's result, unless the application set one (the application's wins).
pub(crate) fn default_transaction_result(txn: &TxnShared, result: Cow<'static, str>) {
    txn.state.lock().result.get_or_insert(result);
}
/// An integration's outcome: the application's, or a captured error, win over it (specs:
/// outcome.feature).
pub(crate) fn default_transaction_outcome(txn: &TxnShared, outcome: Outcome) {
    txn.state.lock().integration_outcome.get_or_insert(outcome);
}
/// An integration saw the transaction fail (an error instead of a response, a panic): over
/// any outcome integrations derived, under the application's.
pub(crate) fn transaction_failed_by_integration(txn: &TxnShared) {
    txn.state.lock().integration_outcome = Some(Outcome::Failure);
}
pub(crate) fn set_transaction_outcome(txn: &TxnShared, outcome: Outcome) {
    txn.state.lock().outcome = Some(outcome);
}
pub(crate) fn set_transaction_label(txn: &TxnShared, key: Cow<'static, str>, value: LabelValue) {
    let mut st = txn.state.lock();
    if let Some(slot) = st.labels.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        st.labels.push((key, value));
    }
}
