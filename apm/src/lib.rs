//! `apm`: an Elastic APM agent for Rust.
//!
//! ```no_run
//! #[apm::transaction]
//! fn handle_job(id: u64) -> Result<(), std::io::Error> {
//!     load(id)?;
//!     Ok(())
//! }
//!
//! #[apm::span(kind = "db", subtype = "postgresql", action = "query")]
//! fn load(id: u64) -> Result<u64, std::io::Error> {
//!     Ok(id)
//! }
//!
//! let agent = apm::init(); // reads ELASTIC_APM_* from the environment
//! handle_job(7).ok();
//! agent.flush(std::time::Duration::from_secs(5));
//! ```
//!
//! With the default feature `enable` off, every macro emits the user's function unchanged and
//! the whole API compiles to no-ops: no threads, no network.
//!
//! # Cargo features
//!
//! | Feature | Default | What it turns on |
//! |---|---|---|
//! | `enable` | yes | The agent itself. Without it every macro emits the function as written and the API compiles to no-ops: no threads, no network, no dependencies beyond the macros. |
//! | `https` | yes | HTTPS to the APM Server: rustls with ring and Mozilla's root certificates. |
//! | `tower` | no | `apm::tower`: a `tower::Layer` tracing each request of an axum, hyper or tonic server. |
//! | `axum` | no | `tower`, with transactions named after axum's route templates, and `apm::tower::CaptureBodyLayer` for request bodies. |
//! | `actix-web` | no | `apm::actix`: actix-web middleware tracing each request, and `apm::actix::CaptureBody`. |
//! | `reqwest` | no | `apm::reqwest`: exit spans for requests sent with reqwest's async client. |
//! | `reqwest-blocking` | no | `reqwest`, and the same for `reqwest::blocking`. |
//! | `minreq-client` | no | `apm::minreq`: exit spans for minreq requests. |
//! | `redis` | no | `apm::redis::Traced`: exit spans for the commands and pipelines of a redis connection, sync or async. Needs Rust 1.88. |
//! | `mysql` | no | `apm::mysql::Traced`: exit spans for the statements of a `mysql` (sync driver) connection or pooled connection. Needs Rust 1.89. |
//! | `rusqlite` | no | `apm::rusqlite`: a `Connection` wrapper giving exit spans for rusqlite's statements and transactions (SQLite bundled). |
//! | `postgres` | no | `apm::postgres`: `Client` wrappers giving exit spans for tokio-postgres and (`apm::postgres::blocking`) postgres statements and transactions. |
//! | `diesel` | no | `apm::diesel`: diesel's instrumentation hook giving exit spans for its queries and transactions (PostgreSQL, MySQL, SQLite). |
//! | `lapin` | no | `apm::lapin`: RabbitMQ through lapin (tokio runtime): exit spans for published messages with the trace context in their headers, and a `messaging` transaction for each delivery consumed. Needs Rust 1.88. |
//! | `nats` | no | `apm::nats`: core NATS through async-nats: exit spans for published messages with the trace context in their headers, and a `messaging` transaction for each message received. Needs Rust 1.89. |
//! | `nats-jetstream` | no | `apm::nats::jetstream`: JetStream through async-nats: exit spans for published messages, a `messaging` transaction for each message consumed (its outcome from the acknowledgement), a poll span with span links for each batch fetched. |
//! | `apalis` | no | `apm::apalis::ApmLayer`: a layer for apalis 1.0 workers; each task run is a `job` transaction named after the task's type, its outcome from the handler's result, its error captured, retries labelled `attempt`, continuing the trace put into the task's metadata where it was enqueued (`apm::apalis::task`). |
//! | `log` | no | `apm::log`: wraps the application's logger; records at or above a level become error events, and every record gets `trace.id`, `transaction.id` and `span.id`. |
//! | `sqlx-postgres` | no | `apm::sqlx`: exit spans for sqlx queries on PostgreSQL, through a `Traced` pool, connection or transaction. sqlx 0.9, which needs Rust 1.94. |
//! | `sqlx-mysql` | no | The same on MySQL and MariaDB. |
//! | `sqlx-sqlite` | no | The same on SQLite. |
//! | `tracing` | no | `apm::tracing`: a `tracing_subscriber::Layer`; tracing spans become spans (transactions at configured roots), `#[tracing::instrument]` and `#[apm::span]` nest both ways, OpenTelemetry fields map to span context, events at or above a level become error events. |
//! | `opentelemetry` | no | `apm::otel`: the OpenTelemetry API bridge (opentelemetry 0.33): an `ApmTracerProvider` whose spans become transactions and spans, kind and attributes sent in `otel`, type, subtype and service target derived as the Elastic spec says, status as outcome, links kept; OpenTelemetry spans and `#[apm::span]` nest both ways. |
//! | `anyhow` | no | `capture_error!` of an `anyhow::Error` sends the backtrace anyhow captured where the error arose (`RUST_BACKTRACE=1` or `RUST_LIB_BACKTRACE=1`) instead of the frames of the call. |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, unreachable_pub)]

