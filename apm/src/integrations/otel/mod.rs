//! `apm::otel`: the OpenTelemetry API bridge. Code instrumented with the
//! [`opentelemetry`](https://docs.rs/opentelemetry) API (0.33) records apm transactions and
//! spans, as the Elastic spec for bridges says (`specs/agents/tracing-api-otel.md`); no
//! OpenTelemetry SDK, exporter or pipeline is involved.
//!
//! ```no_run
//! use opentelemetry::trace::{Tracer, TracerProvider as _};
//!
//! let _agent = apm::init();
//! opentelemetry::global::set_tracer_provider(apm::otel::ApmTracerProvider::new());
//! let tracer = opentelemetry::global::tracer("my-library");
//! tracer.in_span("work", |_cx| {
//!     // ...
//! });
//! ```
//!
//! **Transactions and spans.** An OpenTelemetry span whose parent is a span of this bridge, or
//! that starts where an apm span or transaction is current, becomes an apm span under it. One
//! whose parent is remote (a `SpanContext` extracted from incoming headers) becomes a
//! transaction continuing that trace; one without a parent, a new trace's root transaction.
//!
//! **Kind, attributes, status, links.** The span kind and every attribute are sent as they
//! are (`otel.span_kind`, `otel.attributes`; at most 128 attributes, the last value of a key
//! kept), for the APM Server to map as its OpenTelemetry intake does. The agent derives
//! only what its own features need: a transaction's type (`request` for a `SERVER` span with
//! HTTP or RPC attributes, `messaging` for a `CONSUMER` span with `messaging.system`, else
//! `unknown`); a span's type and subtype (`db`/`db.system`, `messaging`/`messaging.system`,
//! `external`/`rpc.system`, `external`/`http`, else `app`/`internal` for an `INTERNAL` span
//! and `unknown`), and for the first four its service target and
//! `destination.service.resource`. The status gives the outcome: `Ok` success, `Error`
//! failure, unset `unknown` (never inferred from errors); a transaction's `result` is left
//! for the server to infer. Links (at the start or added later, at most 128) become the
//! span's or transaction's `links`; their attributes are not kept. Events are not recorded,
//! and `record_error` sends the error as an apm error, child of the span.
//!
//! **One active context.** While an OpenTelemetry context holding a span of this bridge is
//! attached (`Tracer::in_span`, `mark_span_as_active`, `Context::attach`, and on each poll of
//! a future wrapped by `FutureExt::with_context`), that span is apm's current span too:
//! `#[apm::span]` functions, `apm::start_span` and `capture_error!` inside are its children. A
//! span started from the current context (`Tracer::start`, `in_span`) is a child of apm's
//! current span or transaction, which is the most recent of both. This rests on
//! OpenTelemetry's context observer (its `experimental_context_observer` feature), of which a
//! process has one: if the application set another one first, attached contexts are not seen
//! and a span started from the current context is the child of the OpenTelemetry span
//! attached there, if any, else of apm's current span.
//!
//! **Limits.** `opentelemetry::Context::current()` does not contain apm's own spans (the
//! OpenTelemetry API has no hook for it): [`current_context`] is the current context with
//! apm's current span in it, for an explicit parent or a propagator; spans started from the
//! current context (as above) need neither. Start and end times given through the API are not used (apm times spans with
//! its own clock). The `tracestate` of an apm trace is not in the span contexts the bridge
//! hands out.
//!
//! **Cost.** Outside a sampled transaction (and with no agent running), a span records
//! nothing and keeps no attribute. A recorded span allocates its state once, and takes only
//! its own lock (and a shard of the bridged spans' table, when created, dropped or attached).

mod context;
mod mapping;

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};

use super::facade::{self, BridgeFrame};
use crate::Outcome;

/// Attributes and links kept per span at most (the OpenTelemetry SDK's default limits).
const MAX_ATTRIBUTES: usize = 128;
const MAX_LINKS: usize = 128;

/// An [`opentelemetry::trace::TracerProvider`] whose tracers record apm transactions and
/// spans. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ApmTracerProvider {
    _private: (),
}

