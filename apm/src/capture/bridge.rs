//! Spans of another tracing library (`apm::tracing`, `apm::otel`): the apm span or transaction
//! opens where that library's span is created, is made current on the thread's stack each time
//! the span is entered (attached, for OpenTelemetry; async code enters and exits on every poll,
//! on any thread), and ends when the span closes (ends). Between two enters it keeps what a future's frame keeps: its children's time, and
//! entries left open above it (a guard held across `.await`).

use std::borrow::Cow;
use std::sync::Arc;

#[cfg(feature = "tracing")]
use super::handles::Span;
use super::handles::{Context, Transaction};
use super::shared::TxnShared;
use super::stack::{self, ChildTimer, Entry, Token};
use super::transaction;
#[cfg(feature = "tracing")]
use crate::types::meta::SpanMeta;
use crate::types::outcome::Outcome;
#[cfg(feature = "tracing")]
use crate::types::span_context::Labels;

/// What makes a bridged span current while entered, beside the handle that keeps its
/// transaction: its id, its children's time so far, what was left open in it.
#[derive(Debug)]
pub(crate) struct SpanFrame {
    id: u64,
    timer: ChildTimer,
    parked: Vec<Entry>,
    /// An exit span: nothing opens under it.
    leaf: bool,
}

/// A recording span or transaction handle: what holds the transaction a [`SpanFrame`] enters.
#[cfg(feature = "tracing")]
pub(crate) trait Recorded {
    fn shared(&self) -> Option<&Arc<TxnShared>>;
}

#[cfg(feature = "tracing")]
impl Recorded for crate::Span {
    #[inline]
    fn shared(&self) -> Option<&Arc<TxnShared>> {
        self.0.transaction()
    }
}

#[cfg(feature = "tracing")]
impl Recorded for crate::Transaction {
    #[inline]
    fn shared(&self) -> Option<&Arc<TxnShared>> {
        self.0.shared()
    }
}

impl SpanFrame {
    fn new(id: u64) -> Self {
        SpanFrame {
            id,
            timer: ChildTimer::default(),
            parked: Vec::new(),
            leaf: false,
        }
    }

    /// The frame of a recording span; `None` when it records nothing.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn of_span(span: &crate::Span) -> Option<Self> {
        span.0.id_if_recording().map(Self::new)
    }

    /// The frame of a recording transaction; `None` when it records nothing.
    #[cfg(feature = "tracing")]
    pub(crate) fn of_transaction(t: &crate::Transaction) -> Option<Self> {
        t.0.shared().map(|txn| Self::new(txn.id))
    }

    /// Makes the span current on this thread (`txn`: its transaction), with what was left
    /// open in it before.
    #[inline]
    fn enter(&mut self, txn: &Arc<TxnShared>) -> Option<Token> {
        let token = stack::push_bridged(txn, self.id, self.timer)?;
        if self.leaf {
            stack::mark_leaf(token);
        }
        stack::restore(&mut self.parked);
        Some(token)
    }

    /// [`SpanFrame::enter`], remembering the child timer it entered with: see [`leave`].
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn enter_tracked(&mut self, of: &impl Recorded) -> Option<Entered> {
        let timer = self.timer;
        let token = self.enter(of.shared()?)?;
        Some(Entered { token, timer })
    }

    /// Takes back what an entry's end ([`leave`]) handed over.
    #[inline]
    pub(crate) fn left(&mut self, left: Left) {
        if !left.parked.is_empty() {
            self.parked = left.parked;
        }
        if let Some(t) = left.timer {
            self.timer = t;
        }
    }

    /// The span is an exit span: spans opened while it is entered are not recorded.
    #[cfg(feature = "tracing")]
    pub(crate) fn set_leaf(&mut self) {
        self.leaf = true;
    }

    /// The context under which the span's children open (`of`: the handle this frame was made
    /// from).
    #[cfg(feature = "tracing")]
    pub(crate) fn context(&self, of: &impl Recorded) -> Option<crate::Context> {
        let txn = of.shared()?;
        Some(crate::Context(Context(Some((Arc::clone(txn), self.id)))))
    }
}

