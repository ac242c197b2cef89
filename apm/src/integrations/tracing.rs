//! `apm::tracing`: a [`tracing_subscriber::Layer`] that records the spans and events of the
//! [`tracing`](https://docs.rs/tracing) ecosystem (tonic, hyper, sqlx, your own
//! `#[tracing::instrument]` functions) as apm spans, transactions and errors.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let _agent = apm::init();
//! tracing_subscriber::registry()
//!     .with(apm::tracing::ApmLayer::new().server_and_consumer_roots())
//!     // .with(tracing_subscriber::fmt::layer()) and the rest of your layers
//!     .init();
//! ```
//!
//! **Spans.** A tracing span created while an apm transaction is current (on this thread, or in
//! this instrumented future) becomes a span, child of the apm span or transaction current where
//! the tracing span was created (or of its explicit `parent:`, when that one is recorded). It
//! starts when created and ends when tracing closes it, however often it is entered in between
//! (async code enters and exits it on every poll, on any thread). While it is entered, it is
//! apm's current span too: `#[apm::span]`, `apm::start_span` and `capture_error!` inside it
//! are its children, and tracing spans inside `#[apm::span]` functions are children of those.
//!
//! **Roots.** A tracing span created where no transaction is current is ignored, unless a root
//! rule says it starts one: [`ApmLayer::server_and_consumer_roots`] (`otel.kind = "server"` or
//! `"consumer"`, as tonic's and tower-http's request spans can be configured to say), or
//! [`ApmLayer::root_transactions`] (a target and a level). Its spans then become the
//! transaction's children.
//!
//! **Fields** map as the Elastic OpenTelemetry bridge maps attributes
//! (`specs/agents/tracing-api-otel.md`):
//!
//! | Fields | Span |
//! |---|---|
//! | `db.system` (+ `db.statement`/`db.query.text`, `db.name`/`db.namespace`, `db.user`) | type `db`, subtype the system, action `query`, `context.db`; an exit span; named after the statement's signature unless `otel.name` is set |
//! | `http.request.method`/`http.method` + `url.full`/`http.url` (not `otel.kind = "server"`) | type `external`, subtype `http`, `context.http` (`http.response.status_code` too); an exit span |
//! | `messaging.system` (+ `messaging.destination.name`) | type `messaging`, subtype the system, `context.message.queue`; an exit span unless `otel.kind = "consumer"` |
//! | `rpc.system` | type `external`, subtype the system; an exit span |
//! | `server.address`/`net.peer.name`, `server.port`/`net.peer.port` | `context.destination` |
//! | none of these | type `app`, subtype `internal` (`otel.kind` `internal` or absent), else type `unknown` |
//! | `otel.name` | the name |
//! | `otel.status_code` | outcome: `ok` success, `error` failure; unset: `unknown` (HTTP server transactions: from `http.response.status_code`) |
//! | `error` | outcome `failure` (unless `otel.status_code` says otherwise), and a label |
//! | any other field | a label (at most 32 per span; strings cut to 1024 characters) |
//!
//! Transactions take their type from the same fields: `request` for `otel.kind = "server"` with
//! HTTP or RPC fields, `messaging` for `"consumer"` with `messaging.system`, else `unknown`; an
//! HTTP server span with `http.route` is named `<METHOD> <route>`.
//!
//! Fields recorded later (`Span::record`, e.g. `otel.status_code` or the response status) are
//! applied when recorded.
//!
//! **Events** at or above [`ApmLayer::error_level`] (`ERROR` by default) are sent as error
//! events: the `message` field followed by the other fields as `key=value`, the level, the
//! target as `log.logger_name` and the stack trace of the event, linked to the current
//! transaction and span. For log correlation, [`WithTraceIds`] adds `trace.id`,
//! `transaction.id` and `span.id` to the lines of a `tracing_subscriber::fmt` formatter, and
//! [`crate::current_ids`] gives them to any other layer's `on_event` (or any formatter): the
//! entered tracing span is apm's current span.
//!
//! **Cost.** Nothing is recorded, and nothing allocated, outside a transaction (unless a root
//! rule matches). A span with no fields to record allocates nothing: its name is a static
//! description made once per call site, and its state lives in the layer's own table, not in
//! the registry's span extensions (which box each value).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Mutex, PoisonError};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

