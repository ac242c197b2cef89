//! What the application threads hand to the transport thread: fixed-size, allocation-free for
//! spans with static names; turned into JSON only on the transport thread.

use std::borrow::Cow;

use super::clock::Tick;
#[cfg(apm_sql)]
use super::db::{DbAction, DbEndpoint, SqlText};
use super::messaging::Message;
use super::meta::{Site, SpanMeta, TransactionMeta};
use super::outcome::Outcome;
use super::raw_stack::RawStack;
#[cfg(apm_sql)]
use super::span_context::{Db, Destination};
use super::span_context::{Labels, Link, SpanExtra};
use super::user::User;
use super::web::{Request, Response};
#[cfg(apm_sql)]
use std::sync::Arc;

/// A span's name and kind: a pointer to the macro's static, or owned text for the manual API.
#[derive(Debug)]
pub(crate) enum SpanName {
    Static(&'static SpanMeta),
    Dynamic(Box<DynamicSpanName>),
    /// A statement of an SQL client: named after it, and its `context.db` written, on the
    /// transport thread ([`SpanRecord::expand_db`]).
    #[cfg(apm_sql)]
    Db(DbCall),
}

#[cfg(feature = "enable")]
impl SpanName {
    /// No name: what is left where a name was moved out (a span ended where it lies).
    pub(crate) const EMPTY: SpanName = SpanName::Static(&SpanMeta::new("", "", None, None));
}

/// The span of one statement as the application thread records it: two shared pointers and
/// the rows it changed, nothing allocated.
#[cfg(apm_sql)]
#[derive(Debug)]
pub(crate) struct DbCall {
    pub(crate) endpoint: Arc<DbEndpoint>,
    pub(crate) text: Arc<SqlText>,
    pub(crate) action: DbAction,
    /// `context.db.rows_affected`; [`DbCall::NO_ROWS`] when unknown.
    pub(crate) rows: u64,
}

#[cfg(apm_sql)]
impl DbCall {
    pub(crate) const NO_ROWS: u64 = u64::MAX;
}

#[derive(Debug)]
pub(crate) struct DynamicSpanName {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: Cow<'static, str>,
    pub(crate) subtype: Option<Cow<'static, str>>,
    pub(crate) action: Option<Cow<'static, str>>,
}

#[cfg(feature = "enable")]
impl DynamicSpanName {
    /// No name: what a spare box holds between two spans (`queue/spare.rs`).
    pub(crate) const EMPTY: DynamicSpanName = DynamicSpanName {
        name: Cow::Borrowed(""),
        kind: Cow::Borrowed(""),
        subtype: None,
        action: None,
    };
}

impl SpanName {
    pub(crate) fn name(&self) -> &str {
        match self {
            SpanName::Static(m) => m.name,
            SpanName::Dynamic(d) => &d.name,
            #[cfg(apm_sql)]
            SpanName::Db(c) => c.name(),
        }
    }
    pub(crate) fn kind(&self) -> &str {
        match self {
            SpanName::Static(m) => m.kind,
            SpanName::Dynamic(d) => &d.kind,
            #[cfg(apm_sql)]
            SpanName::Db(_) => "db",
        }
    }
    pub(crate) fn subtype(&self) -> Option<&str> {
        match self {
            SpanName::Static(m) => m.subtype,
            SpanName::Dynamic(d) => d.subtype.as_deref(),
            #[cfg(apm_sql)]
            SpanName::Db(c) => Some(c.endpoint.subtype),
        }
    }
    pub(crate) fn action(&self) -> Option<&str> {
        match self {
            SpanName::Static(m) => m.action,
            SpanName::Dynamic(d) => d.action.as_deref(),
            #[cfg(apm_sql)]
            SpanName::Db(c) => Some(c.action.as_str()),
        }
    }
    /// Its texts go into JSON as they are (a call site's static, checked when compiled).
    #[inline]
    pub(crate) fn plain(&self) -> bool {
        matches!(self, SpanName::Static(m) if m.plain)
    }
    /// Turns the name into an owned one, so that parts of it can change. A statement's
    /// context is not kept: [`SpanRecord::expand_db`] first.
    pub(crate) fn make_dynamic(&mut self) -> &mut DynamicSpanName {
        let dynamic = match self {
            SpanName::Dynamic(d) => return d,
            SpanName::Static(m) => DynamicSpanName {
                name: Cow::Borrowed(m.name),
                kind: Cow::Borrowed(m.kind),
                subtype: m.subtype.map(Cow::Borrowed),
                action: m.action.map(Cow::Borrowed),
            },
            #[cfg(apm_sql)]
            SpanName::Db(c) => c.dynamic_name(),
        };
        *self = SpanName::Dynamic(Box::new(dynamic));
        match self {
            SpanName::Dynamic(d) => d,
            _ => unreachable!("made dynamic above"),
        }
    }
}

#[cfg(apm_sql)]
impl DbCall {
    /// The statement's signature; the subtype for a statement that has none (`(SELECT 1)`).
    fn name(&self) -> &str {
        if self.text.name.is_empty() {
            self.endpoint.subtype
        } else {
            &self.text.name
        }
    }

