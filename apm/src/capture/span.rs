//! Spans opened through handles (manual guards, integrations' detached spans, bridged
//! spans): the hot path of a span whose record lives in its handle until it ends. Ending it
//! appends the record to this thread's staging buffer. No lock, no allocation for static
//! names, no I/O, no formatting; nothing here can panic into the application.
//!
//! The spans of `#[apm::span]` functions take a shorter path: their record is built when they
//! end, from what waits on the context stack ([`super::stack::enter_static_span`]) for sync
//! code, or in the future's frame ([`FrameSpan`]) for `async` code.

use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::kept_ref;
use super::raw_stack;
use super::shared::TxnShared;
use super::stack::{self, ChildTimer, Token};
use crate::queue::{staging, tracer};
use crate::types::clock::{self, Tick};
use crate::types::ids;
use crate::types::meta::SpanMeta;
use crate::types::outcome::{LabelValue, Outcome};
use crate::types::record::{DynamicSpanName, Event, SpanName, SpanRecord};
use crate::types::span_context::SpanExtra;

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
    /// Its trace context went out with a call (set through a shared reference: injecting
    /// headers does not need the span mutably).
    propagated: AtomicBool,
}

/// How a new span relates to this thread's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pushed: current on this thread until it ends (guards).
    Enter,
    /// Not on the stack: a handle for a call whose progress happens elsewhere (an HTTP
    /// client's request awaited in a task), or a bridged span that its bridge enters and
    /// leaves.
    /// Counted in its parent's child time from its start to its end when it starts where the
    /// parent's own entry is current (it may end anywhere).
    Beside,
}

/// Opens a span under the current transaction/span. `None` when there is nothing to record:
/// agent off, no current transaction, unsampled, or over `transaction_max_spans`.
#[inline]
pub(crate) fn open_span(name: SpanName, mode: Mode) -> Option<(ActiveSpan, Option<Token>)> {
    let (opening, slot) = begin(mode)?;
    Some((opening.into_span(name), slot))
}

/// [`open_span`] in [`Mode::Beside`], built in `out` (a bridge's table slot) rather than
/// moved there; `false` when nothing opens (`out` is then left as it was).
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn open_span_in(name: SpanName, out: &mut Option<ActiveSpan>) -> bool {
    match begin(Mode::Beside) {
        Some((opening, _)) => {
            *out = Some(opening.into_span(name));
            true
        }
        None => false,
    }
}

/// What a span's opening decided, before its record is built.
struct Opening {
    txn: Arc<TxnShared>,
    parent_id: u64,
    id: u64,
    start: Tick,
    counted_by_parent: bool,
}

/// The opening of a span: its place in the stack and its ids; `None` when there is nothing to
/// record (see [`open_span`]).
#[inline]
fn begin(mode: Mode) -> Option<(Opening, Option<Token>)> {
    if !tracer::is_active() || !stack::may_record_spans() {
        return None;
    }
    let decide = |txn: &Arc<TxnShared>, parent: u64| {
        let id = ids::next_u64();
        (id, (Arc::clone(txn), parent, id))
    };
    let start = clock::now();
    let (slot, ((txn, parent_id, id), counted_by_parent)) = if mode == Mode::Enter {
        let (slot, ctx) = stack::push_child(start, decide)?;
        (Some(slot), (ctx, false))
    } else {
        // The current entry is the parent: it counts the child if it is the span or
        // transaction itself.
        let ((_, ctx), counted) = stack::child_beside(start, decide)?;
        (None, (ctx, counted))
    };
    Some((
        Opening {
            txn,
            parent_id,
            id,
            start,
            counted_by_parent,
        },
        slot,
    ))
}

impl Opening {
    #[inline(always)]
    fn into_span(self, name: SpanName) -> ActiveSpan {
        let Opening {
            txn,
            parent_id,
            id,
            start,
            counted_by_parent,
        } = self;
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
            propagated: AtomicBool::new(false),
        }
    }
}

impl ActiveSpan {
    /// The transaction the span belongs to.
    #[inline]
    pub(crate) fn transaction(&self) -> &Arc<TxnShared> {
        &self.txn
    }

