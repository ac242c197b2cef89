//! Starting a transaction (a new trace, a child of the current context, or the continuation
//! of incoming headers) and ending it into a record for the staging buffer.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::child_timer::ChildTimer;
use super::kept_ref;
use super::sampling::{self, Origin};
use super::shared::{TxnShared, TxnState};
use super::stack::{self, Token};
use crate::queue::{spare, staging, tracer};
use crate::types::clock::{self, Tick};
use crate::types::headers::HeaderSource;
use crate::types::ids;
use crate::types::meta::TransactionMeta;
use crate::types::outcome::Outcome;
use crate::types::record::{Event, TransactionExtras, TransactionName, TransactionRecord};
use crate::types::span_context::Link;

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
    spare::prefetch_next();
    // This thread's spare state (nothing else refers to it: checked again, without a locked
    // instruction; a state still shared is let go, and a new one made).
    let mut spare = SPARE.try_with(Cell::take).ok().flatten();
    let mut reused = spare.as_mut().and_then(only_reference);
    // Its `tracestate` is most likely the one a new root takes again: kept, not counted anew.
    let mut previous = reused.as_mut().and_then(|s| s.tracestate.take());
    let continued = match headers {
        Some(h) => Some(sampling::from_headers(t, h, previous.take())),
        None => stack::with_current(|txn, parent| Origin {
            trace_id: txn.trace_id,
            parent_id: Some(parent),
            sampled: txn.sampled,
            sample_rate: txn.sample_rate,
            tracestate: txn.tracestate.clone(),
            links: Vec::new(),
        }),
    };
    let max_spans = t.live.max_spans.load(Relaxed);
    match (reused, continued) {
        (Some(s), Some(origin)) => restart(s, origin, name, max_spans),
        // A new root into a reused state, the most common start: its origin is made where it
        // is written, not merged with the other cases' first (that copy read back, 16 bytes at
        // a time, what had just been stored 8 at a time, and waited for the stores).
        (Some(s), None) => restart(s, sampling::own_root(t, previous), name, max_spans),
        (None, continued) => {
            let origin = continued.unwrap_or_else(|| sampling::own_root(t, previous));
            return Some(Arc::new(TxnShared::new(origin, name, max_spans)));
        }
    }
    spare
}

thread_local! {
    /// The shared state of the last transaction ended on this thread, when nothing else held
    /// it any more: the next one started here reuses it rather than allocating (and later
    /// freeing) its own.
    static SPARE: Cell<Option<Arc<TxnShared>>> = const { Cell::new(None) };
}

/// The state itself when `txn` is its only reference: `Arc::get_mut` without its locked
/// instruction (it locks the weak count against a concurrent `Weak::upgrade`; a transaction's
/// state is never downgraded to a `Weak`, see [`TxnShared`]). That instruction waited for the
/// transaction's stores to drain, on every end.
#[inline]
fn only_reference(txn: &mut Arc<TxnShared>) -> Option<&mut TxnShared> {
    if Arc::strong_count(txn) != 1 {
        return None;
    }
    // The other references' drops (release decrements) happen before what follows.
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    // SAFETY: one strong reference, ours (borrowed mutably), and no weak one: no other thread
    // can reach the state or make a new reference to it while this borrow lasts.
    Some(unsafe { &mut *Arc::as_ptr(txn).cast_mut() })
}

/// Lets go of this thread's kept reference to the transaction's state (its last `async`
/// span's, `kept_ref.rs`) before looking whether anything else refers to it; looked for only
/// when something does.
#[inline]
fn release_kept(txn: &Arc<TxnShared>) {
    if Arc::strong_count(txn) != 1 {
        kept_ref::release(txn);
    }
}