/// The README's Rust snippets are compiled and run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use std::borrow::Cow;
use std::time::Duration;

pub use apm_macros::{span, transaction};

/// Applies `#[cfg(feature = "enable")]` to each item: the parts of the runtime that exist only
/// with the agent compiled in. Each stage switches once, in its own `mod.rs`.
macro_rules! cfg_enable {
    ($($item:item)*) => { $( #[cfg(feature = "enable")] $item )* };
}

// The stages, from the bottom up: each imports only from those listed before it (and from
// `config`). See ARCHITECTURE.md.
mod types;
mod util;
cfg_enable! {
    mod queue;
    mod export;
}
mod agent;
mod capture;
mod integrations;

#[doc(hidden)]
pub mod __private;
pub mod config;

/// Entry points of the fuzz targets (`fuzz/`): built with `--cfg fuzzing`. Not public API.
#[cfg(all(feature = "enable", any(test, fuzzing)))]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

cfg_enable! {
    /// Entry points of the benchmarks into the transport's work. Not public API.
    #[doc(hidden)]
    pub mod __bench {
        pub use crate::export::bench::{encode_spans, encode_web_transactions, sanitize_header_names};
    }
}

pub use config::{Config, ConfigBuilder};
#[cfg(feature = "actix-web")]
pub use integrations::actix;
#[cfg(feature = "apalis")]
pub use integrations::apalis;
#[cfg(feature = "diesel")]
pub use integrations::diesel;
#[cfg(feature = "lapin")]
pub use integrations::lapin;
#[cfg(feature = "log")]
pub use integrations::log;
#[cfg(feature = "minreq-client")]
pub use integrations::minreq;
#[cfg(feature = "mysql")]
pub use integrations::mysql;
#[cfg(feature = "nats")]
pub use integrations::nats;
#[cfg(feature = "opentelemetry")]
pub use integrations::otel;
#[cfg(feature = "postgres")]
pub use integrations::postgres;
#[cfg(feature = "redis")]
pub use integrations::redis;
#[cfg(feature = "reqwest")]
pub use integrations::reqwest;
#[cfg(feature = "rusqlite")]
pub use integrations::rusqlite;
#[cfg(apm_db)]
pub use integrations::sqlx;
#[cfg(feature = "tower")]
pub use integrations::tower;
#[cfg(feature = "tracing")]
pub use integrations::tracing;
pub use types::headers::{headers_fn, HeaderSink, HeaderSource, HeadersFn};
pub use types::messaging;
pub use types::meta::Level;
pub use types::outcome::{LabelValue, Outcome};
pub use types::stats::Stats;
pub use types::user::User;
pub use types::web;
pub use util::sql;

/// Starts the agent from the `ELASTIC_APM_*` environment variables.
///
/// Never panics and never fails the application: an invalid value is reported once and its
/// default used. While an agent runs, a second call returns a handle to it instead of starting
/// another one.
pub fn init() -> Agent {
    init_with(Config::from_env())
}

/// Starts the agent with an explicit configuration (see [`Config::builder`]).
pub fn init_with(config: Config) -> Agent {
    integrations::install_error_codes();
    Agent(agent::Agent::start(config))
}

/// The running agent. Dropping the handle returned by the first [`init`] flushes (bounded by
/// five seconds) and stops the background threads.
#[derive(Debug)]
#[must_use = "dropping the agent handle stops the agent"]
pub struct Agent(agent::Agent);

impl Agent {
    /// Sends everything recorded so far. Returns `true` when the APM Server has received it (or
    /// there was nothing to send) before `timeout`, `false` otherwise or when the agent is off
    /// (in a forked child, a handle inherited from the parent is off: it returns at once).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.0.flush(timeout)
    }

    /// Whether this handle refers to a running agent (false when disabled by configuration,
    /// by the `enable` feature, or after shutdown; in a forked child, for a handle inherited
    /// from the parent).
    pub fn is_running(&self) -> bool {
        self.0.is_running()
    }

    /// Counters about what the agent did so far.
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }
}

