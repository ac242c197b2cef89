//! Exit spans for the statements of a [mysql](https://docs.rs/mysql) connection (feature
//! `mysql`; the synchronous driver; it needs Rust 1.89, as mysql_common's uuid does).
//!
//! Wrap the connection (`mysql::Conn`, or a `mysql::PooledConn` from a `mysql::Pool`) in
//! [`Traced`]; it implements the driver's own `Queryable` trait, so `query`, `query_first`,
//! `exec`, `exec_drop`, `exec_batch`, `query_iter` and the others are called on it as on the
//! connection:
//!
//! ```no_run
//! use mysql::prelude::Queryable as _;
//!
//! # fn f() -> mysql::Result<()> {
//! let opts = mysql::Opts::from_url("mysql://app@db.internal:3306/shop").expect("a valid URL");
//! let pool = mysql::Pool::new(opts.clone())?;
//! let mut conn = apm::mysql::Traced::new(pool.get_conn()?, &opts);
//! let names: Vec<String> = conn.exec("SELECT name FROM items WHERE price < ?", (10,))?;
//! conn.exec_drop("UPDATE items SET price = price + 1 WHERE id = ?", (7,))?;
//! # Ok(()) }
//! ```
//!
//! Inside a sampled transaction each statement becomes an exit span, child of the current span
//! or transaction on this thread, as `specs/agents/tracing-instrumentation-db.md` ("SQL
//! Databases") asks:
//!
//! - type `db`, subtype `mysql`, action `query`; name the statement's signature
//!   ([`sql::signature`](crate::sql::signature): `SELECT FROM items`);
//! - `context.db`: type `sql`, `instance` the database named in the options, `statement` (cut
//!   to `long_field_max_length` when sent), `user`, and `rows_affected` for a statement that
//!   returns no rows (`INSERT`, `UPDATE`, `DELETE`...); `destination` the options' host and
//!   port; `service.target` `mysql` named after the database;
//! - outcome `failure` when the driver returns an error (the server's, such as a syntax error,
//!   or the connection's), also one met while reading the rows, `success` otherwise.
//!
//! The span covers the statement and the reading of its rows by the method called (`query`
//! collects them, `query_first` reads one and drops the rest); `query_iter` and `exec_iter`
//! hand the rows over unread, so their span ends when the first result set's header has
//! arrived. A statement given as text to `exec` is prepared through the wrapper, so its text is
//! known; a `mysql::Statement` prepared earlier on this wrapper inside a recorded transaction
//! too; one prepared elsewhere has no text, and its span is named `EXECUTE`. `exec_batch` is
//! one span. Preparing and closing statements are not spans of their own.
//!
//! Outside a sampled transaction nothing is recorded and nothing is allocated: each call goes
//! straight to the connection. The application always gets the driver's own result,
//! unchanged. Statements sent through a `mysql::Transaction` started from the connection
//! inside are not traced (wrap the `Transaction` itself: it is `Queryable` too).

use std::borrow::Cow;
use std::result::Result as StdResult;
use std::sync::Arc;

use ::mysql::prelude::{AsStatement, FromRow, Queryable};
use ::mysql::{
    from_row, from_row_opt, Binary, FromRowError, Opts, Params, QueryResult, Result, Statement,
    Text,
};

use super::db::{self, Target};
use super::facade::{spans_recorded_here, DbEndpoint};

/// How many statements' text a wrapper remembers (the most recently prepared).
const REMEMBERED_STATEMENTS: usize = 64;

/// A mysql connection whose statements become exit spans (see the [module
/// documentation](self)). `C` is anything `Queryable`: `mysql::Conn`, `mysql::PooledConn`,
/// `mysql::Transaction`.
#[derive(Debug)]
pub struct Traced<C> {
    inner: C,
    endpoint: Arc<DbEndpoint>,
    /// The text of statements prepared through this wrapper while a span would be recorded,
    /// by statement id.
    prepared: Vec<(u32, Box<str>)>,
    /// The text given to the last `prep` while a span would be recorded: the statement of an
    /// `exec` whose preparation fails.
    preparing: Option<Box<str>>,
}