/// A [`SpanFrame`] with its own reference to its transaction (the OpenTelemetry bridge keeps it
/// after the span's end: an entry made before is still left).
#[cfg(feature = "opentelemetry")]
#[derive(Debug)]
pub(crate) struct BridgeFrame {
    txn: Arc<TxnShared>,
    frame: SpanFrame,
}

#[cfg(feature = "opentelemetry")]
impl BridgeFrame {
    /// The frame of a recording span; `None` when it records nothing.
    pub(crate) fn of_span(span: &crate::Span) -> Option<Self> {
        let (txn, id) = span.0.frame()?;
        Some(BridgeFrame {
            txn,
            frame: SpanFrame::new(id),
        })
    }

    /// The frame of a recording transaction; `None` when it records nothing.
    pub(crate) fn of_transaction(t: &crate::Transaction) -> Option<Self> {
        let txn = t.0.shared()?;
        Some(BridgeFrame {
            txn: Arc::clone(txn),
            frame: SpanFrame::new(txn.id),
        })
    }

    /// Makes the span current on this thread, with what was left open in it before.
    #[inline]
    pub(crate) fn enter(&mut self) -> Option<Token> {
        self.frame.enter(&self.txn)
    }

    /// Leaves what [`BridgeFrame::enter`] made current, keeping what is still open above it.
    #[inline]
    pub(crate) fn exit(&mut self, token: Token) {
        let (parked, timer) = stack::leave(token);
        self.frame.left(Left { parked, timer });
    }

    /// The context under which the span's children open.
    pub(crate) fn context(&self) -> crate::Context {
        crate::Context(Context(Some((Arc::clone(&self.txn), self.frame.id))))
    }

    /// The frame itself (what ends the span reads).
    pub(crate) fn frame(&self) -> &SpanFrame {
        &self.frame
    }
}

/// An entry made by [`SpanFrame::enter_tracked`]: its token, and the frame's child timer when
/// it was entered.
#[cfg(feature = "tracing")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entered {
    token: Token,
    timer: ChildTimer,
}

/// What the end of an entry hands back to its frame: entries still open above it, its timer.
#[derive(Debug)]
pub(crate) struct Left {
    parked: Vec<Entry>,
    timer: Option<ChildTimer>,
}

/// Leaves an entry made by [`SpanFrame::enter_tracked`] without its frame; `None` when the
/// frame need not hear of it ([`SpanFrame::left`] would change nothing: nothing was left
/// open above it and its timer is the one it entered with, e.g. no child ran), so that the
/// common exit does not look the frame up at all.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn leave(entered: Entered) -> Option<Left> {
    let (parked, timer) = stack::leave(entered.token);
    if parked.is_empty() && timer.is_none_or(|t| t == entered.timer) {
        return None;
    }
    Some(Left { parked, timer })
}

/// A span named by a static description (nothing allocated for the name), built in the idle
/// handle `span` where it lies (a bridge's table slot) rather than moved there; `false` when
/// it records nothing.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn start_static_span_in(span: &mut crate::Span, meta: &'static SpanMeta) -> bool {
    span.0.start_static_in(meta)
}

/// A handle that records nothing, for [`start_static_span_in`] to start a span in.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn idle_span() -> crate::Span {
    crate::Span(Span::default())
}

/// Moves `labels` into the bridged span's own (a tracing span's fields), leaving it empty:
/// no copy of each value.
#[cfg(feature = "tracing")]
pub(crate) fn add_span_labels(span: &mut crate::Span, labels: &mut Labels) {
    span.0.core().add_labels(labels);
}

/// An empty string for a tracing span's text field: a spare one with room when this thread
/// has one (they come back from the labels of spans shipped, `queue/spare.rs`).
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn spare_text() -> String {
    crate::queue::spare::text()
}

/// Renames a bridged span (a name recorded after it started).
pub(crate) fn rename_span(span: &mut crate::Span, name: Cow<'static, str>) {
    span.0.rename(name);
}