    fn dynamic_name(&self) -> DynamicSpanName {
        DynamicSpanName {
            name: if self.text.name.is_empty() {
                Cow::Borrowed(self.endpoint.subtype)
            } else {
                self.text.name.clone()
            },
            kind: Cow::Borrowed("db"),
            subtype: Some(Cow::Borrowed(self.endpoint.subtype)),
            action: Some(Cow::Borrowed(self.action.as_str())),
        }
    }
}

#[cfg(apm_sql)]
impl SpanRecord {
    /// Writes a statement's span as every other span is written: its name, and its
    /// `context.db` and `destination` in its extra part (transport thread).
    pub(crate) fn expand_db(&mut self) {
        let SpanName::Db(call) = &self.name else {
            return;
        };
        let endpoint = &call.endpoint;
        let extra = self.extra.get_or_insert_with(Default::default);
        extra.exit = true;
        extra.db = Some(Db {
            kind: Some(Cow::Borrowed("sql")),
            instance: endpoint.instance.clone(),
            statement: call.text.statement.as_deref().map(str::to_owned),
            user: endpoint.user.clone(),
            rows_affected: (call.rows != DbCall::NO_ROWS).then_some(call.rows),
            link: None,
        });
        if let Some((host, port)) = &endpoint.destination {
            extra.destination = Some(Destination {
                address: Some(host.clone()),
                port: *port,
            });
        }
        self.name = SpanName::Dynamic(Box::new(call.dynamic_name()));
    }
}

/// One finished span.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: u128,
    pub(crate) transaction_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) id: u64,
    pub(crate) name: SpanName,
    pub(crate) start: Tick,
    pub(crate) end: Tick,
    /// Sample rate × 10 000 (the rate has four decimals).
    pub(crate) sample_rate: u16,
    pub(crate) outcome: Outcome,
    /// Labels and exit-span context, when any was set.
    pub(crate) extra: Option<Box<SpanExtra>>,
    /// Time during which its children ran (self time = duration − this).
    pub(crate) child_ns: u64,
}

/// A transaction's name and type.
#[derive(Debug, Clone)]
pub(crate) enum TransactionName {
    Static(&'static TransactionMeta),
    Dynamic(Cow<'static, str>, Cow<'static, str>),
}

impl TransactionName {
    /// No name: what is left where a name was moved out.
    pub(crate) const EMPTY: TransactionName =
        TransactionName::Dynamic(Cow::Borrowed(""), Cow::Borrowed(""));

    pub(crate) fn name(&self) -> &str {
        match self {
            TransactionName::Static(m) => m.name,
            TransactionName::Dynamic(n, _) => n,
        }
    }
    pub(crate) fn kind(&self) -> &str {
        match self {
            TransactionName::Static(m) => m.kind,
            TransactionName::Dynamic(_, k) => k,
        }
    }
    /// Its texts go into JSON as they are (a call site's static, checked when compiled).
    #[inline]
    pub(crate) fn plain(&self) -> bool {
        matches!(self, TransactionName::Static(m) if m.plain)
    }
}

/// Exit spans dropped towards one destination with one outcome: how many, and their summed
/// duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DroppedSpanStats {
    pub(crate) destination_service_resource: String,
    pub(crate) service_target_type: String,
    pub(crate) service_target_name: Option<String>,
    pub(crate) outcome: Outcome,
    pub(crate) count: u32,
    pub(crate) sum_us: u64,
}