    /// Ends the span in `slot`, opened on the stack with `token` (entered: a guard's) or beside
    /// it (`None`, whose own children ran for `timer`). The outcome is failure while a panic
    /// unwinds, success if none was set. `slot` is left empty.
    ///
    /// Ended where it lies: its record is written straight into the staging buffer from the
    /// slot, not moved out with the span first (a copy of the span, then one of the record).
    #[inline]
    pub(crate) fn end_in(slot: &mut Option<ActiveSpan>, token: Option<Token>, timer: &ChildTimer) {
        let Some(s) = slot else {
            return;
        };
        match token {
            Some(token) => {
                let end = clock::now();
                let timer = stack::pop(token, Some(end)).unwrap_or_default();
                s.close(end, timer);
                s.stage_where_it_lies();
            }
            None => s.end_where_it_lies(timer),
        }
        *slot = None;
    }

    /// The end of a span opened beside the stack: now, told to its parent where the parent
    /// counts it as running (on this thread's stack, else through its transaction).
    #[inline]
    fn ends_now(&self) -> Tick {
        let end = clock::now();
        if self.counted_by_parent && !stack::child_ended_under(self.rec.parent_id, end) {
            self.txn.ended_elsewhere.record(self.rec.parent_id, end);
        }
        end
    }

    /// Ends a span opened beside the stack, whose own children ran for `timer`, where it lies
    /// (a handle, a bridge's table slot). What is left, its name and optional
    /// parts taken, is for the caller to drop.
    #[inline]
    pub(crate) fn end_where_it_lies(&mut self, timer: &ChildTimer) {
        let end = self.ends_now();
        self.close(end, *timer);
        self.stage_where_it_lies();
    }

    /// Writes the closed span's record into the staging buffer, built in its slot there from
    /// the span's fields (a span is never urgent: `staging::push` sends errors at once).
    #[inline]
    fn stage_where_it_lies(&mut self) {
        let rec = &mut self.rec;
        staging::push_with(|| {
            Event::Span(SpanRecord {
                name: std::mem::replace(&mut rec.name, SpanName::EMPTY),
                extra: rec.extra.take(),
                ..*rec
            })
        });
    }

    /// Its trace context was written into an outgoing call.
    pub(crate) fn propagated(&self) {
        self.propagated.store(true, Relaxed);
    }

    /// Writes what its end decides into the record: end, children's time, outcome, and the
    /// stack of a slow span.
    #[inline]
    fn close(&mut self, end: Tick, mut timer: ChildTimer) {
        if self.propagated.load(Relaxed) {
            self.extra().propagated = true;
        }
        if let Some(stack) = raw_stack::of_slow_span(self.rec.start, end) {
            self.extra().stack = Some(stack);
        }
        timer.settle(&self.txn.ended_elsewhere, self.rec.id);
        let timer = &timer;
        self.rec.end = end;
        self.rec.child_ns = timer.busy_until(end);
        self.rec.outcome = if std::thread::panicking() || timer.errored() && !self.outcome_set {
            Outcome::Failure
        } else if self.rec.outcome == Outcome::Unknown && !self.outcome_set {
            Outcome::Success
        } else {
            self.rec.outcome
        };
    }

    /// An explicit outcome (the application's or an integration's): kept as set.
    #[inline]
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.rec.outcome = outcome;
        self.outcome_set = true;
    }

    /// The span's optional parts, created on first use.
    pub(crate) fn extra(&mut self) -> &mut SpanExtra {
        // Spare parts, emptied on the transport thread: new ones would be freed there.
        self.rec
            .extra
            .get_or_insert_with(crate::queue::spare::span_extra)
    }

    pub(crate) fn set_label(&mut self, key: Cow<'static, str>, value: LabelValue) {
        self.extra().labels.push((key, value));
    }
    pub(crate) fn set_subtype(&mut self, subtype: Cow<'static, str>) {
        self.dynamic_name().subtype = Some(subtype);
    }
    pub(crate) fn set_action(&mut self, action: Cow<'static, str>) {
        self.dynamic_name().action = Some(action);
    }
    /// The name, owned so that parts of it can change (a statement's context kept).
    pub(crate) fn dynamic_name(&mut self) -> &mut DynamicSpanName {
        #[cfg(apm_sql)]
        self.rec.expand_db();
        self.rec.name.make_dynamic()
    }
}