use super::facade::{self, Entered, SpanFrame, SpanMeta};
use super::semconv::{self, keys, Class, Has, Kind};
use crate::util::id_hash::IdMap;
use crate::util::own_thread::logged_by_agent;
use crate::{LabelValue, Outcome};

mod log_ids;
mod table;
pub use log_ids::WithTraceIds;
use table::Table;

/// Labels taken from one span's fields at most.
const MAX_LABELS: usize = 32;

/// A [`Layer`] recording tracing spans as apm spans and transactions, and events at or above a
/// level as errors. See the [module documentation](self).
#[derive(Debug)]
pub struct ApmLayer {
    otel_roots: bool,
    root_targets: Vec<(Cow<'static, str>, Level)>,
    error_level: Option<Level>,
    table: Table<Bridged>,
}

impl Default for ApmLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ApmLayer {
    /// A layer that records tracing spans inside transactions only, and sends `ERROR` events as
    /// errors.
    pub fn new() -> Self {
        ApmLayer {
            otel_roots: false,
            root_targets: Vec::new(),
            error_level: Some(Level::ERROR),
            table: Table::new(),
        }
    }

    /// Root spans (no transaction current) with `otel.kind = "server"` or `"consumer"` start a
    /// transaction.
    pub fn server_and_consumer_roots(mut self) -> Self {
        self.otel_roots = true;
        self
    }

    /// Root spans whose target is `target` or a module under it (`"my_app"` takes
    /// `my_app::jobs`; `""` takes every target), at `level` or more severe, start a
    /// transaction. May be given several times.
    pub fn root_transactions(mut self, target: impl Into<Cow<'static, str>>, level: Level) -> Self {
        self.root_targets.push((target.into(), level));
        self
    }

    /// Events at this level or more severe are sent as error events; `None` sends none
    /// (default `Some(Level::ERROR)`).
    pub fn error_level(mut self, level: Option<Level>) -> Self {
        self.error_level = level;
        self
    }

    /// Tells this layer's entries in `ENTERED` from another's.
    fn key(&self) -> usize {
        &self.table as *const Table<Bridged> as usize
    }

    fn has_root_rules(&self) -> bool {
        self.otel_roots || !self.root_targets.is_empty()
    }

    /// Whether a root span starts a transaction.
    fn is_transaction_root(&self, meta: &Metadata<'_>, fields: &Fields) -> bool {
        if self.otel_roots && matches!(fields.kind, Some(Kind::Server | Kind::Consumer)) {
            return true;
        }
        let target = meta.target();
        self.root_targets.iter().any(|(prefix, level)| {
            meta.level() <= level
                && (prefix.is_empty()
                    || target == prefix
                    || target
                        .strip_prefix(prefix.as_ref())
                        .is_some_and(|rest| rest.starts_with("::")))
        })
    }

    /// Opens the apm side of a new tracing span (a span under its parent, or a transaction at
    /// a root) and keeps it in the table.
    fn open(&self, attrs: &Attributes<'_>, id: &Id) {
        // What the new state replaces, if anything: written in the rare case only, so that the
        // common one moves no state around (a state returned is copied even when empty).
        let mut replaced = None;
        if let Some(bridged) = self.open_into(attrs, id, &mut replaced) {
            replaced = self.table.insert(id, bridged);
        }
        // An id reused without a close seen (another layer's filter): end the old one.
        if let Some(old) = replaced {
            old.end();
        }
    }