/// One finished transaction.
///
/// Laid out for the cost of moving it between cores: the application thread writes every
/// field of a reused box, and the transport thread reads them, each on its own core, so each
/// cache line of it is a transfer per transaction. What every transaction has fits in three
/// lines (aligned to a line, `what_every_transaction_writes_fits_in_three_lines`); what few
/// have sits behind one pointer ([`TransactionExtras`]).
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct TransactionRecord {
    pub(crate) trace_id: u128,
    pub(crate) id: u64,
    pub(crate) parent_id: Option<u64>,
    pub(crate) name: TransactionName,
    pub(crate) start: Tick,
    pub(crate) end: Tick,
    pub(crate) sampled: bool,
    pub(crate) sample_rate: u16,
    pub(crate) result: Option<Cow<'static, str>>,
    pub(crate) outcome: Outcome,
    pub(crate) spans_started: u32,
    pub(crate) spans_dropped: u32,
    /// Time during which its children ran (self time = duration − this).
    pub(crate) child_ns: u64,
    pub(crate) request: Option<Box<Request>>,
    pub(crate) response: Option<Box<Response>>,
    /// What few transactions have. The box stays with the record when the record is reused,
    /// emptied by the transport ([`TransactionExtras::empty_for_reuse`]); `extras_used` says
    /// whether this transaction filled it, so that an empty one is not read.
    pub(crate) extras: Option<Box<TransactionExtras>>,
    pub(crate) extras_used: bool,
}

/// A transaction's rarer parts: labels, links, user, custom, message, dropped spans' stats.
#[derive(Debug, Default)]
pub(crate) struct TransactionExtras {
    pub(crate) labels: Labels,
    /// Exit spans not sent (dropped as fast exit spans), per destination and outcome (filled
    /// on the transport thread).
    pub(crate) dropped_spans_stats: Vec<DroppedSpanStats>,
    /// Statements that ran past `transaction_max_spans`, per endpoint and outcome (added to
    /// `dropped_spans_stats` on the transport thread, where service targets are inferred).
    #[cfg(apm_exit_stats)]
    pub(crate) dropped_exits: Vec<super::dropped_exits::DroppedExits>,
    /// Span links: the trace a restarted transaction came from (and those given through the
    /// OpenTelemetry API).
    pub(crate) links: Vec<Link>,
    /// `otel.span_kind` and `otel.attributes` of a transaction made through the OpenTelemetry
    /// API.
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel: Option<Box<super::span_context::Otel>>,
    /// `context.message`: the message a messaging transaction processes.
    pub(crate) message: Option<Box<Message>>,
    /// `context.user` and `context.custom`, as the application set them.
    pub(crate) user: Option<Box<User>>,
    pub(crate) custom: Labels,
}

/// Entries a kept vector of [`TransactionExtras`] may have room for; one with more is freed.
const EXTRAS_ROOM: usize = 64;

impl TransactionExtras {
    /// Empties it for the record's next transaction, keeping its vectors' room (up to
    /// [`EXTRAS_ROOM`] entries each), so that a transaction with labels, custom context or
    /// links allocates no vector for them once warm. On the transport thread, where these lines
    /// were just read (`spare::trim_for_reuse`, the only way a record comes back for reuse).
    pub(crate) fn empty_for_reuse(&mut self) {
        fn clear<T>(v: &mut Vec<T>) {
            if v.capacity() > EXTRAS_ROOM {
                *v = Vec::new();
            } else {
                v.clear();
            }
        }
        // Named in full, without `..`: a field added here must be emptied here too.
        let TransactionExtras {
            labels,
            dropped_spans_stats,
            #[cfg(apm_exit_stats)]
            dropped_exits,
            links,
            #[cfg(feature = "opentelemetry")]
            otel,
            message,
            user,
            custom,
        } = self;
        clear(labels);
        clear(dropped_spans_stats);
        #[cfg(apm_exit_stats)]
        clear(dropped_exits);
        clear(links);
        #[cfg(feature = "opentelemetry")]
        {
            *otel = None;
        }
        *message = None;
        *user = None;
        clear(custom);
    }
}

