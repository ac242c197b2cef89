//! What the SQL client integrations share: the exit span of one statement, as
//! `specs/agents/tracing-instrumentation-db.md` ("SQL Databases") describes it.
//!
//! - type `db`, the vendor as subtype (`sqlite`, `postgresql`), action `query` (`prepare`
//!   while a statement is prepared on the server);
//! - name [`sql::signature`](crate::sql::signature) of the statement (`SELECT FROM orders`);
//! - `context.db`: type `sql`, instance (the database's name), the statement (cut to
//!   `long_field_max_length` when sent), user, `rows_affected`;
//! - `destination` address and port when the database is reached over the network;
//!   `service.target` is inferred from subtype and instance (`postgresql/shop`);
//! - outcome `failure` when the driver returns an error, `success` otherwise.
//!
//! Nothing is built (no name, no copy of the statement) unless a span would be recorded on
//! this thread: [`start`] returns `None` then, and the call runs as it would without us.

use super::facade::spans_recorded_here;
use crate::Outcome;

/// Where a statement runs: the same for every statement of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// `sqlite`, `postgresql`.
    pub(crate) subtype: &'static str,
    /// `context.db.instance`.
    pub(crate) instance: Option<&'a str>,
    /// `context.db.user`.
    pub(crate) user: Option<&'a str>,
    /// `context.destination`: host and port.
    pub(crate) destination: Option<(&'a str, Option<u16>)>,
    /// The span's action: `query`, or `prepare` for a statement being prepared.
    pub(crate) action: &'static str,
}

#[cfg(feature = "postgres")]
impl Target<'_> {
    /// The same target, for preparing a statement.
    pub(crate) fn preparing(self) -> Self {
        Target {
            action: "prepare",
            ..self
        }
    }
}

/// What the integrations need of a span handle: [`SpanGuard`](crate::SpanGuard) for a call
/// that returns before the application runs again, [`Span`](crate::Span) for one that
/// outlives it (an awaited future, rows read one by one): the same methods, no common trait.
pub(crate) trait DbSpan: Sized {
    fn start_named(name: String) -> Self;
    fn describe(&mut self, target: &Target<'_>, statement: Option<&str>);
    fn set_rows(&mut self, rows: u64);
    fn set_outcome_to(&mut self, outcome: Outcome);
}

macro_rules! impl_db_span {
    ($handle:ty, $start:path) => {
        impl DbSpan for $handle {
            fn start_named(name: String) -> Self {
                $start(name, "db")
            }
            fn describe(&mut self, target: &Target<'_>, statement: Option<&str>) {
                if !self.is_recording() {
                    return;
                }
                self.set_subtype(target.subtype);
                self.set_action(target.action);
                self.set_exit();
                self.set_db(
                    "sql",
                    target.instance.map(str::to_owned),
                    statement.map(str::to_owned),
                );
                if let Some(user) = target.user {
                    self.set_db_user(user);
                }
                if let Some((host, port)) = target.destination {
                    self.set_destination(Some(host.to_owned()), port);
                }
            }
            fn set_rows(&mut self, rows: u64) {
                self.set_db_rows_affected(rows);
            }
            fn set_outcome_to(&mut self, outcome: Outcome) {
                self.set_outcome(outcome);
            }
        }
    };
}

impl_db_span!(crate::SpanGuard, crate::start_span);
impl_db_span!(crate::Span, crate::Span::start);

/// Starts the span of `statement`; `None` when nothing would be recorded here (outside a
/// sampled transaction, or with the agent off): then nothing is allocated.
#[inline]
pub(crate) fn start<S: DbSpan>(target: &Target<'_>, statement: &str) -> Option<S> {
    if !spans_recorded_here() {
        return None;
    }
    start_recorded(target, statement)
}

#[inline(never)]
fn start_recorded<S: DbSpan>(target: &Target<'_>, statement: &str) -> Option<S> {
    let mut span = S::start_named(crate::sql::signature(statement));
    span.describe(target, Some(statement));
    Some(span)
}

/// Like [`start`] for a statement whose SQL is unknown: the span is named `name` and has
/// no `context.db.statement`.
#[inline]
pub(crate) fn start_unknown<S: DbSpan>(target: &Target<'_>, name: &'static str) -> Option<S> {
    if !spans_recorded_here() {
        return None;
    }
    let mut span = S::start_named(name.to_owned());
    span.describe(target, None);
    Some(span)
}

/// [`start`], or [`start_unknown`] with the name `unknown` when the statement is not known.
#[inline]
pub(crate) fn start_maybe<S: DbSpan>(
    target: &Target<'_>,
    statement: Option<&str>,
    unknown: &'static str,
) -> Option<S> {
    match statement {
        Some(statement) => start(target, statement),
        None => start_unknown(target, unknown),
    }
}

/// Records how the call went: `failure` for an error, `success` (and the rows the statement
/// changed, when known) otherwise.
#[inline]
pub(crate) fn finish<S: DbSpan, T, E>(
    span: &mut Option<S>,
    result: &Result<T, E>,
    rows: impl FnOnce(&T) -> Option<u64>,
) {
    let Some(span) = span else { return };
    match result {
        Ok(value) => {
            if let Some(rows) = rows(value) {
                span.set_rows(rows);
            }
            span.set_outcome_to(Outcome::Success);
        }
        Err(_) => span.set_outcome_to(Outcome::Failure),
    }
}

/// Runs `call` inside the span of `statement` (current on this thread while it runs).
#[cfg(feature = "rusqlite")]
#[inline]
pub(crate) fn traced<T, E>(
    target: &Target<'_>,
    statement: &str,
    call: impl FnOnce() -> Result<T, E>,
    rows: impl FnOnce(&T) -> Option<u64>,
) -> Result<T, E> {
    let mut span: Option<crate::SpanGuard> = start(target, statement);
    let result = call();
    finish(&mut span, &result, rows);
    result
}

/// No rows to report.
#[inline]
pub(crate) fn no_rows<T>(_: &T) -> Option<u64> {
    None
}

/// Starts the span of an awaited call (named `unknown` when its statement is not known) (never current: the future may move between threads);
/// its outcome stays `unknown` unless the call completes, so that a cancelled (dropped) call
/// says so.
#[cfg(any(feature = "postgres", feature = "diesel"))]
#[inline]
pub(crate) fn start_detached(
    target: &Target<'_>,
    statement: Option<&str>,
    unknown: &'static str,
) -> Option<crate::Span> {
    let mut span: Option<crate::Span> = start_maybe(target, statement, unknown);
    if let Some(span) = &mut span {
        span.set_outcome(Outcome::Unknown);
    }
    span
}