/// Starts a transaction on this thread; it is the current one until the guard is dropped
/// (or [`TransactionGuard::end`] is called).
pub fn start_transaction(
    name: impl Into<Cow<'static, str>>,
    kind: impl Into<Cow<'static, str>>,
) -> TransactionGuard {
    TransactionGuard(capture::TransactionGuard::start(
        name.into(),
        kind.into(),
        None,
    ))
}

/// Starts a transaction on this thread that continues the distributed trace of an incoming
/// request: `headers` are its headers (`traceparent`, `tracestate`, or the legacy
/// `elastic-apm-traceparent`), read as `trace_continuation_strategy` says. Without a valid
/// `traceparent` it starts a new trace.
///
/// ```no_run
/// let headers = vec![("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")];
/// let _t = apm::start_transaction_with("GET /users", "request", &headers);
/// ```
pub fn start_transaction_with(
    name: impl Into<Cow<'static, str>>,
    kind: impl Into<Cow<'static, str>>,
    headers: &impl HeaderSource,
) -> TransactionGuard {
    TransactionGuard(capture::TransactionGuard::start(
        name.into(),
        kind.into(),
        Some(headers),
    ))
}

/// Writes the propagation headers (`traceparent`, `elastic-apm-traceparent` unless
/// `use_elastic_traceparent_header` is off, and `tracestate` when the trace has one) of
/// the current context into an outgoing request, so the callee continues the trace. An HTTP
/// client integration starts its exit span first, so that the callee's parent is that span.
pub fn inject_headers(sink: &mut impl HeaderSink) {
    Context::current().inject(sink);
}

/// `set_user` and `set_custom_context`, alike on [`Transaction`] and [`TransactionGuard`].
macro_rules! user_and_custom_context_methods {
    () => {
        /// Sets the user served (`context.user`), also sent with the errors captured inside.
        pub fn set_user(&self, user: User) {
            self.0.with(|t| t.set_user(user));
        }

        /// Adds an entry to the custom context (`context.custom`), also sent with the errors
        /// captured inside. Keys are sanitised like labels' keys.
        pub fn set_custom_context(
            &self,
            key: impl Into<Cow<'static, str>>,
            value: impl Into<LabelValue>,
        ) {
            self.0.with(|t| t.set_custom(key.into(), value.into()));
        }
    };
}

/// A transaction that is not tied to a thread: for servers that handle requests as futures.
/// [`Transaction::bind`] runs a future inside it (every poll, any thread) and ends the
/// transaction when that future completes or is dropped; [`Transaction::end`] ends it
/// explicitly. Cloning gives another handle to the same transaction.
#[derive(Debug, Clone, Default)]
pub struct Transaction(capture::Transaction);

impl Transaction {
    /// Starts a transaction (a child of the current context, if any, else a new trace).
    pub fn start(name: impl Into<Cow<'static, str>>, kind: impl Into<Cow<'static, str>>) -> Self {
        Transaction(capture::Transaction::start(name.into(), kind.into(), None))
    }

