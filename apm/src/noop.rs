//! The runtime compiled out (`enable` feature off): the same API as the real one, doing
//! nothing, with no threads and no network.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::headers::{HeaderSink, HeaderSource};
use crate::{Config, LabelValue, Outcome, Stats};

#[derive(Debug)]
pub(crate) struct Agent;

impl Agent {
    pub(crate) fn start(_config: Config) -> Agent {
        Agent
    }
    pub(crate) fn flush(&self, _timeout: Duration) -> bool {
        false
    }
    pub(crate) fn is_running(&self) -> bool {
        false
    }
    pub(crate) fn stats(&self) -> Stats {
        Stats::default()
    }
}

#[derive(Debug)]
pub(crate) struct TransactionGuard;

impl TransactionGuard {
    pub(crate) fn start(
        _name: Cow<'static, str>,
        _kind: Cow<'static, str>,
        _headers: Option<&dyn HeaderSource>,
    ) -> Self {
        TransactionGuard
    }
    pub(crate) fn set_name(&self, _name: Cow<'static, str>) {}
    pub(crate) fn set_result(&self, _result: Cow<'static, str>) {}
    pub(crate) fn set_outcome(&self, _outcome: Outcome) {}
    pub(crate) fn set_label(&self, _key: Cow<'static, str>, _value: LabelValue) {}
    pub(crate) fn is_sampled(&self) -> bool {
        false
    }
    pub(crate) fn trace_id(&self) -> Option<String> {
        None
    }
    pub(crate) fn id(&self) -> Option<String> {
        None
    }
}

#[derive(Debug, Default)]
pub(crate) struct SpanCore;

impl SpanCore {
    pub(crate) fn set_subtype(&mut self, _subtype: Cow<'static, str>) {}
    pub(crate) fn set_action(&mut self, _action: Cow<'static, str>) {}
    pub(crate) fn set_outcome(&mut self, _outcome: Outcome) {}
    pub(crate) fn set_label(&mut self, _key: Cow<'static, str>, _value: LabelValue) {}
    pub(crate) fn set_exit(&mut self) {}
    pub(crate) fn set_http_request(&mut self, _method: Cow<'static, str>, _url: String) {}
    pub(crate) fn set_http_status(&mut self, _status: u16) {}
    pub(crate) fn set_db(
        &mut self,
        _kind: Cow<'static, str>,
        _instance: Option<String>,
        _statement: Option<String>,
    ) {
    }
    pub(crate) fn set_message_queue(&mut self, _queue: String) {}
    pub(crate) fn set_service_target(
        &mut self,
        _kind: Cow<'static, str>,
        _name: Option<Cow<'static, str>>,
    ) {
    }
    pub(crate) fn is_recording(&self) -> bool {
        false
    }
    pub(crate) fn id(&self) -> Option<String> {
        None
    }
    pub(crate) fn inject(&self, _sink: &mut dyn HeaderSink) {}
}

/// Nothing is ever recorded with the agent compiled out.
#[cfg(any(feature = "minreq-client", feature = "reqwest"))]
pub(crate) fn spans_recorded_here() -> bool {
    false
}

#[derive(Debug, Default)]
pub(crate) struct SpanGuard(SpanCore);

impl SpanGuard {
    pub(crate) fn start(_name: Cow<'static, str>, _kind: Cow<'static, str>) -> Self {
        SpanGuard(SpanCore)
    }
    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.0
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Span(SpanCore);

impl Span {
    pub(crate) fn start(_name: Cow<'static, str>, _kind: Cow<'static, str>) -> Self {
        Span(SpanCore)
    }
    pub(crate) fn core(&mut self) -> &mut SpanCore {
        &mut self.0
    }
    pub(crate) fn core_ref(&self) -> &SpanCore {
        &self.0
    }
}

/// What the current-transaction helpers operate on.
pub(crate) struct CurrentTransaction;

impl CurrentTransaction {
    pub(crate) fn default_result(&self, _result: Cow<'static, str>) {}
    pub(crate) fn default_outcome(&self, _outcome: Outcome) {}
    pub(crate) fn integration_failed(&self) {}
    pub(crate) fn set_request(&self, _request: crate::web::Request) {}
    pub(crate) fn set_response(&self, _response: crate::web::Response) {}
    pub(crate) fn set_name(&self, _name: Cow<'static, str>) {}
    pub(crate) fn set_result(&self, _result: Cow<'static, str>) {}
    pub(crate) fn set_outcome(&self, _outcome: Outcome) {}
    pub(crate) fn set_label(&self, _key: Cow<'static, str>, _value: LabelValue) {}
}

pub(crate) fn with_current_transaction(_f: impl FnOnce(&CurrentTransaction)) {}

#[derive(Debug, Clone, Default)]
pub(crate) struct Context;

impl Context {
    pub(crate) fn current() -> Self {
        Context
    }
    pub(crate) fn is_empty(&self) -> bool {
        true
    }
    pub(crate) fn attach(&self) -> ContextGuard {
        ContextGuard
    }
    pub(crate) fn inject(&self, _sink: &mut dyn HeaderSink) {}
}

#[derive(Debug)]
pub(crate) struct ContextGuard;

#[derive(Debug, Clone, Default)]
pub(crate) struct Transaction;

impl Transaction {
    pub(crate) fn start(
        _name: Cow<'static, str>,
        _kind: Cow<'static, str>,
        _headers: Option<&dyn HeaderSource>,
    ) -> Self {
        Transaction
    }
    pub(crate) fn bind<F: Future>(&self, fut: F) -> Instrumented<F> {
        Instrumented(fut)
    }
    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn bind_until_handed_over<F: Future>(&self, fut: F) -> Instrumented<F> {
        Instrumented(fut)
    }
    pub(crate) fn end(&self) {}
    pub(crate) fn context(&self) -> Context {
        Context
    }
    pub(crate) fn with(&self, _f: impl FnOnce(&CurrentTransaction)) {}
    pub(crate) fn is_sampled(&self) -> bool {
        false
    }
    pub(crate) fn trace_id(&self) -> Option<String> {
        None
    }
    pub(crate) fn id(&self) -> Option<String> {
        None
    }
}

#[derive(Debug)]
pub(crate) struct Frame;

impl Frame {
    pub(crate) fn from_context(_ctx: Context) -> Frame {
        Frame
    }
}

#[derive(Debug)]
pub(crate) struct Instrumented<F>(F);

pub(crate) fn bind<F>(fut: F, _frame: Frame) -> Instrumented<F> {
    Instrumented(fut)
}

impl<F> Instrumented<F> {
    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn take_pending_end(self: Pin<&mut Self>) -> PendingEnd {
        PendingEnd
    }
}

#[derive(Debug)]
pub(crate) struct PendingEnd;

impl PendingEnd {
    #[allow(dead_code)] // used by the optional server integrations
    #[inline]
    pub(crate) fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        poll()
    }

    #[allow(dead_code)] // used by the optional server integrations
    pub(crate) fn end(self) {}
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the only field.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

/// What generated code calls; with the feature off the macros emit nothing that calls these,
/// but `capture_error!`'s type check needs the module to exist.
pub(crate) mod private {}
