//! Starting a transaction (a new trace, a child of the current context, or the continuation
//! of incoming headers) and ending it into a record for the staging buffer.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::Mutex;

use super::child_timer::{ChildTimer, EndedElsewhere};
use super::sampling::{self, Origin};
use super::shared::{TxnShared, TxnState};
use super::stack::{self, Token};
use crate::queue::{spare, staging, tracer};
use crate::types::clock;
use crate::types::headers::HeaderSource;
use crate::types::ids;
use crate::types::meta::TransactionMeta;
use crate::types::outcome::Outcome;
use crate::types::record::{Event, TransactionName, TransactionRecord};

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
        Some(h) => sampling::from_headers(t, h),
        None => stack::with_current(|txn, parent| Origin {
            trace_id: txn.trace_id,
            parent_id: Some(parent),
            sampled: txn.sampled,
            sample_rate: txn.sample_rate,
            tracestate: txn.tracestate.clone(),
            links: Vec::new(),
        })
        .unwrap_or_else(|| sampling::root(t, "", Vec::new())),
    };
    Some(Arc::new(shared(origin, name, t.live.max_spans.load(Relaxed))))
}

/// A transaction's shared state, started now.
pub(super) fn shared(origin: Origin, name: TransactionName, max_spans: u32) -> TxnShared {
    TxnShared {
        trace_id: origin.trace_id,
        id: ids::next_u64(),
        parent_id: origin.parent_id,
        sampled: origin.sampled,
        sample_rate: origin.sample_rate,
        max_spans,
        started: Default::default(),
        dropped: Default::default(),
        tracestate: origin.tracestate,
        links: origin.links,
        start: clock::now(),
        forks: tracer::forks(),
        errored: Default::default(),
        ended_elsewhere: EndedElsewhere::default(),
        state: Mutex::new(TxnState {
            name,
            result: None,
            outcome: None,
            integration_outcome: None,
            labels: Vec::new(),
            user: None,
            custom: Vec::new(),
            request: None,
            response: None,
            message: None,
            ended: false,
            #[cfg(feature = "opentelemetry")]
            otel: None,
            #[cfg(feature = "opentelemetry")]
            links: Vec::new(),
            #[cfg(apm_exit_stats)]
            dropped_exits: Vec::new(),
        }),
    }
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
    if !txn.sampled && !tracer::get().is_some_and(|t| t.live.send_unsampled.load(Relaxed)) {
        // The server does not want it (8.0 and later): nothing to build or send.
        txn.state.lock().ended = true;
        return;
    }
    let mut timer = popped.or(carried.copied());
    if let Some(t) = &mut timer {
        t.settle(&txn.ended_elsewhere, txn.id);
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
        dropped_spans_stats: Vec::new(),
        #[cfg(apm_exit_stats)]
        dropped_exits: std::mem::take(&mut st.dropped_exits),
        child_ns,
        request: if txn.sampled { st.request.take() } else { None },
        response: if txn.sampled {
            st.response.take()
        } else {
            None
        },
        message: if txn.sampled { st.message.take() } else { None },
        #[cfg(not(feature = "opentelemetry"))]
        links: txn.links.clone(),
        #[cfg(feature = "opentelemetry")]
        links: txn.links.iter().chain(&st.links).copied().collect(),
        #[cfg(feature = "opentelemetry")]
        otel: if txn.sampled { st.otel.take() } else { None },
        user: if txn.sampled { st.user.take() } else { None },
        custom: if txn.sampled {
            std::mem::take(&mut st.custom)
        } else {
            Vec::new()
        },
    };
    drop(st);
    staging::push(Event::Transaction(spare::boxed(rec)));
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
