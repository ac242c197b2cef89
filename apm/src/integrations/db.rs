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
//! Nothing is built unless a span would be recorded on this thread: [`start`] returns `None`
//! then, and the call runs as it would without us. A recorded span holds two shared pointers
//! (the connection's [`DbEndpoint`], and the statement's text and signature, which each thread
//! remembers for the statements it ran last): a statement seen before costs no allocation and
//! no scan of its SQL. Past `transaction_max_spans` a statement is only timed, for the
//! transaction's `dropped_spans_stats`.

use std::sync::Arc;

use super::facade::{
    spans_recorded_here, start_db_guard, start_db_span, DbAction, DbEndpoint, DbStatement,
    OverLimitExit,
};
use crate::Outcome;

/// Where a statement runs, and what it does there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The connection's database: subtype, instance, user, host and port.
    pub(crate) endpoint: &'a Arc<DbEndpoint>,
    /// `query`, or `prepare` for a statement being prepared.
    pub(crate) action: DbAction,
}

impl<'a> Target<'a> {
    /// Statements run on `endpoint`.
    pub(crate) fn query(endpoint: &'a Arc<DbEndpoint>) -> Self {
        Target {
            endpoint,
            action: DbAction::Query,
        }
    }

    /// The same target, for preparing a statement.
    #[cfg(feature = "postgres")]
    pub(crate) fn preparing(self) -> Self {
        Target {
            action: DbAction::Prepare,
            ..self
        }
    }
}

/// A span of a statement as the integrations hold it: [`crate::SpanGuard`] for a call that
/// returns before the application runs again, [`crate::Span`] for one that outlives it (an
/// awaited future, rows read one by one).
pub(crate) trait DbSpan: Sized {
    fn open(target: &Target<'_>, statement: DbStatement<'_>) -> Self;
    fn is_recording(&self) -> bool;
    fn set_rows(&mut self, rows: u64);
    fn set_outcome_to(&mut self, outcome: Outcome);
}

macro_rules! impl_db_span {
    ($handle:ty, $start:path) => {
        impl DbSpan for $handle {
            #[inline]
            fn open(target: &Target<'_>, statement: DbStatement<'_>) -> Self {
                $start(target.endpoint, statement, target.action)
            }
            fn is_recording(&self) -> bool {
                <$handle>::is_recording(self)
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

impl_db_span!(crate::SpanGuard, start_db_guard);
impl_db_span!(crate::Span, start_db_span);

/// The span of one statement: recorded, or, past `transaction_max_spans`, only timed for the
/// transaction's `dropped_spans_stats`.
#[derive(Debug)]
pub(crate) enum Handle<S> {
    Span(S),
    OverLimit(OverLimitExit),
}

/// The handle of a call that returns before the application runs again.
#[cfg(any(feature = "rusqlite", feature = "postgres", feature = "mysql"))]
pub(crate) type Guard = Handle<crate::SpanGuard>;
/// The handle of a call that outlives the function that starts it.
#[cfg(any(feature = "rusqlite", feature = "postgres", feature = "diesel", apm_db))]
pub(crate) type Detached = Handle<crate::Span>;

impl<S: DbSpan> Handle<S> {
    fn set_outcome_to(&mut self, outcome: Outcome) {
        match self {
            Handle::Span(s) => s.set_outcome_to(outcome),
            Handle::OverLimit(o) => o.set_outcome(outcome),
        }
    }
}

/// Starts the span of `statement`; `None` when nothing would be recorded here (outside a
/// sampled transaction, or with the agent off): then nothing is allocated.
#[cfg(feature = "rusqlite")]
#[inline]
pub(crate) fn start<S: DbSpan>(target: &Target<'_>, statement: &str) -> Option<Handle<S>> {
    open(target, DbStatement::Sql(statement))
}

#[inline]
fn open<S: DbSpan>(target: &Target<'_>, statement: DbStatement<'_>) -> Option<Handle<S>> {
    if !spans_recorded_here() {
        return None;
    }
    let span = S::open(target, statement);
    if span.is_recording() {
        return Some(Handle::Span(span));
    }
    OverLimitExit::start_db(target.endpoint).map(Handle::OverLimit)
}

/// [`start`], or, when the statement is not known, a span named `unknown` without
/// `context.db.statement`.
#[inline]
pub(crate) fn start_maybe<S: DbSpan>(
    target: &Target<'_>,
    statement: Option<&str>,
    unknown: &'static str,
) -> Option<Handle<S>> {
    match statement {
        Some(statement) => open(target, DbStatement::Sql(statement)),
        None => open(target, DbStatement::Unknown(unknown)),
    }
}

/// Records how the call went: `failure` for an error, `success` (and the rows the statement
/// changed, when known) otherwise.
#[inline]
pub(crate) fn finish<S: DbSpan, T, E>(
    span: &mut Option<Handle<S>>,
    result: &Result<T, E>,
    rows: impl FnOnce(&T) -> Option<u64>,
) {
    let Some(span) = span else { return };
    match result {
        Ok(value) => {
            if let (Handle::Span(span), Some(rows)) = (&mut *span, rows(value)) {
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
    let mut span: Option<Guard> = start(target, statement);
    let result = call();
    finish(&mut span, &result, rows);
    result
}

/// No rows to report.
#[cfg(any(feature = "rusqlite", feature = "postgres", feature = "diesel"))]
#[inline]
pub(crate) fn no_rows<T>(_: &T) -> Option<u64> {
    None
}

/// Starts the span of an awaited call (named `unknown` when its statement is not known),
/// never current: the future may move between threads. Its outcome stays `unknown` unless
/// the call completes, so that a cancelled (dropped) call says so.
#[cfg(any(feature = "postgres", feature = "diesel", apm_db))]
#[inline]
pub(crate) fn start_detached(
    target: &Target<'_>,
    statement: Option<&str>,
    unknown: &'static str,
) -> Option<Detached> {
    let mut span: Option<Detached> = start_maybe(target, statement, unknown);
    if let Some(span) = &mut span {
        span.set_outcome_to(Outcome::Unknown);
    }
    span
}
