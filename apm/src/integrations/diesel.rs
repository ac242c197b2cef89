//! Exit spans for [diesel](https://docs.rs/diesel) queries (feature `diesel`), through diesel's
//! own instrumentation hook: one line at startup, before connections are established.
//!
//! ```no_run
//! diesel::connection::set_default_instrumentation(apm::diesel::instrumentation)?;
//! // Every connection established from now on is traced.
//! # Ok::<(), diesel::result::Error>(())
//! ```
//!
//! Or for one connection, with the URL it was established with (the hook learns it only when
//! it is set before the connection is established):
//!
//! ```no_run
//! # fn f(conn: &mut impl diesel::Connection) {
//! conn.set_instrumentation(apm::diesel::Instrumentation::for_url("postgres://app@db/shop"));
//! # }
//! ```
//!
//! Each query diesel runs (`load`, `execute`, `batch_execute`, and the `BEGIN`, `COMMIT`,
//! `ROLLBACK` and savepoints of its transactions) becomes an exit span inside a sampled
//! transaction: type `db`, subtype from the URL (`postgresql` for `postgres://` and
//! `postgresql://`, `mysql` for `mysql://`, `sqlite` otherwise), action `query`, named after
//! the statement ([`sql::signature`](crate::sql::signature)); `context.db` has type `sql`, the
//! statement (without its bind values), the instance (the URL's database, or the SQLite file's
//! name, `:memory:`) and the user; `destination` is the URL's host and port (none for
//! SQLite); outcome `failure` when diesel reports an error. Diesel's events carry no row
//! count, so there is no `rows_affected`.
//!
//! The span is never current (the hook cannot hold a thread's guard between its events), and
//! it starts and ends with diesel's `StartQuery` and `FinishQuery` events. The statement is
//! the first part of diesel's rendering of the query, before its binds (diesel does not
//! promise that format; should it change, the binds could show in the statement).
//!
//! Outside a sampled transaction nothing is recorded and the query is not rendered.

use std::sync::Arc;

use super::db::{self, Target};
use super::facade::{spans_recorded_here, DbEndpoint};
use ::diesel::connection::InstrumentationEvent;

/// The name of a span whose statement could not be read.
const UNKNOWN_STATEMENT: &str = "SQL statement";

/// For `diesel::connection::set_default_instrumentation`: a traced hook for every connection
/// established afterwards.
pub fn instrumentation() -> Option<Box<dyn ::diesel::connection::Instrumentation>> {
    Some(Box::new(Instrumentation::new()))
}

/// diesel's instrumentation hook, tracing each query (see the [module documentation](self)).
#[derive(Debug)]
pub struct Instrumentation {
    endpoint: Arc<DbEndpoint>,
    /// The spans of the queries running (diesel's events nest).
    open: Vec<Option<db::Detached>>,
}

impl Default for Instrumentation {
    fn default() -> Self {
        Self::new()
    }
}

impl Instrumentation {
    /// A hook that learns the database from the connection's URL when the connection is
    /// established (for `set_default_instrumentation`).
    pub fn new() -> Self {
        Instrumentation {
            endpoint: Arc::new(DbEndpoint {
                subtype: "sqlite",
                instance: None,
                user: None,
                destination: None,
            }),
            open: Vec::with_capacity(2),
        }
    }

    /// A hook for a connection established with `url`.
    pub fn for_url(url: &str) -> Self {
        let mut hook = Self::new();
        hook.learn(url);
        hook
    }

    /// Learns the database of the connection established with `url`.
    fn learn(&mut self, url: &str) {
        self.endpoint = Arc::new(endpoint_of(url));
    }

    fn target(&self) -> Target<'_> {
        Target::query(&self.endpoint)
    }
}

/// Reads subtype, instance, user, host and port from a connection URL (its password is never
/// kept).
fn endpoint_of(url: &str) -> DbEndpoint {
    let (subtype, default_port) = match url.split_once("://").map(|(s, _)| s) {
        Some("postgres" | "postgresql") => ("postgresql", 5432),
        Some("mysql") => ("mysql", 3306),
        _ => {
            let path = url.strip_prefix("file:").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            let instance = match path {
                "" | ":memory:" => ":memory:".to_owned(),
                path => std::path::Path::new(path)
                    .file_name()
                    .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned()),
            };
            return DbEndpoint {
                subtype: "sqlite",
                instance: Some(instance),
                user: None,
                destination: None,
            };
        }
    };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let user = userinfo
        .map(|u| u.split(':').next().unwrap_or(u))
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()),
        _ => (hostport, None),
    };
    let db = path.split('?').next().unwrap_or(path);
    DbEndpoint {
        subtype,
        instance: if db.is_empty() {
            user.clone()
        } else {
            Some(db.to_owned())
        },
        user,
        destination: (!host.is_empty())
            .then(|| (host.to_owned(), Some(port.unwrap_or(default_port)))),
    }
}

/// The SQL of diesel's rendering of a query: what is written before the binds. Writing stops
/// (with an error, ignored) after the first piece, so the binds are never formatted.
fn statement(query: &dyn ::diesel::connection::DebugQuery) -> Option<String> {
    use std::fmt::Write as _;
    struct First(Option<String>);
    impl std::fmt::Write for First {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.is_some() {
                return Err(std::fmt::Error);
            }
            self.0 = Some(s.to_owned());
            Ok(())
        }
    }
    let mut first = First(None);
    let _ = write!(first, "{query}");
    first.0.map(|mut s| {
        if let Some(at) = s.find(" -- binds: ") {
            s.truncate(at);
        }
        s
    })
}

impl ::diesel::connection::Instrumentation for Instrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => self.learn(url),
            InstrumentationEvent::StartQuery { query, .. } => {
                let span = if spans_recorded_here() {
                    let sql = statement(query);
                    db::start_detached(&self.target(), sql.as_deref(), UNKNOWN_STATEMENT)
                } else {
                    None
                };
                self.open.push(span);
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                let mut span = self.open.pop().flatten();
                let result = match error {
                    Some(_) => Err(()),
                    None => Ok(()),
                };
                db::finish(&mut span, &result, db::no_rows);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_subtype_instance_user_and_destination() {
        let h = endpoint_of("postgres://app:secret@db.internal:5433/shop?sslmode=off");
        assert_eq!(h.subtype, "postgresql");
        assert_eq!(h.instance.as_deref(), Some("shop"));
        assert_eq!(h.user.as_deref(), Some("app"));
        assert_eq!(h.destination, Some(("db.internal".to_owned(), Some(5433))));
        let h = endpoint_of("mysql://root@127.0.0.1/test");
        assert_eq!(
            (h.subtype, h.destination),
            ("mysql", Some(("127.0.0.1".to_owned(), Some(3306))))
        );
        let h = endpoint_of("postgresql://app@db");
        assert_eq!(h.instance.as_deref(), Some("app"));
        let h = endpoint_of("/var/lib/app/orders.db");
        assert_eq!(
            (h.subtype, h.instance.as_deref()),
            ("sqlite", Some("orders.db"))
        );
        assert_eq!(h.destination, None);
        let h = endpoint_of(":memory:");
        assert_eq!(h.instance.as_deref(), Some(":memory:"));
        let h = endpoint_of("file:cache.db?mode=memory");
        assert_eq!(h.instance.as_deref(), Some("cache.db"));
    }
}
