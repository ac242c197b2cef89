//! The one door from the integrations into the runtime. Integrations use the public API
//! (`crate::Transaction`, `crate::Span`, ...) and, for what only an integration may do, this
//! module; nothing else of `capture`, `queue` or the agent. Each item exists only when an
//! integration that needs it is compiled (`apm_server`, `apm_client`: see `build.rs`).

/// `apm::log` and `apm::tracing`: a log record sent as an error event.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) use crate::capture::capture_log;

/// HTTP clients and servers: the status an error of theirs carries, as `exception.code`.
#[cfg(all(feature = "enable", any(feature = "reqwest", feature = "actix-web")))]
pub(crate) use crate::capture::{downcast, read_codes_with};
#[cfg(all(feature = "enable", any(feature = "reqwest", feature = "actix-web")))]
pub(crate) use crate::types::record::ErrorCode;

/// `apm::otel`: a span's frame with its own reference to its transaction (kept after the
/// span's end).
#[cfg(feature = "opentelemetry")]
pub(crate) use crate::capture::BridgeFrame;
/// `apm::tracing`: static names for spans whose name and type are known at their call site;
/// frames that enter the transaction their handle keeps.
#[cfg(feature = "tracing")]
pub(crate) use crate::capture::{
    add_span_labels, idle_span, leave_bridged, spans_recorded_here as tracing_spans_recorded_here,
    spare_text, start_static_span_in, Entered, SpanFrame,
};
/// `apm::otel`: what OpenTelemetry spans carry that apm's own do not (`otel.span_kind` and
/// `otel.attributes`, links added after the start, a type known only at the end).
#[cfg(feature = "opentelemetry")]
pub(crate) use crate::capture::{
    add_span_link, add_transaction_link, frame_ids, name_only_resource, set_span_otel,
    set_span_type, set_transaction_otel, set_transaction_type,
};
/// `apm::tracing` and `apm::otel`: another library's spans made current on apm's own stack
/// while entered (attached), so that `#[apm::span]` and theirs nest in either direction; and
/// the end of a bridged span or transaction with the time its children ran.
#[cfg(apm_bridge)]
pub(crate) use crate::capture::{end_span, end_transaction, rename_span};
#[cfg(feature = "tracing")]
pub(crate) use crate::types::meta::SpanMeta;

#[cfg(apm_server)]
pub(crate) use server::{name_buffer, PendingEnd, ServerInstrumented, ServerTransaction};

/// Database, cache and HTTP clients: a call past `transaction_max_spans` is still timed, for
/// the transaction's `dropped_spans_stats`.
#[cfg(apm_exit_stats)]
pub(crate) use crate::capture::OverLimitExit;
#[cfg(apm_db_client)]
pub(crate) use crate::types::db::DbEndpoint;
#[cfg(apm_sql)]
pub(crate) use sql::{start_db_guard, start_db_span, DbAction, DbStatement};

#[cfg(apm_client)]
pub(crate) use client::spans_recorded_here;
#[cfg(apm_http_client)]
pub(crate) use client::IdleSpan;

#[cfg(all(any(apm_server, apm_messaging), feature = "enable"))]
pub(crate) use config::{derived, Derived};

/// What server integrations do to the transaction of a request: bind the handler's future to
/// it and keep it open until the response's body is done, and give the result and outcome
/// they derive (which give way to the application's).
#[cfg(apm_server)]
mod server {
    use std::borrow::Cow;
    use std::future::Future;

    pub(crate) use crate::capture::{name_buffer, Instrumented as ServerInstrumented, PendingEnd};
    use crate::{web, ContextGuard, Outcome, Transaction};

    pub(crate) trait ServerTransaction {
        /// Runs `fut` inside the transaction, which stays open after it completes until
        /// [`ServerInstrumented::take_pending_end`]'s result is dropped.
        fn bind_until_handed_over<F: Future>(&self, fut: F) -> ServerInstrumented<F>;
        /// The result derived from the response (`HTTP 2xx`), unless the application set one.
        fn default_result(&self, result: impl Into<Cow<'static, str>>);
        /// The outcome derived from the response, unless the application set one.
        fn default_outcome(&self, outcome: Outcome);
        /// The request failed (an error instead of a response, a panic): `failure`, unless
        /// the application set an outcome.
        fn integration_failed(&self);
        /// Records `context.request`, written by `write` over an earlier request's strings
        /// (what it holds on entry is that request's): once warm, no allocation per header.
        fn set_request_with(&self, write: impl FnOnce(&mut web::Request));
        /// Records `context.response` the same way.
        fn set_response_with(&self, write: impl FnOnce(&mut web::Response));
        /// Makes the transaction current on this thread until the guard is dropped (the
        /// inner service's `call`, which may do work before it gives its future).
        fn attach(&self) -> ContextGuard;
    }