impl Default for ApmTracerProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl ApmTracerProvider {
    /// A provider; the first one installs the bridge's context observer.
    pub fn new() -> Self {
        context::install();
        ApmTracerProvider { _private: () }
    }
}

impl opentelemetry::trace::TracerProvider for ApmTracerProvider {
    type Tracer = ApmTracer;

    fn tracer_with_scope(&self, _scope: InstrumentationScope) -> ApmTracer {
        ApmTracer { _private: () }
    }
}

/// The [`opentelemetry::trace::Tracer`] of an [`ApmTracerProvider`].
#[derive(Debug, Clone)]
pub struct ApmTracer {
    _private: (),
}

/// Where a new span opens.
enum Parent {
    /// Under an apm span or transaction (a bridged span's, or apm's current one).
    Local(crate::Context),
    /// A transaction continuing the trace of a span of another process (or of another
    /// OpenTelemetry implementation).
    Remote(SpanContext),
    /// A transaction starting a trace.
    Root,
}

/// Carried by the contexts [`current_context`] makes: the apm context behind their active
/// span (a span of apm's own API, which has no OpenTelemetry handle).
#[derive(Debug)]
struct ApmParent {
    context: crate::Context,
    span_id: SpanId,
}

/// OpenTelemetry's current context, with apm's current span or transaction as its active span
/// when one is current here: what `opentelemetry::Context::current()` cannot give (the API has
/// no hook for another library's spans). Spans started with it as their explicit parent are
/// children of that apm span, and propagators inject that span's ids.
///
/// ```no_run
/// use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
///
/// #[apm::span]
/// fn handler(tracer: &apm::otel::ApmTracer) {
///     let cx = apm::otel::current_context(); // holds `handler`'s span
///     let _child = tracer.start_with_context("query", &cx);
///     assert!(cx.has_active_span());
/// }
/// ```
pub fn current_context() -> Context {
    let apm = crate::Context::current();
    let mut headers: Vec<(String, String)> = Vec::new();
    apm.inject(&mut headers);
    let traceparent = headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.as_str());
    let Some(sc) = traceparent.and_then(parse_traceparent) else {
        return Context::current();
    };
    let span_id = sc.span_id();
    Context::current()
        .with_span(ApmSpan {
            shared: None,
            span_context: sc,
        })
        .with_value(ApmParent {
            context: apm,
            span_id,
        })
}

/// `00-<trace id>-<parent id>-<flags>`, as apm writes it.
fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.split('-');
    let (_version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags),
        false,
        TraceState::default(),
    ))
}

impl Parent {
    /// The parent an explicit context gives.
    fn of(cx: &Context) -> Parent {
        if !cx.has_active_span() {
            return Parent::Root;
        }
        if let Some(apm) = cx.get::<ApmParent>() {
            if apm.span_id == cx.span().span_context().span_id() {
                return Parent::Local(apm.context.clone());
            }
        }
        if let Some(shared) = context::bridged(cx) {
            return Parent::Local(shared.context());
        }
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            Parent::Remote(sc)
        } else {
            Parent::Root
        }
    }

    /// The parent of a span started from the current context: apm's current span (where the
    /// observer keeps attached bridged spans too), unless a span of another origin is attached.
    fn current() -> Parent {
        let otel = Context::map_current(|cx| {
            if !cx.has_active_span() {
                return None;
            }
            if context::bridged(cx).is_some() {
                return (!context::observing()).then(|| Parent::of(cx));
            }
            Some(Parent::of(cx))
        });
        if let Some(parent @ (Parent::Remote(_) | Parent::Local(_))) = otel {
            return parent;
        }
        let apm = crate::Context::current();
        if apm.is_empty() {
            Parent::Root
        } else {
            Parent::Local(apm)
        }
    }
}

impl opentelemetry::trace::Tracer for ApmTracer {
    type Span = ApmSpan;