    /// Starts a transaction continuing the trace of an incoming request's headers.
    pub fn start_with(
        name: impl Into<Cow<'static, str>>,
        kind: impl Into<Cow<'static, str>>,
        headers: &impl HeaderSource,
    ) -> Self {
        Transaction(capture::Transaction::start(
            name.into(),
            kind.into(),
            Some(headers),
        ))
    }

    /// Runs `fut` inside this transaction and ends the transaction when it completes.
    pub fn bind<F: std::future::Future>(&self, fut: F) -> WithContext<F> {
        WithContext(self.0.bind(fut))
    }

    /// Ends the transaction now (later ends do nothing).
    pub fn end(&self) {
        self.0.end();
    }

    /// The context of this transaction, to carry elsewhere or inject into outgoing headers.
    pub fn context(&self) -> Context {
        Context(self.0.context())
    }

    /// Renames the transaction (e.g. once the route is known).
    pub fn set_name(&self, name: impl Into<Cow<'static, str>>) {
        self.0.with(|t| t.set_name(name.into()));
    }

    /// Sets the result (e.g. `HTTP 2xx`).
    pub fn set_result(&self, result: impl Into<Cow<'static, str>>) {
        self.0.with(|t| t.set_result(result.into()));
    }

    /// Sets the outcome.
    pub fn set_outcome(&self, outcome: Outcome) {
        self.0.with(|t| t.set_outcome(outcome));
    }

    /// Adds a label.
    pub fn set_label(&self, key: impl Into<Cow<'static, str>>, value: impl Into<LabelValue>) {
        self.0.with(|t| t.set_label(key.into(), value.into()));
    }

    user_and_custom_context_methods!();

    /// Records the HTTP request this transaction serves (`context.request`).
    pub fn set_request(&self, request: web::Request) {
        self.0.with(|t| t.set_request(request));
    }

    /// Records the response (`context.response`).
    pub fn set_response(&self, response: web::Response) {
        self.0.with(|t| t.set_response(response));
    }

    /// Records the message this (`messaging`) transaction processes (`context.message`).
    pub fn set_message(&self, message: messaging::Message) {
        self.0.with(|t| t.set_message(message));
    }

    /// Whether the transaction is sampled.
    pub fn is_sampled(&self) -> bool {
        self.0.with(|t| t.is_sampled()).unwrap_or(false)
    }

    /// The trace id (32 hex digits), if recording.
    pub fn trace_id(&self) -> Option<String> {
        self.0.with(|t| t.trace_id())
    }

    /// The transaction id (16 hex digits), if recording.
    pub fn id(&self) -> Option<String> {
        self.0.with(|t| t.id())
    }
}

/// Starts a span, child of the current span or transaction, and makes it current until the
/// guard is dropped. Without a current sampled transaction it records nothing.
pub fn start_span(
    name: impl Into<Cow<'static, str>>,
    kind: impl Into<Cow<'static, str>>,
) -> SpanGuard {
    SpanGuard(capture::SpanGuard::start(name.into(), kind.into()))
}

/// A running transaction, current on this thread while the guard lives.
#[derive(Debug)]
#[must_use = "the transaction ends when the guard is dropped"]
pub struct TransactionGuard(pub(crate) capture::TransactionGuard);

impl TransactionGuard {
    /// Ends the transaction now.
    pub fn end(self) {}

    /// Renames the transaction.
    pub fn set_name(&self, name: impl Into<Cow<'static, str>>) {
        self.0.with(|t| t.set_name(name.into()));
    }

    /// Sets the transaction's result (e.g. `HTTP 2xx`, `success`).
    pub fn set_result(&self, result: impl Into<Cow<'static, str>>) {
        self.0.with(|t| t.set_result(result.into()));
    }

    /// Sets the outcome; otherwise it is `success`, or `failure` when a panic unwinds
    /// through the guard.
    pub fn set_outcome(&self, outcome: Outcome) {
        self.0.with(|t| t.set_outcome(outcome));
    }

    /// Adds a label (`labels` in the event). Keys are sanitised as the spec says (`.`, `*`
    /// and `"` become `_`).
    pub fn set_label(&self, key: impl Into<Cow<'static, str>>, value: impl Into<LabelValue>) {
        self.0.with(|t| t.set_label(key.into(), value.into()));
    }

