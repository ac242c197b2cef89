//! The spans of SQL statements (`integrations/db.rs`), opened with a name that is two shared
//! pointers (`SpanName::Db`), so that a statement seen before costs no allocation. Past
//! `transaction_max_spans` they are timed anyway (`over_limit.rs`).

use std::sync::Arc;

use super::handles::{Span, SpanGuard};
use super::span::{self, Mode};
use super::stack;
use super::statements;
use crate::types::db::{DbAction, DbEndpoint, DbStatement};
use crate::types::record::{DbCall, SpanName};

fn name(endpoint: &Arc<DbEndpoint>, statement: DbStatement<'_>, action: DbAction) -> SpanName {
    SpanName::Db(DbCall {
        endpoint: Arc::clone(endpoint),
        text: statements::sql_text(statement),
        action,
        rows: DbCall::NO_ROWS,
    })
}

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

/// Opens the span of a statement whose call is awaited (never current).
pub(crate) fn start_db_span(
    endpoint: &Arc<DbEndpoint>,
    statement: DbStatement<'_>,
    action: DbAction,
) -> Span {
    Span::opened(span::open_span(
        name(endpoint, statement, action),
        Mode::Beside,
    ))
}