    /// [`ApmLayer::open`]'s work: a span with no field values (the common case) is written
    /// straight into its table slot (the value it replaces into `replaced`); other states are
    /// built and returned, for the table.
    #[inline]
    fn open_into(
        &self,
        attrs: &Attributes<'_>,
        id: &Id,
        replaced: &mut Option<Bridged>,
    ) -> Option<Bridged> {
        let meta = attrs.metadata();
        let parent = match attrs.parent() {
            Some(p) => Parent::Explicit(self.table.with(p, |b| b.context()).flatten()),
            None if attrs.is_root() => Parent::Explicit(None),
            None => Parent::Current,
        };
        let recording = match &parent {
            Parent::Current => facade::tracing_spans_recorded_here(),
            Parent::Explicit(ctx) => ctx.is_some(),
        };
        if !recording && !self.has_root_rules() {
            return None;
        }
        if recording && attrs.values().is_empty() {
            // No field values: nothing to map, the call site's static name and type.
            self.open_static_in_place(id, meta, &parent, None, replaced);
            return None;
        }
        // Recorded before the table is locked: a field's `Debug` may make spans of its own.
        let mut fields = Fields::default();
        if !attrs.values().is_empty() {
            attrs.record(&mut fields);
        }
        if recording && fields.keep_static_name_and_type() {
            // Fields that only add labels (or an outcome, or context): the call site's static
            // name and type, the fields applied in place.
            self.open_static_in_place(id, meta, &parent, Some(&mut fields), replaced);
            return None;
        }
        if recording {
            let _attached = match &parent {
                Parent::Explicit(Some(ctx)) => Some(ctx.attach()),
                _ => None,
            };
            return Bridged::span(meta, &mut fields);
        }
        let is_root = match &parent {
            Parent::Current => crate::current_ids().is_none(),
            Parent::Explicit(_) => true,
        };
        if is_root && self.is_transaction_root(meta, &fields) {
            Bridged::transaction(meta, &mut fields)
        } else {
            None
        }
    }

    /// Opens a span with its call site's static name and type straight into its table slot,
    /// with `fields` applied there. The shard is locked meanwhile (nothing done in it reaches
    /// the table), so that the state is built where it stays instead of moved there (about
    /// 200 bytes, moved several times on the way in).
    #[inline]
    fn open_static_in_place(
        &self,
        id: &Id,
        meta: &'static Metadata<'static>,
        parent: &Parent,
        fields: Option<&mut Fields>,
        replaced: &mut Option<Bridged>,
    ) {
        let meta = static_meta(meta);
        self.table.insert_in_place(
            id,
            |slot| {
                let _attached = match parent {
                    Parent::Explicit(Some(ctx)) => Some(ctx.attach()),
                    _ => None,
                };
                Bridged::static_span_into(slot, meta);
                if let (Some(b), Some(fields)) = (slot, fields) {
                    b.apply(fields, true);
                }
            },
            replaced,
        );
    }
}

enum Parent {
    /// The context current here (a contextual tracing span).
    Current,
    /// An explicit parent's context, `None` when it records nothing (or `parent: None`).
    Explicit(Option<crate::Context>),
}

impl<S: Subscriber> Layer<S> for ApmLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: LayerContext<'_, S>) {
        self.open(attrs, id);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
        if self.table.surely_absent(id) || values.is_empty() {
            return;
        }
        let mut fields = Fields::default();
        values.record(&mut fields);
        self.table.with(id, |b| b.apply(&mut fields, false));
    }

    fn on_enter(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        if let Some(entered) = self.table.with(id, Bridged::enter).flatten() {
            let key = (self.key(), id.into_u64());
            let _ = ENTERED.try_with(|e| {
                if let Ok(mut e) = e.try_borrow_mut() {
                    e.push((key, entered));
                }
            });
        }
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        if self.table.surely_absent(id) {
            return;
        }
        let key = (self.key(), id.into_u64());
        let entered = ENTERED
            .try_with(|e| {
                let mut e = e.try_borrow_mut().ok()?;
                // The span left is nearly always the last one entered.
                let i = e.iter().rposition(|(k, _)| *k == key)?;
                // Popped when last: `remove` moves it out through a copy call even then.
                if i + 1 == e.len() {
                    return e.pop().map(|(_, entered)| entered);
                }
                Some(e.remove(i).1)
            })
            .ok()
            .flatten();
        // The frame is looked up only when the entry hands something back (children's time,
        // entries left open above it).
        if let Some(left) = entered.and_then(facade::leave_bridged) {
            self.table.with(id, |b| {
                if let Some(f) = &mut b.frame {
                    f.left(left);
                }
            });
        }
    }

    fn on_close(&self, id: Id, _ctx: LayerContext<'_, S>) {
        // A span ends where it lies in the table; a transaction is taken out, and ended once
        // the table's shard is released. (Taken out through `taken`, written for a transaction
        // only: a state returned is copied even when empty.)
        let mut taken = None;
        self.table
            .remove_in_place(&id, |slot| Bridged::end_in_place(slot, &mut taken));
        if let Some(t) = taken {
            t.end();
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if self.error_level.is_none_or(|l| meta.level() > &l) || logged_by_agent(meta.target()) {
            return;
        }
        let mut message = EventMessage::default();
        event.record(&mut message);
        facade::capture_log(
            level_name(meta.level()),
            message.finish(),
            meta.target().to_owned(),
            None,
            meta.file().map(str::to_owned),
            meta.line(),
        );
    }
}