    user_and_custom_context_methods!();

    /// Whether the transaction is sampled (its spans and context are recorded).
    pub fn is_sampled(&self) -> bool {
        self.0.with(|t| t.is_sampled()).unwrap_or(false)
    }

    /// The trace id as 32 lower-case hex digits, if a transaction is recording.
    pub fn trace_id(&self) -> Option<String> {
        self.0.with(|t| t.trace_id())
    }

    /// The transaction id as 16 lower-case hex digits, if a transaction is recording.
    pub fn id(&self) -> Option<String> {
        self.0.with(|t| t.id())
    }
}

/// A running span, current on this thread while the guard lives.
#[derive(Debug)]
#[must_use = "the span ends when the guard is dropped"]
pub struct SpanGuard(pub(crate) capture::SpanGuard);

/// The methods every span handle has ([`SpanGuard`], [`Span`]).
macro_rules! span_methods {
    () => {
        /// Sets the span's subtype (e.g. `postgresql`).
        pub fn set_subtype(&mut self, subtype: impl Into<Cow<'static, str>>) {
            self.0.core().set_subtype(subtype.into());
        }

        /// Sets the span's action (e.g. `query`).
        pub fn set_action(&mut self, action: impl Into<Cow<'static, str>>) {
            self.0.core().set_action(action.into());
        }

        /// Sets the outcome; otherwise it is `success`, or `failure` when a panic unwinds
        /// through the guard.
        pub fn set_outcome(&mut self, outcome: Outcome) {
            self.0.core().set_outcome(outcome);
        }

        /// Adds a label to the span.
        pub fn set_label(
            &mut self,
            key: impl Into<Cow<'static, str>>,
            value: impl Into<LabelValue>,
        ) {
            self.0.core().set_label(key.into(), value.into());
        }

        /// Marks the span as an exit span: a call to another service. Its `service.target`
        /// and `destination` are inferred from the context set below, as the spec says. An
        /// exit span is a leaf: spans started under it (the client library's own
        /// instrumentation, say) are not recorded.
        pub fn set_exit(&mut self) {
            self.0.set_exit();
        }

        /// `context.http` of an outgoing request (the URL's user information is removed
        /// when sent).
        pub fn set_http_request(
            &mut self,
            method: impl Into<Cow<'static, str>>,
            url: impl Into<String>,
        ) {
            self.0.core().set_http_request(method.into(), url.into());
        }

        /// The response status of an outgoing HTTP request.
        pub fn set_http_status(&mut self, status: u16) {
            self.0.core().set_http_status(status);
        }

        /// `context.db`: the database type (e.g. `sql`), instance and statement. For a SQL
        /// statement, [`sql::signature`](crate::util::sql::signature) gives the span's name.
        pub fn set_db(
            &mut self,
            db_type: impl Into<Cow<'static, str>>,
            instance: Option<String>,
            statement: Option<String>,
        ) {
            self.0.core().set_db(db_type.into(), instance, statement);
        }

        /// `context.db.user`: the database user the statement runs as.
        pub fn set_db_user(&mut self, user: impl Into<String>) {
            self.0.core().set_db_user(user.into());
        }

        /// `context.db.rows_affected`: the rows the statement changed or returned.
        pub fn set_db_rows_affected(&mut self, rows: u64) {
            self.0.core().set_db_rows_affected(rows);
        }

        /// `context.db.link`: the database link the statement goes through (see
        /// [`sql::db_link`](crate::sql::db_link)).
        pub fn set_db_link(&mut self, link: impl Into<String>) {
            self.0.core().set_db_link(link.into());
        }

        /// `context.destination.address` and `port`: the host the span calls (a database's,
        /// a broker's). HTTP spans take them from their URL when this is not set.
        pub fn set_destination(&mut self, address: Option<String>, port: Option<u16>) {
            self.0.core().set_destination(address, port);
        }

        /// `context.message.queue.name` (messaging spans).
        pub fn set_message_queue(&mut self, queue: impl Into<String>) {
            self.0.core().set_message_queue(queue.into());
        }

        /// Renames the span (a receive span learns its queue's name from the messages it
        /// brought).
        pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
            self.0.core().set_name(name.into());
        }

        /// Adds a span link to the span named by the `traceparent` in `headers` (a message's
        /// headers, say: a span receiving a batch links to each message's producer). Returns
        /// false, adding nothing, when `headers` carry no valid `traceparent`, when the span
        /// is not recorded, or when it already has 1 000 links (the spec's bound on the cost
        /// of huge batches).
        pub fn add_link(&mut self, headers: &impl HeaderSource) -> bool {
            self.0.core().add_link(headers)
        }

        /// Sets `service.target` explicitly (inference then leaves it alone).
        pub fn set_service_target(
            &mut self,
            target_type: impl Into<Cow<'static, str>>,
            name: Option<Cow<'static, str>>,
        ) {
            self.0.core().set_service_target(target_type.into(), name);
        }

        /// Writes `traceparent` (this span as the parent) and `tracestate` into the headers
        /// of the outgoing call this span times.
        pub fn inject(&self, sink: &mut impl HeaderSink) {
            self.0.core_ref().inject(sink);
        }

        /// Whether this span is being recorded (a sampled transaction is current and
        /// `transaction_max_spans` is not reached).
        pub fn is_recording(&self) -> bool {
            self.0.core_ref().is_recording()
        }

        /// The span id as 16 lower-case hex digits, if recording.
        pub fn id(&self) -> Option<String> {
            self.0.core_ref().id()
        }
    };
}