    /// A span under the current context: apm's current span or transaction (where attached
    /// bridged spans are too), unless OpenTelemetry's current context holds a span of other
    /// origin (the API's default reads OpenTelemetry's current context only).
    fn start<T>(&self, name: T) -> ApmSpan
    where
        T: Into<Cow<'static, str>>,
    {
        self.build(SpanBuilder::from_name(name))
    }

    fn build(&self, builder: SpanBuilder) -> ApmSpan {
        ApmSpan::start(builder, Parent::current())
    }

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> ApmSpan {
        ApmSpan::start(builder, Parent::of(parent_cx))
    }
}

/// An OpenTelemetry span recorded as an apm span or transaction. Ends when
/// [`end`](opentelemetry::trace::Span::end) is called or when dropped.
#[derive(Debug)]
pub struct ApmSpan {
    /// `None` when nothing is recorded.
    shared: Option<Arc<Shared>>,
    span_context: SpanContext,
}

/// The state of a recorded span, shared with the contexts it is attached in.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` once ended.
    handle: Option<Handle>,
    /// Makes it current on apm's stack while attached; kept after the end, so that an entry
    /// made before is still left.
    frame: BridgeFrame,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    /// Links kept so far.
    links: usize,
    status: Status,
}

#[derive(Debug)]
enum Handle {
    Span(crate::Span),
    Transaction(crate::Transaction),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes the span on apm's stack; the token to leave it.
    fn enter(&self) -> Option<u64> {
        self.lock().frame.enter()
    }

    fn exit(&self, token: u64) {
        self.lock().frame.exit(token);
    }

    /// The context its children open under.
    fn context(&self) -> crate::Context {
        self.lock().frame.context()
    }
}

impl ApmSpan {
    fn start(builder: SpanBuilder, parent: Parent) -> ApmSpan {
        let kind = builder.span_kind.clone().unwrap_or(SpanKind::Internal);
        let name = builder.name;
        let (handle, frame, fallback) = match parent {
            Parent::Local(cx) => {
                let span = {
                    let _attached = cx.attach();
                    crate::Span::start(name, "unknown")
                };
                let frame = BridgeFrame::of_span(&span);
                (Handle::Span(span), frame, None)
            }
            Parent::Remote(sc) => {
                let traceparent = format!(
                    "00-{}-{}-{:02x}",
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags().to_u8()
                );
                let tracestate = sc.trace_state().header();
                let mut headers = vec![("traceparent", traceparent)];
                if !tracestate.is_empty() {
                    headers.push(("tracestate", tracestate));
                }
                let t = crate::Transaction::start_with(name, "unknown", &headers);
                let frame = BridgeFrame::of_transaction(&t);
                (Handle::Transaction(t), frame, Some(sc))
            }
            Parent::Root => {
                let t =
                    crate::Transaction::start_with(name, "unknown", &Vec::<(&str, &str)>::new());
                let frame = BridgeFrame::of_transaction(&t);
                (Handle::Transaction(t), frame, None)
            }
        };
        let Some(frame) = frame else {
            // Nothing recorded: the span carries its parent's context on (a remote one), so
            // that what it propagates still continues the trace.
            return ApmSpan {
                shared: None,
                span_context: fallback.unwrap_or(SpanContext::NONE),
            };
        };
        let (trace_id, id, sampled) = facade::frame_ids(&frame);
        let span_context = SpanContext::new(
            TraceId::from_bytes(trace_id.to_be_bytes()),
            SpanId::from_bytes(id.to_be_bytes()),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            false,
            TraceState::default(),
        );
        let mut attributes = builder.attributes.unwrap_or_default();
        attributes.truncate(MAX_ATTRIBUTES);
        let shared = Arc::new(Shared {
            id,
            state: Mutex::new(State {
                handle: Some(handle),
                frame,
                kind,
                attributes,
                links: 0,
                status: Status::Unset,
            }),
        });
        {
            let mut st = shared.lock();
            for link in builder.links.unwrap_or_default().iter() {
                st.add_link(&link.span_context);
            }
        }
        context::table().insert(id, Arc::clone(&shared));
        ApmSpan {
            shared: Some(shared),
            span_context,
        }
    }

