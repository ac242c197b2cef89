//! The spans of database and cache calls: for SQL statements (`integrations/db.rs`), opened
//! with a name that is two shared pointers (`SpanName::Db`), so that a statement seen before
//! costs no allocation; and, for SQL statements and Redis commands alike, past
//! `transaction_max_spans`, timed anyway, so that the transaction's `dropped_spans_stats`
//! counts them.

use std::sync::Arc;

use super::shared::TxnShared;
use super::stack;
use crate::types::clock::{self, Tick};
use crate::types::db::DbEndpoint;
use crate::types::outcome::Outcome;
#[cfg(apm_sql)]
use {
    super::handles::{Span, SpanGuard},
    super::span::{self, Mode},
    super::statements,
    crate::types::db::{DbAction, DbStatement},
    crate::types::record::{DbCall, SpanName},
};

#[cfg(apm_sql)]
fn name(endpoint: &Arc<DbEndpoint>, statement: DbStatement<'_>, action: DbAction) -> SpanName {
    SpanName::Db(DbCall {
        endpoint: Arc::clone(endpoint),
        text: statements::sql_text(statement),
        action,
        rows: DbCall::NO_ROWS,
    })
}

#[cfg(apm_sql)]
/// Opens the span of a statement, current on this thread (and a leaf: nothing is recorded
/// under it) until the guard drops.
pub(crate) fn start_db_guard(
    endpoint: &Arc<DbEndpoint>,
    statement: DbStatement<'_>,
    action: DbAction,
) -> SpanGuard {
    let opened = span::open_span(name(endpoint, statement, action), Mode::Enter);
    if let Some((_, Some(token))) = &opened {
        stack::mark_leaf(*token);
    }
    SpanGuard::opened(opened)
}

#[cfg(apm_sql)]
/// Opens the span of a statement whose call is awaited (never current).
pub(crate) fn start_db_span(
    endpoint: &Arc<DbEndpoint>,
    statement: DbStatement<'_>,
    action: DbAction,
) -> Span {
    Span::opened(span::open_span(name(endpoint, statement, action), Mode::Beside))
}

/// A statement run past `transaction_max_spans`: not a span, but counted, with its duration
/// and outcome, in its transaction's `dropped_spans_stats` when dropped.
#[derive(Debug)]
pub(crate) struct OverLimitExit {
    txn: Arc<TxnShared>,
    endpoint: Arc<DbEndpoint>,
    start: Tick,
    outcome: Option<Outcome>,
}

impl OverLimitExit {
    /// Starts timing a statement, if the current transaction is sampled and past its span
    /// limit (and the current span is not an exit span, under which nothing counts).
    pub(crate) fn start(endpoint: &Arc<DbEndpoint>) -> Option<Self> {
        let txn = stack::over_span_limit()?;
        Some(OverLimitExit {
            txn,
            endpoint: Arc::clone(endpoint),
            start: clock::now(),
            outcome: None,
        })
    }

    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for OverLimitExit {
    fn drop(&mut self) {
        let outcome = match self.outcome {
            _ if std::thread::panicking() => Outcome::Failure,
            Some(outcome) => outcome,
            None => Outcome::Success,
        };
        let ns = clock::nanos_between(self.start, clock::now());
        self.txn.add_dropped_exit(&self.endpoint, outcome, ns);
    }
}