impl SpanGuard {
    /// Ends the span now.
    pub fn end(self) {}

    span_methods!();
}

/// A span that is never current on any thread: it times a call whose work happens
/// elsewhere, typically an HTTP client request in an async task. It is `Send`, starts as a
/// child of the current context, and ends when dropped (or with [`Span::end`]).
#[derive(Debug)]
#[must_use = "the span ends when dropped"]
pub struct Span(pub(crate) capture::Span);

impl Span {
    /// Starts a span under the current context (records nothing without one).
    pub fn start(name: impl Into<Cow<'static, str>>, kind: impl Into<Cow<'static, str>>) -> Span {
        Span(capture::Span::start(name.into(), kind.into()))
    }

    /// Ends the span now.
    pub fn end(self) {}

    span_methods!();
}

/// Adds a label to the current transaction.
pub fn set_label(key: impl Into<Cow<'static, str>>, value: impl Into<LabelValue>) {
    capture::with_current_transaction(|t| t.set_label(key.into(), value.into()));
}

/// Sets the user the current transaction serves (`context.user`), also sent with the errors
/// captured inside it.
pub fn set_user(user: User) {
    capture::with_current_transaction(|t| t.set_user(user));
}

/// Adds an entry to the current transaction's custom context (`context.custom`), also sent
/// with the errors captured inside it. Values are strings, numbers or booleans; keys are
/// sanitised like labels' keys.
pub fn set_custom_context(key: impl Into<Cow<'static, str>>, value: impl Into<LabelValue>) {
    capture::with_current_transaction(|t| t.set_custom(key.into(), value.into()));
}

/// Sets the result of the current transaction.
pub fn set_transaction_result(result: impl Into<Cow<'static, str>>) {
    capture::with_current_transaction(|t| t.set_result(result.into()));
}

/// Sets the outcome of the current transaction.
pub fn set_transaction_outcome(outcome: Outcome) {
    capture::with_current_transaction(|t| t.set_outcome(outcome));
}

/// Renames the current transaction.
pub fn set_transaction_name(name: impl Into<Cow<'static, str>>) {
    capture::with_current_transaction(|t| t.set_name(name.into()));
}