impl<C: Queryable> Traced<C> {
    /// Wraps `connection`, opened with `opts`, which give the spans' destination, database
    /// (`context.db.instance`) and user.
    pub fn new(connection: C, opts: &Opts) -> Self {
        Traced {
            inner: connection,
            endpoint: Arc::new(DbEndpoint {
                subtype: "mysql",
                instance: opts.get_db_name().map(str::to_owned),
                user: opts.get_user().map(str::to_owned),
                destination: Some((
                    opts.get_ip_or_hostname().into_owned(),
                    Some(opts.get_tcp_port()),
                )),
            }),
            prepared: Vec::new(),
            preparing: None,
        }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The connection inside, for its own methods (what goes through them is not traced).
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The connection, unwrapped (e.g. a `mysql::Transaction` to commit).
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Opens the span of a statement (`None` for its text: unknown), when one would be
    /// recorded here (checked first: nothing is built otherwise).
    fn open(&self, statement: Option<&str>) -> Option<db::Guard> {
        db::start_maybe(&Target::query(&self.endpoint), statement, "EXECUTE")
    }

    /// The remembered text of a prepared statement.
    fn statement_text(&self, id: u32) -> Option<&str> {
        self.prepared
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, text)| &**text)
    }

    /// A text statement inside a span: `consume` reads what it needs of the result (the span
    /// covers it).
    fn text<R>(
        &mut self,
        query: &str,
        consume: impl FnOnce(QueryResult<'_, '_, '_, Text>) -> Result<R>,
    ) -> Result<R> {
        let span = self.open(Some(query));
        let result = self.inner.query_iter(query).and_then(|r| {
            let rows = rows_affected(&r);
            consume(r).map(|value| (value, rows))
        });
        finish(span, &result);
        result.map(|(value, _)| value)
    }

    /// The statement to execute (prepared now through [`Queryable::prep`] when given as
    /// text, so that its text is remembered) and its span; a failure to prepare is a failed
    /// span of its own.
    fn prepare<'s, S: AsStatement>(
        &mut self,
        stmt: &'s S,
    ) -> Result<(Cow<'s, Statement>, Option<db::Guard>)> {
        self.preparing = None;
        match stmt.as_statement(self) {
            Ok(statement) => {
                let span = self.open(self.statement_text(statement.id()));
                Ok((statement, span))
            }
            Err(e) => {
                let text = self.preparing.take();
                finish::<()>(self.open(text.as_deref()), &Err(()));
                Err(e)
            }
        }
    }

    /// A prepared statement inside a span: `consume` reads what it needs of the result (the
    /// span covers it).
    fn binary<S: AsStatement, P: Into<Params>, R>(
        &mut self,
        stmt: S,
        params: P,
        consume: impl FnOnce(QueryResult<'_, '_, '_, Binary>) -> Result<R>,
    ) -> Result<R> {
        let (statement, span) = self.prepare(&stmt)?;
        let result = self.inner.exec_iter(&*statement, params).and_then(|r| {
            let rows = rows_affected(&r);
            consume(r).map(|value| (value, rows))
        });
        finish(span, &result);
        result.map(|(value, _)| value)
    }
}

/// `rows_affected` of a statement whose (first) result has no rows to read.
fn rows_affected<T: ::mysql::prelude::Protocol>(
    result: &QueryResult<'_, '_, '_, T>,
) -> Option<u64> {
    result
        .columns()
        .as_ref()
        .is_empty()
        .then(|| result.affected_rows())
}

/// Sets the outcome (and the rows affected) of a span, which ends here.
fn finish<V>(mut span: Option<db::Guard>, result: &StdResult<(V, Option<u64>), impl Sized>) {
    db::finish(&mut span, result, |(_, rows)| *rows);
}

