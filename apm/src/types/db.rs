//! What the spans of database clients record, kept as the application thread hands it over:
//! the connection's endpoint (shared by all its calls) and, for SQL, the statement's text and
//! signature (shared by every run of the same statement on a thread). The span's name and
//! `context.db` are written from them on the transport thread, so that a query's span costs
//! the application no allocation and no scan of its SQL once its statement has been seen.
//! Calls past `transaction_max_spans` are counted per endpoint (`dropped_exits.rs`).

#[cfg(apm_sql)]
use std::borrow::Cow;

/// A database as its connections' spans describe it: the same for every statement of a
/// connection (built once, when the connection is wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "enable"), allow(dead_code))]
pub(crate) struct DbEndpoint {
    /// `sqlite`, `postgresql`, `mysql`: the span's subtype.
    pub(crate) subtype: &'static str,
    /// `context.db.instance`: the database's name.
    pub(crate) instance: Option<String>,
    /// `context.db.user`.
    pub(crate) user: Option<String>,
    /// `context.destination`: host and port, when the database is reached over the network.
    pub(crate) destination: Option<(String, Option<u16>)>,
}

/// The statement a span runs, as the integration knows it.
#[cfg(apm_sql)]
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "enable"), allow(dead_code))]
pub(crate) enum DbStatement<'a> {
    /// Its SQL.
    Sql(&'a str),
    /// Unknown (a statement prepared where nothing was recorded): the span is named this and
    /// has no `context.db.statement`.
    Unknown(&'static str),
}

/// `span.action`.
#[cfg(apm_sql)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "enable"), allow(dead_code))]
pub(crate) enum DbAction {
    Query,
    /// A statement being prepared on the server.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Prepare,
}

#[cfg(apm_sql)]
impl DbAction {
    #[cfg_attr(not(feature = "enable"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DbAction::Query => "query",
            DbAction::Prepare => "prepare",
        }
    }
}

/// One statement's text, cut to `long_field_max_length` when it was captured, and the span
/// name it gives.
#[cfg(apm_sql)]
#[derive(Debug)]
#[cfg_attr(not(feature = "enable"), allow(dead_code))]
pub(crate) struct SqlText {
    /// `context.db.statement`; `None` for a statement whose SQL is unknown.
    pub(crate) statement: Option<Box<str>>,
    /// The span's name: the statement's signature (computed from the whole statement).
    pub(crate) name: Cow<'static, str>,
}