thread_local! {
    /// The bridged spans entered on this thread, with the token of their entry on apm's stack
    /// (one span may be entered on several threads at once).
    /// Keyed by layer and span id: two subscribers (a global one and one set for a scope)
    /// number their spans alike.
    static ENTERED: RefCell<Vec<((usize, u64), Entered)>> = const { RefCell::new(Vec::new()) };
    /// The static descriptions of the call sites seen on this thread.
    static METAS: RefCell<IdMap<usize, &'static SpanMeta>> = RefCell::new(IdMap::default());
    /// The vector a span's fields' labels are gathered into, between two spans with fields.
    static LABELS: Cell<Vec<(Cow<'static, str>, LabelValue)>> = const { Cell::new(Vec::new()) };
    /// [`static_meta`]'s memo: 32 call sites, by a hash of their address.
    static RECENT_METAS: [Cell<(usize, Option<&'static SpanMeta>)>; 32] =
        const { [const { Cell::new((0, None)) }; 32] };
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        _ => "trace",
    }
}

/// The apm side of a tracing span.
#[derive(Debug)]
struct Bridged {
    handle: Handle,
    /// What makes it current while entered; `None` when it records nothing (an unsampled
    /// transaction's span, `transaction_max_spans` reached).
    frame: Option<SpanFrame>,
    /// The outcome derived from its fields so far (`otel.status_code` wins over `error`).
    status: Option<Outcome>,
    errored: bool,
    http_status: Option<u16>,
    server: bool,
    labels: usize,
}

#[derive(Debug)]
enum Handle {
    Span(crate::Span),
    Transaction(crate::Transaction),
}

impl Bridged {
    /// A span whose fields name it or give it another type than `app` (the others are opened
    /// in place, `ApmLayer::open_static_in_place`).
    fn span(meta: &'static Metadata<'static>, fields: &mut Fields) -> Option<Bridged> {
        let (kind, subtype, action) = fields.span_type();
        let name = match (fields.name.take(), &fields.db_statement) {
            (Some(name), _) => Cow::Owned(name),
            (None, Some(statement)) if kind == "db" && is_sql(fields) => {
                Cow::Owned(crate::sql::signature(statement))
            }
            _ => Cow::Borrowed(meta.name()),
        };
        let mut span = crate::Span::start(name, kind);
        if let Some(subtype) = subtype {
            span.set_subtype(subtype);
        }
        if let Some(action) = action {
            span.set_action(action);
        }
        let mut b = Bridged::recorded(span)?;
        b.apply(fields, true);
        Some(b)
    }

    /// The state of a span with its call site's static name and type, before fields, written
    /// into `slot` with the apm span built where it stays (left empty when it records nothing).
    #[inline]
    fn static_span_into(slot: &mut Option<Bridged>, meta: &'static SpanMeta) {
        let b = slot.insert(Bridged::of(Handle::Span(facade::idle_span()), None));
        let Handle::Span(span) = &mut b.handle else {
            return;
        };
        if !facade::start_static_span_in(span, meta) {
            *slot = None;
            return;
        }
        b.frame = Bridged::frame_of(span);
    }

    /// A started span's bridged state, before fields; `None` when it records nothing.
    #[inline]
    fn recorded(mut span: crate::Span) -> Option<Bridged> {
        if !span.is_recording() {
            return None;
        }
        let frame = Bridged::frame_of(&mut span);
        Some(Bridged::of(Handle::Span(span), frame))
    }

    /// The frame of a span just started and recording.
    #[inline]
    fn frame_of(span: &mut crate::Span) -> Option<SpanFrame> {
        // Outcomes are not inferred (bridge spec): unset status stays `unknown`.
        span.set_outcome(Outcome::Unknown);
        SpanFrame::of_span(span)
    }

    /// A state before any field is applied.
    #[inline]
    fn of(handle: Handle, frame: Option<SpanFrame>) -> Bridged {
        Bridged {
            handle,
            frame,
            status: None,
            errored: false,
            http_status: None,
            server: false,
            labels: 0,
        }
    }

    fn transaction(meta: &'static Metadata<'static>, fields: &mut Fields) -> Option<Bridged> {
        let server = fields.kind == Some(Kind::Server);
        let has = Has {
            db: false,
            messaging: fields.messaging_system.is_some(),
            rpc: fields.rpc_system.is_some(),
            http: fields.http_method.is_some(),
        };
        let kind = semconv::transaction_type(fields.kind, has);
        let name = match (fields.name.take(), &fields.http_method, &fields.http_route) {
            (Some(name), _, _) => Cow::Owned(name),
            (None, Some(method), Some(route)) => Cow::Owned(format!("{method} {route}")),
            _ => Cow::Borrowed(meta.name()),
        };
        let t = crate::Transaction::start(name, kind);
        let frame = SpanFrame::of_transaction(&t)?;
        let mut b = Bridged {
            server,
            ..Bridged::of(Handle::Transaction(t), Some(frame))
        };
        b.apply(fields, true);
        Some(b)
    }

    /// Makes it current on this thread; `None` when it records nothing.
    #[inline]
    fn enter(&mut self) -> Option<Entered> {
        let frame = self.frame.as_mut()?;
        match &self.handle {
            Handle::Span(span) => frame.enter_tracked(span),
            Handle::Transaction(t) => frame.enter_tracked(t),
        }
    }

    /// The context under which its children open, if it is recorded.
    fn context(&self) -> Option<crate::Context> {
        let frame = self.frame.as_ref()?;
        match &self.handle {
            Handle::Span(span) => frame.context(span),
            Handle::Transaction(t) => frame.context(t),
        }
    }

    /// Applies fields recorded at creation (`new`) or later; their name and labels are moved
    /// out of `f`, not copied.
    fn apply(&mut self, f: &mut Fields, new: bool) {
        if f.status.is_some() {
            self.status = f.status;
        }
        self.errored |= f.error;
        if f.http_status.is_some() {
            self.http_status = f.http_status;
        }
        match &mut self.handle {
            Handle::Span(span) => {
                if !new {
                    if let Some(name) = f.name.take() {
                        facade::rename_span(span, Cow::Owned(name));
                    }
                }
                if apply_span_context(span, f) {
                    if let Some(frame) = &mut self.frame {
                        frame.set_leaf();
                    }
                }
                f.labels.truncate(MAX_LABELS.saturating_sub(self.labels));
                self.labels += f.labels.len();
                facade::add_span_labels(span, &mut f.labels);
            }
            Handle::Transaction(t) => {
                if !new {
                    if let Some(name) = f.name.take() {
                        t.set_name(name);
                    }
                }
                f.labels.truncate(MAX_LABELS.saturating_sub(self.labels));
                self.labels += f.labels.len();
                for (key, value) in f.labels.drain(..) {
                    t.set_label(key, value);
                }
            }
        }
    }

    fn outcome(&self) -> Outcome {
        match (self.status, self.errored, self.http_status) {
            (Some(status), _, _) => status,
            (None, true, _) => Outcome::Failure,
            (None, false, Some(code)) if self.server => {
                if code >= 500 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            }
            _ => Outcome::Unknown,
        }
    }

    /// Ends a span in its table slot: its record is handed over from there, and what is left
    /// (an empty handle, the frame) is dropped in place. A transaction, whose end does more, is
    /// taken out to be ended outside the table's lock ([`Bridged::end`]).
    #[inline]
    fn end_in_place(slot: &mut Option<Bridged>, taken: &mut Option<Bridged>) {
        if let Some(b) = slot {
            let outcome = b.outcome();
            if let Handle::Span(span) = &mut b.handle {
                span.set_outcome(outcome);
                facade::end_span(span, b.frame.as_ref());
                return;
            }
        }
        *taken = slot.take();
    }

    fn end(self) {
        let outcome = self.outcome();
        match self.handle {
            Handle::Span(mut span) => {
                span.set_outcome(outcome);
                facade::end_span(&mut span, self.frame.as_ref());
            }
            Handle::Transaction(t) => {
                t.set_outcome(outcome);
                if let Some(code) = self.http_status {
                    t.set_result(http_result(code));
                }
                facade::end_transaction(&t, self.frame.as_ref(), Outcome::Unknown);
            }
        }
    }
}

fn http_result(code: u16) -> &'static str {
    match code / 100 {
        1 => "HTTP 1xx",
        2 => "HTTP 2xx",
        3 => "HTTP 3xx",
        4 => "HTTP 4xx",
        _ => "HTTP 5xx",
    }
}

/// The SQL databases, whose statements name their spans.
fn is_sql(f: &Fields) -> bool {
    db_type(f.db_system.as_deref().unwrap_or("")) == "sql"
}

/// `context.db.type` of a `db.system`.
fn db_type(system: &str) -> &'static str {
    match system {
        "redis" => "redis",
        "mongodb" => "mongodb",
        "cassandra" => "cassandra",
        "elasticsearch" => "elasticsearch",
        "dynamodb" => "dynamodb",
        "memcached" => "memcached",
        _ => "sql",
    }
}