impl TransactionExtras {
    /// Whether it holds nothing (what [`TransactionExtras::empty_for_reuse`] leaves).
    fn is_empty(&self) -> bool {
        let exits = {
            #[cfg(apm_exit_stats)]
            {
                self.dropped_exits.is_empty()
            }
            #[cfg(not(apm_exit_stats))]
            {
                true
            }
        };
        let otel = {
            #[cfg(feature = "opentelemetry")]
            {
                self.otel.is_none()
            }
            #[cfg(not(feature = "opentelemetry"))]
            {
                true
            }
        };
        exits
            && otel
            && self.labels.is_empty()
            && self.dropped_spans_stats.is_empty()
            && self.links.is_empty()
            && self.message.is_none()
            && self.user.is_none()
            && self.custom.is_empty()
    }
}

impl TransactionRecord {
    /// A record with nothing in it, to be filled in its box.
    pub(crate) fn empty() -> TransactionRecord {
        TransactionRecord {
            trace_id: 0,
            id: 0,
            parent_id: None,
            name: TransactionName::EMPTY,
            start: Tick::ZERO,
            end: Tick::ZERO,
            sampled: false,
            sample_rate: 0,
            result: None,
            outcome: Outcome::Unknown,
            spans_started: 0,
            spans_dropped: 0,
            child_ns: 0,
            request: None,
            response: None,
            extras: None,
            extras_used: false,
        }
    }

    /// Its rarer parts, when this transaction has any.
    #[inline]
    pub(crate) fn extras(&self) -> Option<&TransactionExtras> {
        if self.extras_used {
            self.extras.as_deref()
        } else {
            None
        }
    }

    /// Its rarer parts, to be written: the kept box or a new one. A kept box is empty: a
    /// record comes back for reuse only through `spare::trim_for_reuse`, which empties it on
    /// the transport thread, so it is not read again here.
    pub(crate) fn extras_mut(&mut self) -> &mut TransactionExtras {
        if !self.extras_used {
            self.extras_used = true;
            debug_assert!(self.kept_extras_empty(), "extras kept full");
        }
        self.extras.get_or_insert_with(Box::default)
    }

    /// Whether the box of rarer parts kept with it, if any, holds nothing.
    fn kept_extras_empty(&self) -> bool {
        self.extras.as_ref().is_none_or(|e| e.is_empty())
    }

    /// `context.message`, when set.
    pub(crate) fn message(&self) -> Option<&Message> {
        self.extras().and_then(|e| e.message.as_deref())
    }
}

#[cfg(test)]
impl TransactionRecord {
    /// A sampled transaction record named `name`, with nothing else in it (unit tests).
    pub(crate) fn for_tests(id: u64, name: TransactionName) -> TransactionRecord {
        let now = super::clock::now();
        TransactionRecord {
            trace_id: 1,
            id,
            name,
            start: now,
            end: now,
            sampled: true,
            sample_rate: 10_000,
            outcome: Outcome::Success,
            ..TransactionRecord::empty()
        }
    }

    /// The same record with rarer parts written by `write` (unit tests).
    pub(crate) fn with_extras(mut self, write: impl FnOnce(&mut TransactionExtras)) -> Self {
        write(self.extras_mut());
        self
    }
}

/// The trace an error belongs to, when it was captured inside a transaction.
#[derive(Debug)]
pub(crate) struct ErrorTrace {
    pub(crate) trace_id: u128,
    pub(crate) transaction_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) transaction_name: String,
    pub(crate) transaction_type: String,
    pub(crate) sampled: bool,
}