/// [`TxnShared::new`], written in place into the state of an earlier transaction that nothing refers
/// to any more.
#[inline(always)]
fn restart(s: &mut TxnShared, origin: Origin, name: TransactionName, max_spans: u32) {
    // Named in full, without `..`: a field added to the state must be written here too.
    let TxnShared {
        trace_id,
        id,
        parent_id,
        sampled,
        sample_rate,
        max_spans: limit,
        started,
        dropped,
        tracestate,
        links,
        start,
        forks,
        errored,
        state,
        ended_elsewhere,
    } = s;
    *trace_id = origin.trace_id;
    *id = ids::next_u64();
    *parent_id = origin.parent_id;
    *sampled = origin.sampled;
    *sample_rate = origin.sample_rate;
    *limit = max_spans;
    *started.get_mut() = 0;
    *dropped.get_mut() = 0;
    *tracestate = origin.tracestate;
    // Most often there are none: the reused vector is emptied, keeping its room, rather than
    // an empty one copied over it (16 bytes read back at once from the stores of 8 that had
    // just written it: the read waited for them).
    if origin.links.is_empty() {
        links.clear();
    } else {
        *links = origin.links;
    }
    *start = clock::now();
    *forks = tracer::forks();
    *errored.get_mut() = false;
    state.get_mut().restart(name);
    ended_elsewhere.clear();
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
    if txn.forks != tracer::forks() {
        // Inherited through a fork: the parent ends and sends it (its lock may be held there).
        return;
    }
    let end = clock::now();
    // The entry below did not count the transaction as its child: it is not told of its end.
    let popped = token.and_then(|t| stack::pop(t, None));
    end_shared(txn, popped.or(carried.copied()), end, fallback);
}

/// Ends the transaction of a guard, which held `txn` and its entry `token` on this thread's
/// stack (an entry that borrows `txn`: see [`stack::push_lent_owner`]). When nothing else
/// refers to the transaction any more (no span or handle outlives it), its state is read
/// without its lock and kept for this thread's next transaction.
pub(crate) fn end_owned_transaction(
    mut txn: Arc<TxnShared>,
    token: Option<Token>,
    fallback: Outcome,
) {
    if txn.forks != tracer::forks() {
        // Inherited through a fork: the parent ends and sends it (its lock may be held there).
        // The child's stack was forgotten at the fork, its entries with it; were it not (its
        // stack borrowed then), the guard's entry would still borrow this reference: never
        // released, in the child only.
        if token.is_some() {
            std::mem::forget(txn);
        }
        return;
    }
    let end = clock::now();
    release_kept(&txn);
    let Some(token) = token else {
        return end_shared(&txn, None, end, fallback);
    };
    // The record is staged before the stack says the thread left its transaction, so that
    // what the thread staged is made visible to the transport once, with the record.
    let ended = stack::pop_then(token, |timer| {
        let Some(t) = only_reference(&mut txn) else {
            end_shared(&txn, timer, end, fallback);
            return false;
        };
        end_alone(t, timer, end, fallback);
        true
    });
    match ended {
        Some(true) => keep_for_reuse(txn),
        Some(false) => {}
        None => {
            // The stack is borrowed (a drop inside the agent's own stack code): the guard's
            // entry, which borrows this reference, may still be on it, so the reference is
            // never released.
            end_shared(&txn, None, end, fallback);
            std::mem::forget(txn);
        }
    }
}

/// Ends the transaction of a future (`#[apm::transaction]` on an `async fn`, a bound
/// transaction) when it completes or is dropped, outside its polls: `timer` is the future's
/// child timer. As [`end_owned_transaction`], the state is read without its lock and kept for
/// reuse when nothing else refers to it any more.
pub(crate) fn end_carried_transaction(
    mut txn: Arc<TxnShared>,
    timer: ChildTimer,
    fallback: Outcome,
) {
    if txn.forks != tracer::forks() {
        // Inherited through a fork: the parent ends and sends it (its lock may be held there).
        return;
    }
    let end = clock::now();
    release_kept(&txn);
    match only_reference(&mut txn) {
        Some(t) => {
            end_alone(t, Some(timer), end, fallback);
            keep_for_reuse(txn);
        }
        None => end_shared(&txn, Some(timer), end, fallback),
    }
}