    impl ServerTransaction for Transaction {
        fn bind_until_handed_over<F: Future>(&self, fut: F) -> ServerInstrumented<F> {
            self.0.bind_until_handed_over(fut)
        }
        fn default_result(&self, result: impl Into<Cow<'static, str>>) {
            self.0.with(|t| t.default_result(result.into()));
        }
        fn default_outcome(&self, outcome: Outcome) {
            self.0.with(|t| t.default_outcome(outcome));
        }
        fn integration_failed(&self) {
            self.0.with(|t| t.integration_failed());
        }
        fn set_request_with(&self, write: impl FnOnce(&mut web::Request)) {
            self.0.with(|t| t.set_request_with(write));
        }
        fn set_response_with(&self, write: impl FnOnce(&mut web::Response)) {
            self.0.with(|t| t.set_response_with(write));
        }
        fn attach(&self) -> ContextGuard {
            ContextGuard {
                _attached: self.0.attach(),
            }
        }
    }
}

/// What SQL client integrations need: spans of statements that cost no allocation once a
/// statement has been seen.
#[cfg(apm_sql)]
mod sql {
    use std::sync::Arc;

    use crate::types::db::DbEndpoint;
    pub(crate) use crate::types::db::{DbAction, DbStatement};

    /// The span of a statement, current on this thread until dropped.
    #[inline]
    pub(crate) fn start_db_guard(
        endpoint: &Arc<DbEndpoint>,
        statement: DbStatement<'_>,
        action: DbAction,
    ) -> crate::SpanGuard {
        crate::SpanGuard(crate::capture::start_db_guard(endpoint, statement, action))
    }

    /// The span of a statement whose call is awaited (never current).
    #[inline]
    pub(crate) fn start_db_span(
        endpoint: &Arc<DbEndpoint>,
        statement: DbStatement<'_>,
        action: DbAction,
    ) -> crate::Span {
        crate::Span(crate::capture::start_db_span(endpoint, statement, action))
    }
}

/// What client integrations need: whether a span would be recorded here (checked before
/// building its name, so that unsampled calls allocate nothing), and handles that record
/// nothing.
#[cfg(apm_client)]
mod client {
    pub(crate) use crate::capture::spans_recorded_here;

    /// A span handle that records nothing (its `inject` still writes the current context's
    /// headers).
    #[cfg(apm_http_client)]
    pub(crate) trait IdleSpan {
        fn idle() -> Self;
    }

    #[cfg(apm_http_client)]
    impl IdleSpan for crate::SpanGuard {
        fn idle() -> Self {
            crate::SpanGuard(Default::default())
        }
    }

    #[cfg(apm_http_client)]
    impl IdleSpan for crate::Span {
        fn idle() -> Self {
            crate::Span(Default::default())
        }
    }
}

/// The configuration in effect (central configuration applied), for what integrations compile
/// from it.
#[cfg(all(any(apm_server, apm_messaging), feature = "enable"))]
mod config {
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::thread::LocalKey;

    use crate::queue::tracer;
    use crate::Config;

    /// Which configuration is in effect: it changes when the agent restarts or central
    /// configuration changes an option.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct EffectiveConfig {
        tracer: usize,
        generation: u64,
    }

    /// A thread's copy of what an integration compiled from the configuration in effect.
    /// Per thread, so that reading it per request or per message touches nothing another
    /// thread writes: a lock or a reference count shared by all would be one cache line that
    /// every request of every thread takes in turn.
    pub(crate) type Derived<T> = RefCell<Option<(EffectiveConfig, Arc<T>)>>;

    /// What `make` compiles from the configuration in effect, from this thread's `cache` while
    /// that configuration stays in effect (rebuilt once per thread when it changes); `None`
    /// when no agent runs.
    pub(crate) fn derived<T>(
        cache: &'static LocalKey<Derived<T>>,
        make: impl FnOnce(&Config) -> T,
    ) -> Option<Arc<T>> {
        let t = tracer::get()?;
        let now = EffectiveConfig {
            tracer: t as *const tracer::Tracer as usize,
            generation: t.generation(),
        };
        let kept = cache.try_with(|c| match c.try_borrow().as_deref() {
            Ok(Some((seen, value))) if *seen == now => Some(Arc::clone(value)),
            _ => None,
        });
        if let Ok(Some(value)) = kept {
            return Some(value);
        }
        let value = Arc::new(make(&t.effective()));
        let _ = cache.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = Some((now, Arc::clone(&value)));
            }
        });
        Some(value)
    }
}