/// The span context fields give, their texts moved into the span (the fields are spent);
/// `true` when they make it an exit span.
fn apply_span_context(span: &mut crate::Span, f: &mut Fields) -> bool {
    let client = !matches!(f.kind, Some(Kind::Server | Kind::Consumer | Kind::Internal));
    let exit = f.db_system.is_some()
        || f.rpc_system.is_some()
        || (f.http_method.is_some() && f.url.is_some())
        || f.messaging_system.is_some();
    if let Some(system) = &f.db_system {
        span.set_db(db_type(system), f.db_name.take(), f.db_statement.take());
        if let Some(user) = f.db_user.take() {
            span.set_db_user(user);
        }
    }
    if let (Some(method), Some(url)) = (f.http_method.take(), f.url.take()) {
        if client {
            span.set_http_request(Cow::Owned(method), url);
        }
    }
    if let Some(code) = f.http_status {
        span.set_http_status(code);
    }
    if let Some(queue) = f.messaging_destination.take() {
        span.set_message_queue(queue);
    }
    if f.server_address.is_some() || f.server_port.is_some() {
        span.set_destination(f.server_address.take(), f.server_port);
    }
    if exit && client {
        span.set_exit();
    }
    exit && client
}

/// The fields of a span that map to something (OpenTelemetry semantic conventions); the
/// others as labels.
#[derive(Debug, Default)]
struct Fields {
    kind: Option<Kind>,
    name: Option<String>,
    status: Option<Outcome>,
    error: bool,
    db_system: Option<String>,
    db_statement: Option<String>,
    db_name: Option<String>,
    db_user: Option<String>,
    http_method: Option<String>,
    http_route: Option<String>,
    url: Option<String>,
    http_status: Option<u16>,
    messaging_system: Option<String>,
    messaging_destination: Option<String>,
    rpc_system: Option<String>,
    server_address: Option<String>,
    server_port: Option<u16>,
    /// Kept as a span's labels are, so that they are moved there whole.
    labels: Vec<(Cow<'static, str>, LabelValue)>,
}

impl Fields {
    /// Whether the span keeps its call site's static name and type: no field names it, and
    /// none makes it other than `app`.
    fn keep_static_name_and_type(&self) -> bool {
        self.name.is_none() && self.class().span_type() == "app"
    }