/// Installs the panic hook: from then on every panic, on any thread or task, is sent as an
/// unhandled error (`exception.handled: false`, type `panic`) with its message, location and
/// stack trace, linked to the transaction and span current where it happened, which end with
/// outcome `failure` as the panic unwinds through them. The hook in place before it still
/// runs, after it.
///
/// Opt-in: call it once, after `init` and after installing any hook of your own (a hook
/// installed later replaces this one unless it calls the previous). When the panic ends the
/// process (`panic = "abort"`, or a panic on the main thread), the event is flushed first,
/// waiting at most 2 seconds for the APM Server. Returns `false` when called while panicking
/// or with the agent compiled out.
pub fn install_panic_hook() -> bool {
    capture::install_panic_hook()
}

/// The ids current on this thread (or in this instrumented future), for code that formats
/// its own log lines (`trace.id`, `transaction.id`, `span.id` in ECS); `None` outside any
/// transaction. Unsampled transactions have ids too: logs still correlate by trace.
///
/// ```no_run
/// if let Some(ids) = apm::current_ids() {
///     println!("payment declined {ids}"); // trace.id=… transaction.id=… span.id=…
/// }
/// ```
pub fn current_ids() -> Option<CurrentIds> {
    capture::current_ids().map(|(trace_id, transaction_id, span_id)| {
        CurrentIds::new(trace_id, transaction_id, span_id)
    })
}

/// The trace, transaction and span current somewhere (see [`current_ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentIds {
    trace_id: u128,
    transaction_id: u64,
    span_id: Option<u64>,
}

impl CurrentIds {
    pub(crate) const fn new(trace_id: u128, transaction_id: u64, span_id: Option<u64>) -> Self {
        CurrentIds {
            trace_id,
            transaction_id,
            span_id,
        }
    }

    pub(crate) const fn raw_trace_id(&self) -> u128 {
        self.trace_id
    }

    pub(crate) const fn raw_transaction_id(&self) -> u64 {
        self.transaction_id
    }

    pub(crate) const fn raw_span_id(&self) -> Option<u64> {
        self.span_id
    }

    /// The trace id: 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The transaction id: 16 lower-case hex digits.
    pub fn transaction_id(&self) -> String {
        format!("{:016x}", self.transaction_id)
    }

    /// The current span's id (16 lower-case hex digits); `None` when the transaction itself
    /// is current.
    pub fn span_id(&self) -> Option<String> {
        self.span_id.map(|id| format!("{id:016x}"))
    }
}

/// `trace.id=… transaction.id=…` and ` span.id=…` when a span is current.
impl std::fmt::Display for CurrentIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trace.id={:032x} transaction.id={:016x}",
            self.raw_trace_id(),
            self.raw_transaction_id()
        )?;
        if let Some(span) = self.raw_span_id() {
            write!(f, " span.id={span:016x}")?;
        }
        Ok(())
    }
}

/// The trace context current on this thread (or in this instrumented future), to continue
/// elsewhere: on another thread, in a spawned task, in a thread pool.
///
/// ```no_run
/// let ctx = apm::Context::current();
/// std::thread::spawn(ctx.wrap(|| {
///     let _span = apm::start_span("work on another thread", "app");
/// }));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Context(capture::Context);

impl Context {
    /// Captures the current context (empty when no transaction is current).
    pub fn current() -> Context {
        Context(capture::Context::current())
    }

    /// Whether a transaction is behind this context.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes `traceparent` (and `tracestate`) for an outgoing call made in this context.
    pub fn inject(&self, sink: &mut impl HeaderSink) {
        self.0.inject(sink);
    }

    /// Makes this context current on this thread until the guard is dropped.
    pub fn attach(&self) -> ContextGuard {
        ContextGuard {
            _attached: self.0.attach(),
        }
    }

    /// Wraps a closure so that it runs inside this context, wherever it is called.
    pub fn wrap<F: FnOnce() -> R, R>(self, f: F) -> impl FnOnce() -> R {
        move || {
            let _guard = self.attach();
            f()
        }
    }

    /// Wraps a future so that every poll of it runs inside this context.
    pub fn bind<F: std::future::Future>(self, fut: F) -> WithContext<F> {
        WithContext(self.0.bind(fut))
    }
}