    fn with_state(&self, f: impl FnOnce(&mut State)) {
        if let Some(shared) = &self.shared {
            let mut st = shared.lock();
            if st.handle.is_some() {
                f(&mut st);
            }
        }
    }
}

impl State {
    fn add_link(&mut self, sc: &SpanContext) {
        if !sc.is_valid() || self.links >= MAX_LINKS {
            return;
        }
        self.links += 1;
        let trace_id = u128::from_be_bytes(sc.trace_id().to_bytes());
        let span_id = u64::from_be_bytes(sc.span_id().to_bytes());
        match &mut self.handle {
            Some(Handle::Span(span)) => facade::add_span_link(span, trace_id, span_id),
            Some(Handle::Transaction(t)) => facade::add_transaction_link(t, trace_id, span_id),
            None => {}
        }
    }

    fn set_attribute(&mut self, kv: KeyValue) {
        if let Some(old) = self.attributes.iter_mut().find(|a| a.key == kv.key) {
            *old = kv;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(kv);
        }
    }

    fn outcome(&self) -> Outcome {
        match self.status {
            Status::Ok => Outcome::Success,
            Status::Error { .. } => Outcome::Failure,
            Status::Unset => Outcome::Unknown,
        }
    }

    /// Ends the apm side: type, subtype and service target from the kind and attributes,
    /// which then go out as they are.
    fn end(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let outcome = self.outcome();
        let kind = mapping::kind_of(&self.kind);
        let span_kind = kind.otel_name();
        let attributes = std::mem::take(&mut self.attributes);
        match handle {
            Handle::Span(mut span) => {
                let t = mapping::span_type(kind, &attributes);
                facade::set_span_type(&mut span, t.kind, t.subtype);
                if let Some((target_type, name)) = t.target {
                    span.set_exit();
                    span.set_service_target(target_type, name.map(Cow::Owned));
                    if t.name_only_resource {
                        facade::name_only_resource(&mut span);
                    }
                }
                span.set_outcome(outcome);
                facade::set_span_otel(&mut span, span_kind, attributes);
                facade::end_span(&mut span, Some(self.frame.frame()));
            }
            Handle::Transaction(t) => {
                facade::set_transaction_type(&t, mapping::transaction_type(kind, &attributes));
                t.set_outcome(outcome);
                facade::set_transaction_otel(&t, span_kind, attributes);
                facade::end_transaction(&t, Some(self.frame.frame()), outcome);
            }
        }
    }
}

impl opentelemetry::trace::Span for ApmSpan {
    /// Span events are not recorded (the spec's bridges keep none).
    fn add_event_with_timestamp<T>(
        &mut self,
        _name: T,
        _timestamp: SystemTime,
        _attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
    }

    /// Sends the error as an apm error, child of this span.
    fn record_error(&mut self, err: &dyn std::error::Error) {
        let Some(shared) = &self.shared else {
            return;
        };
        let _attached = shared.context().attach();
        crate::capture_error!(err);
    }

    fn span_context(&self) -> &SpanContext {
        &self.span_context
    }

    fn is_recording(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.lock().handle.is_some())
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        self.with_state(|st| st.set_attribute(attribute));
    }

    fn set_status(&mut self, status: Status) {
        // As the API says: `Ok` is final, and `Unset` changes nothing.
        self.with_state(|st| {
            if st.status != Status::Ok && status != Status::Unset {
                st.status = status;
            }
        });
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        self.with_state(|st| match &mut st.handle {
            Some(Handle::Span(span)) => facade::rename_span(span, new_name.into()),
            Some(Handle::Transaction(t)) => t.set_name(new_name),
            None => {}
        });
    }

    fn add_link(&mut self, span_context: SpanContext, _attributes: Vec<KeyValue>) {
        self.with_state(|st| st.add_link(&span_context));
    }

    fn end_with_timestamp(&mut self, _timestamp: SystemTime) {
        if let Some(shared) = &self.shared {
            shared.lock().end();
        }
    }
}

impl Drop for ApmSpan {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.lock().end();
            context::table().remove(shared.id);
        }
    }
}