    fn class(&self) -> Class {
        let has = Has {
            db: self.db_system.is_some(),
            messaging: self.messaging_system.is_some(),
            rpc: self.rpc_system.is_some(),
            // A server's request is not a call.
            http: self.http_method.is_some()
                && self.url.is_some()
                && !matches!(self.kind, Some(Kind::Server)),
        };
        semconv::classify(self.kind, has)
    }

    /// Type, subtype and action.
    fn span_type(
        &self,
    ) -> (
        &'static str,
        Option<Cow<'static, str>>,
        Option<&'static str>,
    ) {
        let class = self.class();
        let owned = |system: &Option<String>| system.clone().map(Cow::Owned);
        let (subtype, action) = match class {
            Class::Db => (owned(&self.db_system), Some("query")),
            Class::Messaging => (
                owned(&self.messaging_system),
                match self.kind {
                    Some(Kind::Consumer) => Some("receive"),
                    Some(Kind::Producer) => Some("send"),
                    _ => None,
                },
            ),
            Class::Rpc => (owned(&self.rpc_system), None),
            Class::Http => (Some(Cow::Borrowed("http")), None),
            Class::Internal => (Some(Cow::Borrowed("internal")), None),
            Class::Unknown => (None, None),
        };
        (class.span_type(), subtype, action)
    }