/// Ends a bridged span with the time its children ran, leaving the handle empty where it
/// lies (nothing is moved out of a bridge's table to end it). The frame stays usable: a span
/// may end while it is entered somewhere (the OpenTelemetry API allows it), and that entry is
/// still left later.
pub(crate) fn end_span(span: &mut crate::Span, frame: Option<&SpanFrame>) {
    match frame {
        Some(f) => span.0.end_with(&f.timer),
        None => span.0.end_with(&ChildTimer::default()),
    }
}

/// Ends a bridged transaction with the time its children ran; `outcome` unless one was set.
pub(crate) fn end_transaction(t: &crate::Transaction, frame: Option<&SpanFrame>, outcome: Outcome) {
    let transaction: &Transaction = &t.0;
    if let Some(txn) = transaction.shared() {
        let timer = frame.map(|f| f.timer);
        transaction::end_transaction(txn, None, timer.as_ref(), outcome);
    }
}

/// What the OpenTelemetry bridge sets that apm's own spans have no setter for.
#[cfg(feature = "opentelemetry")]
mod otel {
    use std::borrow::Cow;

    use opentelemetry::KeyValue;

    use super::BridgeFrame;
    use crate::types::record::TransactionName;
    use crate::types::span_context::Link;
    use crate::types::span_context::Otel;

    /// Trace id, span (or transaction) id, and whether the trace is sampled.
    pub(crate) fn frame_ids(frame: &BridgeFrame) -> (u128, u64, bool) {
        (frame.txn.trace_id, frame.frame.id, frame.txn.sampled)
    }

    fn with_active(span: &mut crate::Span, f: impl FnOnce(&mut super::super::span::ActiveSpan)) {
        if let Some(s) = span.0.active() {
            f(s);
        }
    }

    /// The type and subtype, known once the attributes are (at the span's end).
    pub(crate) fn set_span_type(
        span: &mut crate::Span,
        kind: &'static str,
        subtype: Option<Cow<'static, str>>,
    ) {
        with_active(span, |s| {
            let name = s.dynamic_name();
            name.kind = Cow::Borrowed(kind);
            name.subtype = subtype;
        });
    }

    pub(crate) fn set_span_otel(
        span: &mut crate::Span,
        span_kind: &'static str,
        attributes: Vec<KeyValue>,
    ) {
        with_active(span, |s| {
            s.extra().otel = Some(Box::new(Otel {
                span_kind,
                attributes,
            }));
        });
    }

    pub(crate) fn add_span_link(span: &mut crate::Span, trace_id: u128, span_id: u64) {
        with_active(span, |s| s.extra().links.push(Link { trace_id, span_id }));
    }

    /// `destination.service.resource` is the service target's name alone.
    pub(crate) fn name_only_resource(span: &mut crate::Span) {
        with_active(span, |s| s.extra().name_only_resource = true);
    }

    pub(crate) fn set_transaction_otel(
        t: &crate::Transaction,
        span_kind: &'static str,
        attributes: Vec<KeyValue>,
    ) {
        if let Some(txn) = t.0.shared() {
            txn.state.lock().otel = Some(Box::new(Otel {
                span_kind,
                attributes,
            }));
        }
    }

    /// The type, known once the attributes are (at the transaction's end).
    pub(crate) fn set_transaction_type(t: &crate::Transaction, kind: &'static str) {
        if let Some(txn) = t.0.shared() {
            let mut st = txn.state.lock();
            let name = match &st.name {
                TransactionName::Static(m) => Cow::Borrowed(m.name),
                TransactionName::Dynamic(n, _) => n.clone(),
            };
            st.name = TransactionName::Dynamic(name, Cow::Borrowed(kind));
        }
    }

    pub(crate) fn add_transaction_link(t: &crate::Transaction, trace_id: u128, span_id: u64) {
        if let Some(txn) = t.0.shared() {
            txn.state.lock().links.push(Link { trace_id, span_id });
        }
    }
}
#[cfg(feature = "opentelemetry")]
pub(crate) use otel::{
    add_span_link, add_transaction_link, frame_ids, name_only_resource, set_span_otel,
    set_span_type, set_transaction_otel, set_transaction_type,
};