/// Ends a transaction that nothing else refers to: its state is read without its lock. What
/// the record does not take stays in the state until the state is reused.
fn end_alone(t: &mut TxnShared, timer: Option<ChildTimer>, end: Tick, fallback: Outcome) {
    if !wanted(t) {
        return;
    }
    let mut timer = timer;
    if let Some(timer) = &mut timer {
        timer.settle(&t.ended_elsewhere, t.id);
    }
    let ending = Ending {
        end,
        child_ns: timer.map_or(0, |timer| timer.busy_until(end)),
        errored: *t.errored.get_mut(),
        fallback,
    };
    let head = Head::of(t);
    let links = std::mem::take(&mut t.links);
    let st = t.state.get_mut();
    if !st.ended {
        let rec = spare::filled(|rec| fill(rec, &head, links, st, &ending, true));
        // Written where it is staged: an event passed by value (112 bytes, of which the box
        // is 8) was copied twice on the way, the second copy waiting for the first's stores.
        staging::push_with(|| Event::Transaction(rec));
    }
}

/// Keeps the state of a transaction that ended alone for this thread's next one.
fn keep_for_reuse(txn: Arc<TxnShared>) {
    let _ = SPARE.try_with(|spare| spare.set(Some(txn)));
}

/// Whether the transaction is to be sent: not an unsampled one that the server does not want
/// (8.0 and later).
#[inline]
fn wanted(txn: &TxnShared) -> bool {
    txn.sampled || tracer::get().is_some_and(|t| t.live.send_unsampled.load(Relaxed))
}

/// Ends a transaction that other threads or handles may still refer to: under its lock.
fn end_shared(txn: &TxnShared, timer: Option<ChildTimer>, end: Tick, fallback: Outcome) {
    if !wanted(txn) {
        // The server does not want it: nothing to build or send.
        txn.state.lock().ended = true;
        return;
    }
    let mut timer = timer;
    if let Some(t) = &mut timer {
        t.settle(&txn.ended_elsewhere, txn.id);
    }
    let ending = Ending {
        end,
        child_ns: timer.map_or(0, |t| t.busy_until(end)),
        // Set wherever the transaction itself was current when an error was captured.
        errored: txn.errored.load(Relaxed),
        fallback,
    };
    let head = Head::of(txn);
    let mut st = txn.state.lock();
    if st.ended {
        return;
    }
    st.ended = true;
    let rec = spare::filled(|rec| fill(rec, &head, txn.links.clone(), &mut st, &ending, false));
    drop(st);
    staging::push_with(|| Event::Transaction(rec));
}

/// What a transaction's record takes from its shared state outside the lock.
struct Head {
    trace_id: u128,
    id: u64,
    parent_id: Option<u64>,
    start: Tick,
    sampled: bool,
    sample_rate: u16,
    spans_started: u32,
    spans_dropped: u32,
}

impl Head {
    #[inline]
    fn of(txn: &TxnShared) -> Head {
        Head {
            trace_id: txn.trace_id,
            id: txn.id,
            parent_id: txn.parent_id,
            start: txn.start,
            sampled: txn.sampled,
            sample_rate: if txn.sampled { txn.sample_rate } else { 0 },
            spans_started: txn.started.load(Relaxed).min(txn.max_spans),
            spans_dropped: txn.dropped.load(Relaxed),
        }
    }
}

/// How a transaction ended.
struct Ending {
    end: Tick,
    /// Time during which its children ran.
    child_ns: u64,
    /// An error was captured where the transaction itself was current.
    errored: bool,
    /// The outcome the instrumentation derived (e.g. from the HTTP status).
    fallback: Outcome,
}