    fn text(&mut self, field: &Field, value: String) {
        let is = |names: &[&str]| names.contains(&field.name());
        let slot = match field.name() {
            "otel.kind" => {
                self.kind = Kind::parse(&value);
                return;
            }
            "otel.status_code" => {
                self.status = match value.to_ascii_lowercase().as_str() {
                    "ok" => Some(Outcome::Success),
                    "error" => Some(Outcome::Failure),
                    _ => None,
                };
                return;
            }
            _ if is(keys::HTTP_STATUS) => {
                self.http_status = value.parse().ok();
                return;
            }
            _ if is(keys::PEER_PORT) => {
                self.server_port = value.parse().ok();
                return;
            }
            "otel.name" => &mut self.name,
            _ if is(keys::DB_SYSTEM) => &mut self.db_system,
            _ if is(keys::DB_STATEMENT) => &mut self.db_statement,
            _ if is(keys::DB_NAME) => &mut self.db_name,
            "db.user" => &mut self.db_user,
            _ if is(keys::HTTP_METHOD) => &mut self.http_method,
            "http.route" => &mut self.http_route,
            _ if is(keys::HTTP_URL) => &mut self.url,
            _ if is(keys::MESSAGING_SYSTEM) => &mut self.messaging_system,
            _ if is(keys::MESSAGING_DESTINATION) => &mut self.messaging_destination,
            _ if is(keys::RPC_SYSTEM) => &mut self.rpc_system,
            _ if is(keys::PEER_NAME) => &mut self.server_address,
            "error" => {
                self.error = true;
                self.label(field, LabelValue::Str(Cow::Owned(value)));
                return;
            }
            _ => {
                self.label(field, LabelValue::Str(Cow::Owned(value)));
                return;
            }
        };
        *slot = Some(value);
    }

    fn number(&mut self, field: &Field, value: f64, integer: Option<u64>) {
        let is = |names: &[&str]| names.contains(&field.name());
        match field.name() {
            _ if is(keys::HTTP_STATUS) => {
                self.http_status = integer.and_then(|n| u16::try_from(n).ok());
            }
            _ if is(keys::PEER_PORT) => {
                self.server_port = integer.and_then(|n| u16::try_from(n).ok());
            }
            _ => self.label(field, LabelValue::Number(value)),
        }
    }

    fn label(&mut self, field: &Field, value: LabelValue) {
        if self.labels.capacity() == 0 {
            self.labels = LABELS.try_with(Cell::take).unwrap_or_default();
        }
        if self.labels.len() < MAX_LABELS {
            crate::util::in_place::push(&mut self.labels, || (Cow::Borrowed(field.name()), value));
        }
    }
}

impl Drop for Fields {
    /// The labels' vector, moved out by now, goes back for this thread's next span with
    /// fields: one allocation fewer per span.
    fn drop(&mut self) {
        if self.labels.capacity() != 0 {
            self.labels.clear();
            let labels = std::mem::take(&mut self.labels);
            let _ = LABELS.try_with(|l| l.set(labels));
        }
    }
}

impl Visit for Fields {
    // Texts are written into spare strings: a new one would be freed on the transport thread.
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut text = facade::spare_text();
        text.push_str(value);
        self.text(field, text);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = facade::spare_text();
        let _ = write!(text, "{value:?}");
        self.text(field, text);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = facade::spare_text();
        let _ = write!(text, "{value}");
        self.text(field, text);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "error" {
            self.error = value;
        } else {
            self.label(field, LabelValue::Bool(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value as f64, u64::try_from(value).ok());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value as f64, Some(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value, None);
    }
}

/// An event's text: its `message`, then its other fields as `key=value`.
#[derive(Debug, Default)]
struct EventMessage {
    message: String,
    fields: String,
}

impl EventMessage {
    fn finish(mut self) -> String {
        if self.message.is_empty() {
            return self.fields;
        }
        if !self.fields.is_empty() {
            self.message.push(' ');
            self.message.push_str(&self.fields);
        }
        self.message
    }
}

impl Visit for EventMessage {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value:?}", field.name());
    }
}