/// A name made at run time, in a box the transport thread gave back when there is one.
pub(crate) fn dynamic_span_name(name: Cow<'static, str>, kind: Cow<'static, str>) -> SpanName {
    SpanName::Dynamic(crate::queue::spare::span_name(name, kind))
}

/// The span of a `#[apm::span]` async function, in its future's frame: what its record is
/// built from when it ends, written once into its staging slot, as a sync function's span's
/// (`stack::exit_static_span`). An `ActiveSpan` kept its whole record in the frame, written
/// when the span opened and copied out when it closed, and made the future larger.
///
/// What its transaction holds (trace id, transaction id, sample rate) is read from there when
/// the record is built, not copied here: the frame stays 48 bytes, without a `u128`'s
/// alignment, and a future that holds it is moved in fewer bytes (BENCHMARKS.md §10d).
#[derive(Debug)]
pub(crate) struct FrameSpan {
    meta: &'static SpanMeta,
    start: Tick,
    parent_id: u64,
    id: u64,
    /// Its transaction: the frame's entry borrows it for each poll, and the span tells it of
    /// an end its parent did not see. Held: the future may outlive its transaction's guard.
    /// Taken from, and given back to, the thread's kept reference (`kept_ref.rs`) when the
    /// span opens and is dropped.
    txn: ManuallyDrop<Arc<TxnShared>>,
    /// Counted as running by its parent, which must hear of its end.
    counted_by_parent: bool,
}

impl Drop for FrameSpan {
    fn drop(&mut self) {
        // SAFETY: the field is not used again.
        let txn = unsafe { ManuallyDrop::take(&mut self.txn) };
        kept_ref::keep(txn);
    }
}

impl FrameSpan {
    /// Opens the span `meta` beside the stack (its future's frame enters it on each poll), as
    /// a child of the current entry; `None` when nothing is recorded (see [`open_span`]).
    #[inline]
    pub(crate) fn open(meta: &'static SpanMeta) -> Option<FrameSpan> {
        if !tracer::is_active() || !stack::may_record_spans() {
            return None;
        }
        let start = clock::now();
        let ((txn, parent_id, id), counted_by_parent) =
            stack::child_beside(start, |txn, parent| {
                (kept_ref::take(txn), parent, ids::next_u64())
            })?;
        Some(FrameSpan {
            meta,
            start,
            parent_id,
            id,
            txn: ManuallyDrop::new(txn),
            counted_by_parent,
        })
    }

    /// The transaction it belongs to.
    #[inline]
    pub(crate) fn transaction(&self) -> &Arc<TxnShared> {
        &self.txn
    }

    /// Its id, which its children take as parent.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Ends it now, its own children having run for `timer`: `derived` (from the future's
    /// output) is its outcome, unless a panic unwinds or an error was captured inside it
    /// (failure), or it says nothing (success). Its record goes to the staging buffer.
    #[inline]
    pub(crate) fn end(&self, timer: &ChildTimer, derived: Outcome) {
        let FrameSpan {
            meta,
            start,
            parent_id,
            id,
            txn,
            counted_by_parent,
        } = self;
        let end = clock::now();
        if *counted_by_parent && !stack::child_ended_under(*parent_id, end) {
            txn.ended_elsewhere.record(*parent_id, end);
        }
        let mut timer = *timer;
        timer.settle(&txn.ended_elsewhere, *id);
        let outcome = stack::function_outcome(derived, &timer);
        // Decided before the record is built, so that it is written once, in its slot.
        let extra = stack::slow_stack(*start, end);
        let child_ns = timer.busy_until(end);
        staging::push_with(|| {
            Event::Span(SpanRecord {
                trace_id: txn.trace_id,
                transaction_id: txn.id,
                parent_id: *parent_id,
                id: *id,
                name: SpanName::Static(meta),
                start: *start,
                end,
                sample_rate: txn.sample_rate,
                outcome,
                extra,
                child_ns,
            })
        });
    }
}

#[cfg(feature = "tracing")]
pub(crate) fn static_span_name(meta: &'static SpanMeta) -> SpanName {
    SpanName::Static(meta)
}