/// Writes the end record of a transaction into `rec`, in place, taking what `st` holds.
/// Every field is written (what `rec` held before is dropped), but the box of its rarer parts,
/// written only when this transaction has some and otherwise left unread (`extras_used`
/// says which). `alone`: nothing else refers to the transaction any more, so its name is
/// moved rather than copied.
#[inline]
fn fill(
    rec: &mut TransactionRecord,
    head: &Head,
    links: Vec<Link>,
    st: &mut TxnState,
    ending: &Ending,
    alone: bool,
) {
    // The application's outcome as set (`unknown` included), else a failure if an error was
    // captured in the transaction itself, else the instrumentation's (e.g. from the HTTP
    // status), `unknown` there meaning nothing went wrong.
    let outcome = match st.outcome {
        _ if std::thread::panicking() => Outcome::Failure,
        Some(set) => set,
        None if ending.errored => Outcome::Failure,
        None => final_outcome(st.integration_outcome.unwrap_or(ending.fallback)),
    };
    // Unsampled transactions carry no context.
    let sampled = head.sampled;
    // Named in full, without `..`: a field added to the record must be written here too.
    let TransactionRecord {
        trace_id,
        id,
        parent_id,
        name,
        start,
        end,
        sampled: rec_sampled,
        sample_rate,
        result,
        outcome: rec_outcome,
        spans_started,
        spans_dropped,
        child_ns,
        request,
        response,
        extras: _,
        extras_used,
    } = rec;
    *trace_id = head.trace_id;
    *id = head.id;
    *parent_id = head.parent_id;
    let spent = std::mem::replace(
        name,
        if alone {
            std::mem::replace(&mut st.name, TransactionName::EMPTY)
        } else {
            st.name.clone()
        },
    );
    spare::spent_name(spent);
    *start = head.start;
    *end = ending.end;
    *rec_sampled = sampled;
    *sample_rate = head.sample_rate;
    *result = st.result.take();
    *rec_outcome = outcome;
    *spans_started = head.spans_started;
    *spans_dropped = head.spans_dropped;
    *child_ns = ending.child_ns;
    // The reused record's earlier context, kept for this thread's next request to be written
    // into (see `spare::contexts`).
    spare::spent_context(request.take(), response.take());
    *request = if sampled { st.request.take() } else { None };
    *response = if sampled { st.response.take() } else { None };
    // The rarer parts: their box, kept with the record, is read only by a transaction that
    // has some (see `TransactionRecord::extras`).
    *extras_used = false;
    if has_extras(st, &links, sampled) {
        fill_extras(rec.extras_mut(), links, st, sampled);
    }
}

/// Whether a transaction ending with `st` has any of a record's rarer parts.
#[inline]
fn has_extras(st: &TxnState, links: &[Link], sampled: bool) -> bool {
    let exits = {
        #[cfg(apm_exit_stats)]
        {
            !st.dropped_exits.is_empty()
        }
        #[cfg(not(apm_exit_stats))]
        {
            false
        }
    };
    // Links given through the OpenTelemetry API go with the record sampled or not, as the
    // restarted trace's; the bridge's attributes only when sampled.
    let (otel_links, otel) = {
        #[cfg(feature = "opentelemetry")]
        {
            (!st.links.is_empty(), st.otel.is_some())
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            (false, false)
        }
    };
    exits
        || !links.is_empty()
        || otel_links
        || (sampled
            && (otel
                || !st.labels.is_empty()
                || st.message.is_some()
                || st.user.is_some()
                || !st.custom.is_empty()))
}

/// Moves a transaction's rarer parts into its record's (emptied) extras. The state's vectors
/// are swapped, so that the state keeps the record's emptied room for its next transaction;
/// links are appended to the record's room.
#[cold]
fn fill_extras(ex: &mut TransactionExtras, links: Vec<Link>, st: &mut TxnState, sampled: bool) {
    #[cfg(apm_exit_stats)]
    std::mem::swap(&mut ex.dropped_exits, &mut st.dropped_exits);
    ex.links.extend(links);
    #[cfg(feature = "opentelemetry")]
    {
        ex.links.extend_from_slice(&st.links);
        ex.otel = if sampled { st.otel.take() } else { None };
    }
    if sampled {
        std::mem::swap(&mut ex.labels, &mut st.labels);
        std::mem::swap(&mut ex.custom, &mut st.custom);
        ex.message = st.message.take();
        ex.user = st.user.take();
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

/// An empty string with room for a server integration to write a transaction's name into: a
/// spent name's, so that once warm a served request's name allocates nothing.
#[cfg(apm_server)]
pub(crate) fn name_buffer() -> String {
    spare::contexts::name()
}
