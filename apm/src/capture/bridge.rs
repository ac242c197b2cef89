//! Spans of another tracing library (`apm::tracing`): the apm span or transaction opens where
//! that library's span is created, is made current on the thread's stack each time the span is
//! entered (async code enters and exits on every poll, on any thread), and ends when the span
//! closes. Between two enters it keeps what a future's frame keeps: its children's time, and
//! entries left open above it (a guard held across `.await`).

use std::borrow::Cow;
use std::sync::Arc;

use super::handles::{Context, Span, Transaction};
use super::shared::TxnShared;
use super::stack::{self, ChildTimer, Entry, Token};
use super::transaction;
use crate::types::meta::SpanMeta;
use crate::types::outcome::Outcome;

/// What a bridged span needs to become current: its transaction and id.
#[derive(Debug)]
pub(crate) struct BridgeFrame {
    txn: Arc<TxnShared>,
    id: u64,
    timer: ChildTimer,
    parked: Vec<Entry>,
    /// An exit span: nothing opens under it.
    leaf: bool,
}

impl BridgeFrame {
    fn new(txn: Arc<TxnShared>, id: u64) -> Self {
        BridgeFrame {
            txn,
            id,
            timer: ChildTimer::default(),
            parked: Vec::new(),
            leaf: false,
        }
    }

    /// The frame of a recording span; `None` when it records nothing.
    pub(crate) fn of_span(span: &crate::Span) -> Option<Self> {
        let (txn, id) = span.0.frame()?;
        Some(Self::new(txn, id))
    }

    /// The frame of a recording transaction; `None` when it records nothing.
    pub(crate) fn of_transaction(t: &crate::Transaction) -> Option<Self> {
        let txn = t.0.shared()?;
        Some(Self::new(Arc::clone(txn), txn.id))
    }

    /// Makes the span current on this thread, with what was left open in it before.
    #[inline]
    pub(crate) fn enter(&mut self) -> Option<Token> {
        let token = stack::push_owner(Arc::clone(&self.txn), self.id, self.timer, true)?;
        if self.leaf {
            stack::mark_leaf(token);
        }
        stack::restore(&mut self.parked);
        Some(token)
    }

    /// Leaves what [`BridgeFrame::enter`] made current, keeping what is still open above it.
    #[inline]
    pub(crate) fn exit(&mut self, token: Token) {
        let (parked, timer) = stack::leave(token);
        if !parked.is_empty() {
            self.parked = parked;
        }
        if let Some(t) = timer {
            self.timer = t;
        }
    }

    /// The span is an exit span: spans opened while it is entered are not recorded.
    pub(crate) fn set_leaf(&mut self) {
        self.leaf = true;
    }

    /// The context under which the span's children open.
    pub(crate) fn context(&self) -> crate::Context {
        crate::Context(Context(Some((Arc::clone(&self.txn), self.id))))
    }
}

/// A span named by a static description: nothing allocated for the name.
#[inline]
pub(crate) fn start_static_span(meta: &'static SpanMeta) -> crate::Span {
    crate::Span(Span::start_static(meta))
}

/// Renames a bridged span (a name recorded after it started).
pub(crate) fn rename_span(span: &mut crate::Span, name: Cow<'static, str>) {
    span.0.rename(name);
}

/// Ends a bridged span with the time its children ran.
pub(crate) fn end_span(span: crate::Span, frame: Option<BridgeFrame>) {
    match frame {
        Some(f) => span.0.end_with(&f.timer),
        None => drop(span),
    }
}

/// Ends a bridged transaction with the time its children ran; `outcome` unless one was set.
pub(crate) fn end_transaction(t: &crate::Transaction, frame: Option<BridgeFrame>, outcome: Outcome) {
    let transaction: &Transaction = &t.0;
    if let Some(txn) = transaction.shared() {
        let timer = frame.map(|f| f.timer);
        transaction::end_transaction(txn, None, timer.as_ref(), outcome);
    }
}