/// How an error came to be reported.
#[derive(Debug)]
pub(crate) enum ErrorOrigin {
    /// `capture_error!`, written at `site`: a handled error.
    Captured(&'static Site),
    /// The panic hook: an unhandled error, at the panic's location.
    Panic { file: String, line: u32 },
    /// `capture_message!` at `site`: a log record, not an exception.
    Message {
        site: &'static Site,
        /// `log.level`, lower case.
        level: &'static str,
        /// The format string (`log.param_message`).
        param_message: &'static str,
    },
    /// A record of the `log` crate at or above the capture level (`apm::log`).
    #[cfg(any(feature = "log", feature = "tracing"))]
    LogRecord {
        level: &'static str,
        /// The record's target (`log.logger_name`).
        logger_name: String,
        /// The message when it has no arguments.
        param_message: Option<String>,
        file: Option<String>,
        line: Option<u32>,
    },
}

/// One error of a `source()` chain.
#[derive(Debug)]
pub(crate) struct Cause {
    pub(crate) message: String,
    /// The type's path, for the types the agent recognises (`std::io::error::Error`, ...).
    pub(crate) type_name: Option<&'static str>,
    pub(crate) code: Option<ErrorCode>,
}

/// `exception.code`: an OS error number, the kind of an I/O error without one, or the HTTP
/// status an error of an HTTP client or server carries (sent as text: `"404"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    Os(i32),
    Kind(String),
    #[cfg_attr(not(any(feature = "reqwest", feature = "actix-web")), allow(dead_code))]
    Status(u16),
}

/// One captured error.
#[derive(Debug)]
pub(crate) struct ErrorRecord {
    pub(crate) id: u128,
    pub(crate) timestamp: Tick,
    pub(crate) trace: Option<ErrorTrace>,
    /// The error's type (`panic` for panics; unused for messages).
    pub(crate) type_name: &'static str,
    pub(crate) message: String,
    /// `exception.code`: the code of the outermost error of the chain (the error itself, then
    /// its causes) that has one.
    pub(crate) code: Option<ErrorCode>,
    /// The `source()` chain, outermost first.
    pub(crate) causes: Vec<Cause>,
    pub(crate) origin: ErrorOrigin,
    /// Where it was captured, when stack traces are on (`stack_trace_limit` not 0).
    pub(crate) stack: Option<RawStack>,
    /// The request being served when the error was captured (sampled transactions).
    pub(crate) request: Option<Box<Request>>,
    /// The transaction's labels, user and custom context when the error was captured (sampled
    /// transactions that have any).
    pub(crate) context: Option<Box<ErrorContext>>,
}

/// What an error takes from its transaction's context besides the request.
#[derive(Debug, Default)]
pub(crate) struct ErrorContext {
    pub(crate) labels: Labels,
    pub(crate) user: Option<User>,
    pub(crate) custom: Labels,
}

/// One metricset: samples sharing a timestamp and, for breakdown metrics, a transaction and
/// span type.
#[derive(Debug, Default)]
pub(crate) struct MetricsetRecord {
    /// Microseconds since the Unix epoch.
    pub(crate) timestamp: u64,
    /// Transaction name and type (breakdown and transaction metrics).
    pub(crate) transaction: Option<(String, String)>,
    /// Span type and subtype (breakdown metrics).
    pub(crate) span: Option<(String, Option<String>)>,
    /// Labels of the metricset (`tags`), e.g. `eventType` on `agent.events.total`.
    pub(crate) tags: Vec<(&'static str, &'static str)>,
    pub(crate) samples: Vec<(Cow<'static, str>, f64)>,
}

/// Everything that travels to the transport thread.
#[derive(Debug)]
pub(crate) enum Event {
    Span(SpanRecord),
    Transaction(Box<TransactionRecord>),
    Error(Box<ErrorRecord>),
    Metricset(Box<MetricsetRecord>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line of a record is a transfer between the core that writes it and the core that
    /// reads it: what every transaction has is kept to three, and a record starts a line (a
    /// record 16-byte aligned spans one line more).
    #[test]
    fn what_every_transaction_writes_fits_in_three_lines() {
        assert_eq!(std::mem::align_of::<TransactionRecord>(), 64);
        assert!(
            std::mem::size_of::<TransactionRecord>() <= 3 * 64,
            "{} bytes",
            std::mem::size_of::<TransactionRecord>()
        );
    }
}