/// The static description of a call site's spans of type `app`, made once per call site (and
/// kept for the life of the process, as the call site is).
fn static_meta(meta: &'static Metadata<'static>) -> &'static SpanMeta {
    let key = meta as *const Metadata<'static> as usize;
    // A direct-mapped memo in front of the map: one comparison for a call site seen lately.
    let way = key.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 5);
    let recent = RECENT_METAS
        .try_with(|r| match r[way].get() {
            (k, found) if k == key => found,
            _ => None,
        })
        .ok()
        .flatten();
    if let Some(found) = recent {
        return found;
    }
    let found = static_meta_of(key, meta);
    let _ = RECENT_METAS.try_with(|r| r[way].set((key, Some(found))));
    found
}

/// [`static_meta`] past its memo: this thread's map, then the process's.
fn static_meta_of(key: usize, meta: &'static Metadata<'static>) -> &'static SpanMeta {
    let cached = METAS
        .try_with(|m| m.try_borrow().ok()?.get(&key).copied())
        .ok()
        .flatten();
    if let Some(found) = cached {
        return found;
    }
    let made = static_meta_slow(key, meta.name());
    let _ = METAS.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.insert(key, made);
        }
    });
    made
}

#[cold]
#[inline(never)]
fn static_meta_slow(key: usize, name: &'static str) -> &'static SpanMeta {
    static ALL: Mutex<Option<HashMap<usize, &'static SpanMeta>>> = Mutex::new(None);
    let mut all = ALL.lock().unwrap_or_else(PoisonError::into_inner);
    all.get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| Box::leak(Box::new(SpanMeta::new(name, "app", Some("internal"), None))))
}

#[cfg(test)]
mod tests {
    use tracing_core::callsite::{Callsite, Identifier};
    use tracing_core::field::FieldSet;
    use tracing_core::metadata::Kind as MetaKind;
    use tracing_core::subscriber::Interest;

    use super::*;

    struct Site;
    impl Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not registered")
        }
    }
    static SITE: Site = Site;

    fn call_site(name: String) -> &'static Metadata<'static> {
        Box::leak(Box::new(Metadata::new(
            Box::leak(name.into_boxed_str()),
            "tests",
            Level::INFO,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&SITE)),
            MetaKind::SPAN,
        )))
    }

    #[test]
    fn call_sites_sharing_a_way_of_the_memo_keep_their_own_names() {
        // More call sites than the memo has ways: several share each one.
        let sites: Vec<_> = (0..100).map(|i| call_site(format!("site {i}"))).collect();
        for order in [false, true, false] {
            for i in 0..sites.len() {
                let meta = sites[if order { sites.len() - 1 - i } else { i }];
                let found = static_meta(meta);
                assert_eq!(found.name, meta.name());
                assert!(
                    std::ptr::eq(found, static_meta(meta)),
                    "made once per call site"
                );
            }
        }
    }

    #[test]
    fn every_name_the_bridge_maps_is_mapped_and_plain_names_are_labels() {
        let lists: &[&[&str]] = &[
            &[
                "otel.kind",
                "otel.status_code",
                "otel.name",
                "db.user",
                "http.route",
            ],
            keys::HTTP_STATUS,
            keys::PEER_PORT,
            keys::DB_SYSTEM,
            keys::DB_STATEMENT,
            keys::DB_NAME,
            keys::HTTP_METHOD,
            keys::HTTP_URL,
            keys::MESSAGING_SYSTEM,
            keys::MESSAGING_DESTINATION,
            keys::RPC_SYSTEM,
            keys::PEER_NAME,
        ];
        let mapped: Vec<&'static str> = lists.iter().flat_map(|l| l.iter().copied()).collect();
        let plain = ["user", "attempt", "order_id"];
        let names: &'static [&'static str] = Box::leak(
            mapped
                .iter()
                .chain(&plain)
                .copied()
                .collect::<Vec<_>>()
                .into(),
        );
        let set = FieldSet::new(names, Identifier(&SITE));
        for name in &mapped {
            let field = set.field(name).expect("a field of the set");
            let mut fields = Fields::default();
            fields.text(&field, "200".to_owned());
            // Only a status code and a port are mapped from numbers.
            if keys::HTTP_STATUS.contains(name) || keys::PEER_PORT.contains(name) {
                fields.number(&field, 200.0, Some(200));
            }
            assert!(fields.labels.is_empty(), "{name} became a label");
        }
        for name in plain {
            let field = set.field(name).expect("a field of the set");
            let mut fields = Fields::default();
            fields.text(&field, "text".to_owned());
            fields.number(&field, 1.0, Some(1));
            assert_eq!(fields.labels.len(), 2, "{name}");
        }
    }
}
