//! Capture compiled out (`enable` off): the items `mod.rs` exports, each doing nothing, with no
//! thread-local state. `lib.rs` and the integrations use them as they use the real ones, and CI
//! builds both, so the two cannot drift apart unnoticed.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::types::headers::{HeaderSink, HeaderSource};
use crate::types::outcome::{LabelValue, Outcome};
use crate::types::user::User;
use crate::types::{messaging, web};

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
    pub(crate) fn with<R>(&self, _f: impl FnOnce(&CurrentTransaction) -> R) -> Option<R> {
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
    pub(crate) fn set_http_request(&mut self, _method: Cow<'static, str>, _url: String) {}
    pub(crate) fn set_http_status(&mut self, _status: u16) {}
    pub(crate) fn set_db(
        &mut self,
        _kind: Cow<'static, str>,
        _instance: Option<String>,
        _statement: Option<String>,
    ) {
    }
    pub(crate) fn set_db_user(&mut self, _user: String) {}
    pub(crate) fn set_db_rows_affected(&mut self, _rows: u64) {}
    pub(crate) fn set_db_link(&mut self, _link: String) {}
    pub(crate) fn set_destination(&mut self, _address: Option<String>, _port: Option<u16>) {}
    pub(crate) fn set_message_queue(&mut self, _queue: String) {}
    pub(crate) fn set_name(&mut self, _name: Cow<'static, str>) {}
    pub(crate) fn add_link(&mut self, _headers: &dyn HeaderSource) -> bool {
        false
    }
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

/// The two span handles: both record nothing.
macro_rules! span_handle {
    ($($name:ident),*) => {$(
        #[derive(Debug, Default)]
        pub(crate) struct $name(SpanCore);

        impl $name {
            pub(crate) fn start(_name: Cow<'static, str>, _kind: Cow<'static, str>) -> Self {
                $name(SpanCore)
            }
            pub(crate) fn core(&mut self) -> &mut SpanCore {
                &mut self.0
            }
            pub(crate) fn core_ref(&self) -> &SpanCore {
                &self.0
            }
            pub(crate) fn set_exit(&mut self) {}
        }
    )*};
}
span_handle!(SpanGuard, Span);

/// Statements' spans: nothing recorded.
#[cfg(apm_sql)]
pub(crate) use db::*;
#[cfg(apm_sql)]
mod db {
    use std::sync::Arc;

    use super::{Span, SpanCore, SpanGuard};
    use crate::types::db::{DbAction, DbEndpoint, DbStatement};

    pub(crate) fn start_db_guard(
        _: &Arc<DbEndpoint>,
        _: DbStatement<'_>,
        _: DbAction,
    ) -> SpanGuard {
        SpanGuard(SpanCore)
    }
    pub(crate) fn start_db_span(_: &Arc<DbEndpoint>, _: DbStatement<'_>, _: DbAction) -> Span {
        Span(SpanCore)
    }
}

/// Calls past the span limit: never counted.
#[cfg(apm_exit_stats)]
#[derive(Debug)]
pub(crate) enum OverLimitExit {}

#[cfg(apm_exit_stats)]
impl OverLimitExit {
    #[cfg(apm_db_client)]
    pub(crate) fn start_db(
        _endpoint: &std::sync::Arc<crate::types::db::DbEndpoint>,
    ) -> Option<Self> {
        None
    }
    #[cfg(apm_http_client)]
    pub(crate) fn start_http(_url: &str) -> Option<Self> {
        None
    }
    #[cfg(apm_messaging)]
    pub(crate) fn start_message(_system: &'static str, _queue: &str) -> Option<Self> {
        None
    }
    pub(crate) fn set_outcome(&mut self, _outcome: Outcome) {
        match *self {}
    }
}

/// Nothing is ever recorded with the agent compiled out.
#[cfg(any(apm_client, feature = "tracing"))]
pub(crate) fn spans_recorded_here() -> bool {
    false
}

/// A new string: nothing is reused with the agent compiled out.
#[cfg(apm_server)]
pub(crate) fn name_buffer() -> String {
    String::new()
}

/// Never made: no transaction is ever recorded.
#[derive(Debug)]
pub(crate) enum CurrentTransaction {}

impl CurrentTransaction {
    pub(crate) fn set_name(&self, _name: Cow<'static, str>) {}
    pub(crate) fn set_result(&self, _result: Cow<'static, str>) {}
    pub(crate) fn set_outcome(&self, _outcome: Outcome) {}
    pub(crate) fn set_label(&self, _key: Cow<'static, str>, _value: LabelValue) {}
    pub(crate) fn set_user(&self, _user: User) {}
    pub(crate) fn set_custom(&self, _key: Cow<'static, str>, _value: LabelValue) {}
    pub(crate) fn set_request(&self, _request: web::Request) {}
    pub(crate) fn set_response(&self, _response: web::Response) {}
    #[cfg(apm_server)]
    pub(crate) fn set_request_with(&self, _write: impl FnOnce(&mut web::Request)) {}
    #[cfg(apm_server)]
    pub(crate) fn set_response_with(&self, _write: impl FnOnce(&mut web::Response)) {}
    pub(crate) fn set_message(&self, _message: messaging::Message) {}
    #[cfg(apm_server)]
    pub(crate) fn default_result(&self, _result: Cow<'static, str>) {}
    #[cfg(apm_server)]
    pub(crate) fn default_outcome(&self, _outcome: Outcome) {}
    #[cfg(apm_server)]
    pub(crate) fn integration_failed(&self) {}
    pub(crate) fn is_sampled(&self) -> bool {
        false
    }
    pub(crate) fn trace_id(&self) -> String {
        String::new()
    }
    pub(crate) fn id(&self) -> String {
        String::new()
    }
}

pub(crate) fn with_current_transaction(_f: impl FnOnce(&CurrentTransaction)) {}

/// No ids: nothing is current.
pub(crate) fn current_ids() -> Option<(u128, u64, Option<u64>)> {
    None
}

/// Nothing records log records.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) fn capture_log(
    _level: &'static str,
    _message: String,
    _logger_name: String,
    _param_message: Option<String>,
    _file: Option<String>,
    _line: Option<u32>,
) {
}

/// No hook: nothing would record the panic.
pub(crate) fn install_panic_hook() -> bool {
    false
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Context;

impl Context {
    pub(crate) fn current() -> Self {
        Context
    }
    pub(crate) fn is_empty(&self) -> bool {
        true
    }
    pub(crate) fn inject(&self, _sink: &mut dyn HeaderSink) {}
    pub(crate) fn attach(&self) -> ContextGuard {
        ContextGuard
    }
    pub(crate) fn bind<F: Future>(self, fut: F) -> Instrumented<F> {
        Instrumented(fut)
    }
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
    #[cfg(apm_server)]
    pub(crate) fn bind_until_handed_over<F: Future>(&self, fut: F) -> Instrumented<F> {
        Instrumented(fut)
    }
    pub(crate) fn end(&self) {}
    #[cfg(apm_server)]
    pub(crate) fn attach(&self) -> ContextGuard {
        ContextGuard
    }
    pub(crate) fn context(&self) -> Context {
        Context
    }
    pub(crate) fn with<R>(&self, _f: impl FnOnce(&CurrentTransaction) -> R) -> Option<R> {
        None
    }
}

/// A future polled as it is.
#[derive(Debug)]
pub(crate) struct Instrumented<F>(F);

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the only field.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

#[cfg(apm_server)]
impl<F> Instrumented<F> {
    pub(crate) fn take_pending_end(self: Pin<&mut Self>) -> PendingEnd {
        PendingEnd
    }
}

#[cfg(apm_server)]
#[derive(Debug)]
pub(crate) struct PendingEnd;

#[cfg(apm_server)]
impl PendingEnd {
    #[inline]
    pub(crate) fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        poll()
    }
    pub(crate) fn end(self) {}
}

/// Bridged spans: never made, nothing being recorded.
#[cfg(apm_bridge)]
#[derive(Debug)]
pub(crate) enum SpanFrame {}

/// Handles whose transaction a frame enters: nothing is recorded.
#[cfg(feature = "tracing")]
pub(crate) trait Recorded {}
#[cfg(feature = "tracing")]
impl Recorded for crate::Span {}
#[cfg(feature = "tracing")]
impl Recorded for crate::Transaction {}

#[cfg(apm_bridge)]
impl SpanFrame {
    #[cfg(feature = "tracing")]
    pub(crate) fn of_span(_span: &crate::Span) -> Option<Self> {
        None
    }
    #[cfg(feature = "tracing")]
    pub(crate) fn of_transaction(_t: &crate::Transaction) -> Option<Self> {
        None
    }
    #[cfg(feature = "tracing")]
    pub(crate) fn context(&self, _of: &impl Recorded) -> Option<crate::Context> {
        match *self {}
    }
    #[cfg(feature = "tracing")]
    pub(crate) fn set_leaf(&mut self) {
        match *self {}
    }
    #[cfg(feature = "tracing")]
    pub(crate) fn enter_tracked(&mut self, _of: &impl Recorded) -> Option<Entered> {
        match *self {}
    }
    #[cfg(feature = "tracing")]
    pub(crate) fn left(&mut self, left: Left) {
        match left {}
    }
}

/// OpenTelemetry spans' frames: never made.
#[cfg(feature = "opentelemetry")]
#[derive(Debug)]
pub(crate) enum BridgeFrame {}

#[cfg(feature = "opentelemetry")]
impl BridgeFrame {
    pub(crate) fn of_span(_span: &crate::Span) -> Option<Self> {
        None
    }
    pub(crate) fn of_transaction(_t: &crate::Transaction) -> Option<Self> {
        None
    }
    pub(crate) fn enter(&mut self) -> Option<u64> {
        match *self {}
    }
    pub(crate) fn exit(&mut self, _token: u64) {
        match *self {}
    }
    pub(crate) fn context(&self) -> crate::Context {
        match *self {}
    }
    pub(crate) fn frame(&self) -> &SpanFrame {
        match *self {}
    }
}

/// Entries of bridged spans: never made.
#[cfg(feature = "tracing")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entered {}

#[cfg(feature = "tracing")]
#[derive(Debug)]
pub(crate) enum Left {}

#[cfg(feature = "tracing")]
pub(crate) fn leave_bridged(entered: Entered) -> Option<Left> {
    match entered {}
}

#[cfg(apm_bridge)]
pub(crate) fn rename_span(_span: &mut crate::Span, _name: Cow<'static, str>) {}

#[cfg(feature = "tracing")]
pub(crate) fn add_span_labels(
    _span: &mut crate::Span,
    _labels: &mut Vec<(Cow<'static, str>, crate::LabelValue)>,
) {
}

#[cfg(feature = "tracing")]
pub(crate) fn spare_text() -> String {
    String::new()
}

#[cfg(feature = "tracing")]
pub(crate) fn start_static_span_in(
    _span: &mut crate::Span,
    _meta: &'static crate::types::meta::SpanMeta,
) -> bool {
    false
}

#[cfg(feature = "tracing")]
pub(crate) fn idle_span() -> crate::Span {
    crate::Span(Span::default())
}

#[cfg(apm_bridge)]
pub(crate) fn end_span(_span: &mut crate::Span, _frame: Option<&SpanFrame>) {}

#[cfg(apm_bridge)]
pub(crate) fn end_transaction(
    _t: &crate::Transaction,
    _frame: Option<&SpanFrame>,
    _outcome: Outcome,
) {
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn frame_ids(frame: &BridgeFrame) -> (u128, u64, bool) {
    match *frame {}
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn set_span_type(
    _span: &mut crate::Span,
    _kind: &'static str,
    _subtype: Option<Cow<'static, str>>,
) {
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn set_span_otel(
    _span: &mut crate::Span,
    _span_kind: &'static str,
    _attributes: Vec<opentelemetry::KeyValue>,
) {
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn add_span_link(_span: &mut crate::Span, _trace_id: u128, _span_id: u64) {}

#[cfg(feature = "opentelemetry")]
pub(crate) fn name_only_resource(_span: &mut crate::Span) {}

#[cfg(feature = "opentelemetry")]
pub(crate) fn set_transaction_otel(
    _t: &crate::Transaction,
    _span_kind: &'static str,
    _attributes: Vec<opentelemetry::KeyValue>,
) {
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn add_transaction_link(_t: &crate::Transaction, _trace_id: u128, _span_id: u64) {}

#[cfg(feature = "opentelemetry")]
pub(crate) fn set_transaction_type(_t: &crate::Transaction, _kind: &'static str) {}