/// Keeps a [`Context`] current on this thread; restores the previous one on drop.
#[derive(Debug)]
#[must_use = "the context is left when the guard is dropped"]
pub struct ContextGuard {
    _attached: capture::ContextGuard,
}

/// A future running inside a [`Context`] (see [`Context::bind`] and [`FutureExt`]).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct WithContext<F>(capture::Instrumented<F>);

impl<F: std::future::Future> std::future::Future for WithContext<F> {
    type Output = F::Output;
    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // SAFETY: structural pinning of the only field; `WithContext` has no `Drop` and is
        // never moved out of.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

/// Carries the current context into a future: `tokio::spawn(fut.in_current_context())`.
pub trait FutureExt: std::future::Future + Sized {
    /// Runs this future inside the context current now.
    fn in_current_context(self) -> WithContext<Self> {
        Context::current().bind(self)
    }
}
impl<F: std::future::Future> FutureExt for F {}

/// Captures an error: an error event linked to the current trace, transaction and span, with
/// the error's type, message, `source()` chain and the place of this call.
///
/// Accepts any `E: std::error::Error` value or reference, and `Box<dyn Error>`-like values
/// (anything that dereferences to `dyn Error`, `anyhow::Error` among them). With the `anyhow`
/// feature, an `anyhow::Error` whose backtrace was captured (`RUST_BACKTRACE=1` or
/// `RUST_LIB_BACKTRACE=1`) is sent with that backtrace's frames, those of where the error
/// arose, instead of the frames of this call.
///
/// ```no_run
/// # fn parse() -> Result<u32, std::num::ParseIntError> { "x".parse() }
/// if let Err(e) = parse() {
///     apm::capture_error!(e);
/// }
/// ```
#[cfg(feature = "enable")]
#[macro_export]
macro_rules! capture_error {
    ($err:expr $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::__private::{AsDynError as _, CarriedBacktrace as _, NoBacktrace as _};
        static __APM_SITE: $crate::__private::Site = $crate::__private::Site {
            module: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        };
        // `match` keeps a temporary argument alive and borrows a place without moving it.
        match $err {
            ref __apm_arg => {
                let __apm_trace = $crate::__private::Carrier(__apm_arg).__apm_backtrace();
                let (__apm_err, __apm_type) = __apm_arg.__apm_as_dyn_error();
                $crate::__private::capture_error(__apm_err, __apm_type, __apm_trace, &__APM_SITE)
            }
        }
    }};
}

/// Captures an error (compiled out: the argument is type-checked, never evaluated).
#[cfg(not(feature = "enable"))]
#[macro_export]
macro_rules! capture_error {
    ($err:expr $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::__private::AsDynError as _;
        let _ = || match $err {
            ref __apm_err => {
                let _ = __apm_err.__apm_as_dyn_error();
            }
        };
    }};
}

/// Sends a message as an error event (`log.message`, `log.level`, and the format string as
/// `log.param_message`), linked to the current trace, transaction and span like
/// [`capture_error!`], with the stack trace of this call. The message is formatted only when
/// an agent is recording.
///
/// ```no_run
/// # let (user, pct) = (7, 93);
/// apm::capture_message!(apm::Level::Warn, "quota of user {} at {}%", user, pct);
/// apm::capture_message!(apm::Level::Error, "payment provider down");
/// ```
#[cfg(feature = "enable")]
#[macro_export]
macro_rules! capture_message {
    ($level:expr, $fmt:literal $($arg:tt)*) => {{
        static __APM_SITE: $crate::__private::Site = $crate::__private::Site {
            module: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        };
        $crate::__private::capture_message(
            $level,
            ::core::format_args!($fmt $($arg)*),
            $fmt,
            &__APM_SITE,
        )
    }};
}

/// Sends a message as an error event (compiled out: the arguments are type-checked, never
/// evaluated).
#[cfg(not(feature = "enable"))]
#[macro_export]
macro_rules! capture_message {
    ($level:expr, $fmt:literal $($arg:tt)*) => {{
        let _ = || {
            let _: $crate::Level = $level;
            let _ = ::core::format_args!($fmt $($arg)*);
        };
    }};
}