impl<C: Queryable> Queryable for Traced<C> {
    fn query_iter<Q: AsRef<str>>(&mut self, query: Q) -> Result<QueryResult<'_, '_, '_, Text>> {
        let query = query.as_ref();
        let span = self.open(Some(query));
        let result = self.inner.query_iter(query);
        if span.is_some() {
            let rows = result.as_ref().map(|r| ((), rows_affected(r)));
            finish(span, &rows);
        }
        result
    }

    fn prep<Q: AsRef<str>>(&mut self, query: Q) -> Result<Statement> {
        let query = query.as_ref();
        let recording = spans_recorded_here();
        if recording {
            self.preparing = Some(query.into());
        }
        let statement = self.inner.prep(query)?;
        if recording && self.statement_text(statement.id()).is_none() {
            if self.prepared.len() == REMEMBERED_STATEMENTS {
                self.prepared.remove(0);
            }
            self.prepared.push((statement.id(), query.into()));
        }
        Ok(statement)
    }

    fn close(&mut self, stmt: Statement) -> Result<()> {
        self.prepared.retain(|(id, _)| *id != stmt.id());
        self.inner.close(stmt)
    }

    fn exec_iter<S, P>(&mut self, stmt: S, params: P) -> Result<QueryResult<'_, '_, '_, Binary>>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        let (statement, span) = self.prepare(&stmt)?;
        let result = self.inner.exec_iter(&*statement, params);
        if span.is_some() {
            let rows = result.as_ref().map(|r| ((), rows_affected(r)));
            finish(span, &rows);
        }
        result
    }

    fn exec_batch<S, P, I>(&mut self, stmt: S, params: I) -> Result<()>
    where
        Self: Sized,
        S: AsStatement,
        P: Into<Params>,
        I: IntoIterator<Item = P>,
    {
        let (statement, span) = self.prepare(&stmt)?;
        let result = self.inner.exec_batch(&*statement, params);
        finish(span, &result.as_ref().map(|()| ((), None)));
        result
    }

    fn query<T: FromRow, Q: AsRef<str>>(&mut self, query: Q) -> Result<Vec<T>> {
        self.query_map(query, from_row)
    }

    fn query_opt<T: FromRow, Q: AsRef<str>>(
        &mut self,
        query: Q,
    ) -> Result<Vec<StdResult<T, FromRowError>>> {
        self.query_map(query, from_row_opt)
    }

    fn query_first<T: FromRow, Q: AsRef<str>>(&mut self, query: Q) -> Result<Option<T>> {
        self.text(query.as_ref(), |mut r| {
            r.next().map(|row| row.map(from_row)).transpose()
        })
    }

    fn query_first_opt<T: FromRow, Q: AsRef<str>>(
        &mut self,
        query: Q,
    ) -> Result<Option<StdResult<T, FromRowError>>> {
        self.text(query.as_ref(), |mut r| {
            r.next().map(|row| row.map(from_row_opt)).transpose()
        })
    }

    fn query_map<T, F, Q, U>(&mut self, query: Q, mut f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        self.query_fold(query, Vec::new(), |mut acc, row| {
            acc.push(f(row));
            acc
        })
    }

    fn query_map_opt<T, F, Q, U>(&mut self, query: Q, mut f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        self.query_fold_opt(query, Vec::new(), |mut acc, row| {
            acc.push(f(row));
            acc
        })
    }

    fn query_fold<T, F, Q, U>(&mut self, query: Q, init: U, mut f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        self.text(query.as_ref(), |r| {
            r.map(|row| row.map(from_row::<T>))
                .try_fold(init, |acc, row| row.map(|row| f(acc, row)))
        })
    }

    fn query_fold_opt<T, F, Q, U>(&mut self, query: Q, init: U, mut f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        self.text(query.as_ref(), |r| {
            r.map(|row| row.map(from_row_opt::<T>))
                .try_fold(init, |acc, row| row.map(|row| f(acc, row)))
        })
    }

    fn query_drop<Q: AsRef<str>>(&mut self, query: Q) -> Result<()> {
        self.text(query.as_ref(), |r| {
            drop(r);
            Ok(())
        })
    }

    fn exec<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.exec_map(stmt, params, from_row)
    }

    fn exec_opt<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.exec_map(stmt, params, from_row_opt)
    }

    fn exec_first<T, S, P>(&mut self, stmt: S, params: P) -> Result<Option<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.binary(stmt, params, |mut r| {
            r.next().map(|row| row.map(from_row)).transpose()
        })
    }

    fn exec_first_opt<T, S, P>(
        &mut self,
        stmt: S,
        params: P,
    ) -> Result<Option<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.binary(stmt, params, |mut r| {
            r.next().map(|row| row.map(from_row_opt)).transpose()
        })
    }

    fn exec_map<T, S, P, F, U>(&mut self, stmt: S, params: P, mut f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        self.exec_fold(stmt, params, Vec::new(), |mut acc, row| {
            acc.push(f(row));
            acc
        })
    }

    fn exec_map_opt<T, S, P, F, U>(&mut self, stmt: S, params: P, mut f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        self.exec_fold_opt(stmt, params, Vec::new(), |mut acc, row| {
            acc.push(f(row));
            acc
        })
    }

    fn exec_fold<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, mut f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        self.binary(stmt, params, |mut r| {
            r.try_fold(init, |acc, row| row.map(|row| f(acc, from_row(row))))
        })
    }

    fn exec_fold_opt<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, mut f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        self.binary(stmt, params, |mut r| {
            r.try_fold(init, |acc, row| row.map(|row| f(acc, from_row_opt(row))))
        })
    }

    fn exec_drop<S, P>(&mut self, stmt: S, params: P) -> Result<()>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        self.binary(stmt, params, |r| {
            drop(r);
            Ok(())
        })
    }
}
