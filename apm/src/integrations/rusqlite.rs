//! Exit spans for [rusqlite](https://docs.rs/rusqlite) statements (feature `rusqlite`).
//!
//! Open the database with [`Connection`] instead of `rusqlite::Connection` (or wrap one with
//! [`Connection::from`]); nothing else changes. It dereferences to the real connection, so
//! every method of rusqlite is still there; those that run SQL are traced:
//!
//! ```no_run
//! let conn = apm::rusqlite::Connection::open_in_memory()?;
//! conn.execute_batch("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")?;
//! conn.execute("INSERT INTO item (name) VALUES (?1)", ["pen"])?;
//! let name: String = conn.query_row("SELECT name FROM item WHERE id = ?1", [1], |r| r.get(0))?;
//! let mut stmt = conn.prepare("SELECT id, name FROM item")?;
//! let items: Vec<(i64, String)> = stmt
//!     .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
//!     .collect::<Result<_, _>>()?;
//! # Ok::<(), rusqlite::Error>(())
//! ```
//!
//! Traced: `execute`, `execute_batch`, `query_row`, `query_one`, `query_row_and_then`; the
//! [`Statement`]s of `prepare` and `prepare_cached` (`execute`, `insert`, `query`,
//! `query_map`, `query_and_then`, `query_row`, `query_one`, `exists`); and transactions:
//! `BEGIN` ([`Connection::transaction`]), `COMMIT`, `ROLLBACK`, also the rollback (or commit)
//! of a [`Transaction`] dropped unfinished. Savepoints and methods reached through the
//! dereference to `rusqlite::Connection` are not traced.
//!
//! Inside a sampled transaction each call becomes an exit span, as
//! `specs/agents/tracing-instrumentation-db.md` ("SQL Databases") asks: type `db`, subtype
//! `sqlite`, action `query`, named after the statement ([`sql::signature`](crate::sql::signature):
//! `SELECT FROM item`); `context.db` has type `sql`, the instance (the database file's name,
//! `:memory:` for an in-memory or temporary one), the statement (cut to
//! `long_field_max_length`, 10000 characters by default) and, for `execute`, the rows it
//! changed. `service.target` is `sqlite` and the instance; there is no `destination`, the
//! database lives in the process. An error makes the outcome `failure`.
//!
//! The span of `query`, `query_map` and `query_and_then` lasts until their rows are dropped,
//! since SQLite runs the statement as the rows are read; it is never current, so spans the
//! application starts while reading are its siblings. A [`Statement`] remembers its SQL only
//! when prepared where spans are recorded (so that nothing is allocated elsewhere): one
//! prepared outside a transaction and run inside one gets a span named `SQLite` without a
//! statement.
//!
//! Outside a sampled transaction nothing is recorded and nothing allocated. The application
//! always gets rusqlite's own result, unchanged.
//!
//! rusqlite's own hooks (`trace_v2`'s statement and profile events) were not used: they take
//! a plain `fn` (no per-connection state, so no instance name), report neither errors nor
//! changed rows, and would replace the application's own hook.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use ::rusqlite::{Params, Result, Row, TransactionBehavior};

use super::db::{self, no_rows, Target};
use super::facade::DbEndpoint;

const SUBTYPE: &str = "sqlite";

/// The name of a statement whose SQL is unknown (see the [module documentation](self)).
const UNKNOWN_STATEMENT: &str = "SQLite";

/// A `rusqlite::Connection` whose statements are traced (see the [module documentation](self)).
/// It dereferences to the connection for everything else.
#[derive(Debug)]
pub struct Connection {
    inner: ::rusqlite::Connection,
    endpoint: Arc<DbEndpoint>,
}

impl From<::rusqlite::Connection> for Connection {
    fn from(inner: ::rusqlite::Connection) -> Self {
        let endpoint = Arc::new(DbEndpoint {
            subtype: SUBTYPE,
            instance: Some(instance_of(&inner)),
            user: None,
            destination: None,
        });
        Connection { inner, endpoint }
    }
}

impl Deref for Connection {
    type Target = ::rusqlite::Connection;
    fn deref(&self) -> &::rusqlite::Connection {
        &self.inner
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut ::rusqlite::Connection {
        &mut self.inner
    }
}

/// `context.db.instance`: the file's name (not its path), `:memory:` without a file.
fn instance_of(conn: &::rusqlite::Connection) -> String {
    match conn.path() {
        None | Some("") => ":memory:".to_owned(),
        Some(path) => Path::new(path)
            .file_name()
            .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned()),
    }
}

fn target(endpoint: &Arc<DbEndpoint>) -> Target<'_> {
    Target::query(endpoint)
}

/// The methods that run SQL, on [`Connection`] and [`Transaction`] alike; `self.conn()` is the
/// `rusqlite::Connection`, `self.endpoint()` the instance name.
macro_rules! sql_methods {
    () => {
        /// `execute`, traced; `rows_affected` is the count it returns.
        pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
            db::traced(
                &target(self.endpoint()),
                sql,
                || self.conn().execute(sql, params),
                |n| Some(*n as u64),
            )
        }

        /// `execute_batch`, traced: one span for the whole batch, named after its first
        /// statement.
        pub fn execute_batch(&self, sql: &str) -> Result<()> {
            db::traced(
                &target(self.endpoint()),
                sql,
                || self.conn().execute_batch(sql),
                no_rows,
            )
        }

        /// `query_row`, traced (`f` runs inside the span).
        pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
        where
            P: Params,
            F: FnOnce(&Row<'_>) -> Result<T>,
        {
            db::traced(
                &target(self.endpoint()),
                sql,
                || self.conn().query_row(sql, params, f),
                no_rows,
            )
        }

        /// `query_one`, traced (`f` runs inside the span).
        pub fn query_one<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
        where
            P: Params,
            F: FnOnce(&Row<'_>) -> Result<T>,
        {
            db::traced(
                &target(self.endpoint()),
                sql,
                || self.conn().query_one(sql, params, f),
                no_rows,
            )
        }

        /// `query_row_and_then`, traced (`f` runs inside the span; its error is a failure).
        pub fn query_row_and_then<T, E, P, F>(&self, sql: &str, params: P, f: F) -> Result<T, E>
        where
            P: Params,
            F: FnOnce(&Row<'_>) -> Result<T, E>,
            E: From<::rusqlite::Error>,
        {
            db::traced(
                &target(self.endpoint()),
                sql,
                || self.conn().query_row_and_then(sql, params, f),
                no_rows,
            )
        }

        /// `prepare`: preparing is not traced, running the [`Statement`] is.
        pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
            self.conn()
                .prepare(sql)
                .map(|s| Statement::new(StatementInner::Plain(s), sql, self.endpoint()))
        }

        /// `prepare_cached`: preparing is not traced, running the [`Statement`] is.
        pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
            self.conn()
                .prepare_cached(sql)
                .map(|s| Statement::new(StatementInner::Cached(s), sql, self.endpoint()))
        }
    };
}

impl Connection {
    /// `rusqlite::Connection::open`, traced.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        ::rusqlite::Connection::open(path).map(Self::from)
    }

    /// `rusqlite::Connection::open_in_memory`, traced.
    pub fn open_in_memory() -> Result<Self> {
        ::rusqlite::Connection::open_in_memory().map(Self::from)
    }

    /// The connection itself, no longer traced.
    pub fn into_inner(self) -> ::rusqlite::Connection {
        self.inner
    }

    /// Begins a deferred transaction (`BEGIN DEFERRED`, traced), like rusqlite's.
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }

    /// Begins a transaction with the given behavior, like rusqlite's.
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        let Connection { inner, endpoint } = self;
        let target = target(endpoint);
        db::traced(
            &target,
            begin_statement(behavior),
            || ::rusqlite::Transaction::new(inner, behavior),
            no_rows,
        )
        .map(|inner| Transaction {
            inner,
            endpoint: &self.endpoint,
        })
    }

    /// Begins a transaction on a shared connection, like rusqlite's: it fails if one is open.
    pub fn unchecked_transaction(&self) -> Result<Transaction<'_>> {
        let behavior = TransactionBehavior::Deferred;
        db::traced(
            &target(&self.endpoint),
            begin_statement(behavior),
            || ::rusqlite::Transaction::new_unchecked(&self.inner, behavior),
            no_rows,
        )
        .map(|inner| Transaction {
            inner,
            endpoint: &self.endpoint,
        })
    }

    sql_methods!();
}

fn begin_statement(behavior: TransactionBehavior) -> &'static str {
    match behavior {
        TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
        TransactionBehavior::Exclusive => "BEGIN EXCLUSIVE",
        _ => "BEGIN DEFERRED",
    }
}

impl Connection {
    fn conn(&self) -> &::rusqlite::Connection {
        &self.inner
    }
    fn endpoint(&self) -> &Arc<DbEndpoint> {
        &self.endpoint
    }
}

/// A `rusqlite::Transaction` of a traced [`Connection`]: its statements, `COMMIT` and
/// `ROLLBACK` are traced. It dereferences to the `rusqlite::Transaction` for the rest
/// (savepoints, drop behavior).
#[derive(Debug)]
pub struct Transaction<'conn> {
    inner: ::rusqlite::Transaction<'conn>,
    endpoint: &'conn Arc<DbEndpoint>,
}

impl<'conn> Deref for Transaction<'conn> {
    type Target = ::rusqlite::Transaction<'conn>;
    fn deref(&self) -> &::rusqlite::Transaction<'conn> {
        &self.inner
    }
}

impl<'conn> DerefMut for Transaction<'conn> {
    fn deref_mut(&mut self) -> &mut ::rusqlite::Transaction<'conn> {
        &mut self.inner
    }
}

impl Transaction<'_> {
    fn conn(&self) -> &::rusqlite::Connection {
        &self.inner
    }
    fn endpoint(&self) -> &Arc<DbEndpoint> {
        self.endpoint
    }

    /// Commits (`COMMIT`, traced), like rusqlite's: when it fails, the transaction is
    /// rolled back as it is dropped.
    pub fn commit(self) -> Result<()> {
        self.execute_batch("COMMIT")
    }

    /// Rolls back (`ROLLBACK`, traced).
    pub fn rollback(self) -> Result<()> {
        self.execute_batch("ROLLBACK")
    }

    /// Commits or rolls back as the drop behavior says, like rusqlite's `finish`.
    pub fn finish(mut self) -> Result<()> {
        self.finish_traced()
    }

    /// rusqlite's `finish`, with the statements it runs traced; afterwards the connection is
    /// in autocommit mode, so rusqlite's own `Drop` does nothing more.
    fn finish_traced(&mut self) -> Result<()> {
        use ::rusqlite::DropBehavior;
        if self.conn().is_autocommit() {
            return Ok(());
        }
        match self.inner.drop_behavior() {
            DropBehavior::Commit => self
                .execute_batch("COMMIT")
                .or_else(|_| self.execute_batch("ROLLBACK")),
            DropBehavior::Rollback => self.execute_batch("ROLLBACK"),
            // `Ignore` leaves the transaction open, and `Panic` is rusqlite's to raise.
            _ => Ok(()),
        }
    }

    sql_methods!();
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // As rusqlite's `Drop`: the error is not reported.
        let _ = self.finish_traced();
    }
}

/// What `prepare` and `prepare_cached` return.
enum StatementInner<'conn> {
    Plain(::rusqlite::Statement<'conn>),
    Cached(::rusqlite::CachedStatement<'conn>),
}

/// A prepared statement whose runs are traced (see the [module documentation](self)). It
/// dereferences to the `rusqlite::Statement`.
pub struct Statement<'conn> {
    inner: StatementInner<'conn>,
    /// The SQL, kept only when prepared where spans are recorded.
    sql: Option<Box<str>>,
    endpoint: &'conn Arc<DbEndpoint>,
}

impl std::fmt::Debug for Statement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<'conn> Deref for Statement<'conn> {
    type Target = ::rusqlite::Statement<'conn>;
    fn deref(&self) -> &::rusqlite::Statement<'conn> {
        match &self.inner {
            StatementInner::Plain(s) => s,
            StatementInner::Cached(s) => s,
        }
    }
}

impl<'conn> DerefMut for Statement<'conn> {
    fn deref_mut(&mut self) -> &mut ::rusqlite::Statement<'conn> {
        match &mut self.inner {
            StatementInner::Plain(s) => s,
            StatementInner::Cached(s) => s,
        }
    }
}

impl<'conn> Statement<'conn> {
    fn new(inner: StatementInner<'conn>, sql: &str, endpoint: &'conn Arc<DbEndpoint>) -> Self {
        let sql = super::facade::spans_recorded_here().then(|| Box::from(sql));
        Statement {
            inner,
            sql,
            endpoint,
        }
    }

    fn start<S: db::DbSpan>(&self) -> Option<db::Handle<S>> {
        let target = target(self.endpoint);
        db::start_maybe(&target, self.sql.as_deref(), UNKNOWN_STATEMENT)
    }

    /// Runs `call` on the statement inside its span (current on this thread meanwhile).
    fn traced<T, E>(
        &mut self,
        call: impl FnOnce(&mut ::rusqlite::Statement<'conn>) -> Result<T, E>,
        rows: impl FnOnce(&T) -> Option<u64>,
    ) -> Result<T, E> {
        let mut span: Option<db::Guard> = self.start();
        let result = call(self.deref_mut());
        db::finish(&mut span, &result, rows);
        result
    }

    /// `execute`, traced; `rows_affected` is the count it returns.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.traced(|s| s.execute(params), |n| Some(*n as u64))
    }

    /// `insert`, traced; `rows_affected` is 1.
    pub fn insert<P: Params>(&mut self, params: P) -> Result<i64> {
        self.traced(|s| s.insert(params), |_| Some(1))
    }

    /// `query_row`, traced (`f` runs inside the span).
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.traced(|s| s.query_row(params, f), no_rows)
    }

    /// `query_one`, traced (`f` runs inside the span).
    pub fn query_one<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.traced(|s| s.query_one(params, f), no_rows)
    }

    /// `exists`, traced.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        self.traced(|s| s.exists(params), no_rows)
    }

    /// `query`: the span lasts until the [`Rows`] are dropped (SQLite runs the statement as
    /// they are read).
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let mut span: Option<db::Detached> = self.start();
        let result = (**self).query(params);
        if result.is_err() {
            db::finish(&mut span, &result, no_rows);
        }
        result.map(|inner| Rows { inner, span })
    }

    /// `query_map`: the span lasts until the rows are dropped.
    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> Result<MappedRows<'_, F>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        self.query(params).map(|rows| rows.mapped(f))
    }

    /// `query_and_then`: the span lasts until the rows are dropped.
    pub fn query_and_then<T, E, P, F>(&mut self, params: P, f: F) -> Result<AndThenRows<'_, F>>
    where
        P: Params,
        E: From<::rusqlite::Error>,
        F: FnMut(&Row<'_>) -> Result<T, E>,
    {
        self.query(params).map(|rows| rows.and_then(f))
    }
}

/// Marks the span failed when an error is read.
fn failed_on<T, E>(span: &mut Option<db::Detached>, result: &Result<T, E>) {
    if result.is_err() {
        db::finish(span, result, no_rows);
    }
}

/// The rows of a traced query: `rusqlite::Rows` and the query's span, which ends when they
/// are dropped. It dereferences to the `rusqlite::Rows`.
pub struct Rows<'stmt> {
    // Dropped first: rusqlite resets the statement, then the span ends.
    inner: ::rusqlite::Rows<'stmt>,
    span: Option<db::Detached>,
}

impl<'stmt> Rows<'stmt> {
    /// The next row, as rusqlite's `Rows::next`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<&Row<'stmt>>> {
        let result = self.inner.next();
        failed_on(&mut self.span, &result);
        result
    }

    /// An iterator over the rows mapped by `f`, as rusqlite's `Rows::mapped`.
    pub fn mapped<T, F>(self, f: F) -> MappedRows<'stmt, F>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        MappedRows {
            inner: self.inner.mapped(f),
            span: self.span,
        }
    }

    /// An iterator over the rows mapped by the fallible `f`, as rusqlite's `Rows::and_then`.
    pub fn and_then<T, E, F>(self, f: F) -> AndThenRows<'stmt, F>
    where
        E: From<::rusqlite::Error>,
        F: FnMut(&Row<'_>) -> Result<T, E>,
    {
        AndThenRows {
            inner: self.inner.and_then(f),
            span: self.span,
        }
    }
}

impl std::fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").finish_non_exhaustive()
    }
}

impl<'stmt> Deref for Rows<'stmt> {
    type Target = ::rusqlite::Rows<'stmt>;
    fn deref(&self) -> &::rusqlite::Rows<'stmt> {
        &self.inner
    }
}

/// The rows of [`Statement::query_map`]; the query's span ends when they are dropped.
pub struct MappedRows<'stmt, F> {
    inner: ::rusqlite::MappedRows<'stmt, F>,
    span: Option<db::Detached>,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        let item = self.inner.next();
        if let Some(result) = &item {
            failed_on(&mut self.span, result);
        }
        item
    }
}

impl<F> std::fmt::Debug for MappedRows<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedRows").finish_non_exhaustive()
    }
}

/// The rows of [`Statement::query_and_then`]; the query's span ends when they are dropped.
pub struct AndThenRows<'stmt, F> {
    inner: ::rusqlite::AndThenRows<'stmt, F>,
    span: Option<db::Detached>,
}

impl<T, E, F> Iterator for AndThenRows<'_, F>
where
    E: From<::rusqlite::Error>,
    F: FnMut(&Row<'_>) -> Result<T, E>,
{
    type Item = Result<T, E>;
    fn next(&mut self) -> Option<Result<T, E>> {
        let item = self.inner.next();
        if let Some(result) = &item {
            failed_on(&mut self.span, result);
        }
        item
    }
}

impl<F> std::fmt::Debug for AndThenRows<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndThenRows").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_is_the_file_name_or_memory() {
        let memory = Connection::open_in_memory().expect("an in-memory database");
        assert_eq!(memory.endpoint.instance.as_deref(), Some(":memory:"));
        let dir = std::env::temp_dir().join(format!("apm-rusqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let file = Connection::open(dir.join("shop.db")).expect("a database file");
        assert_eq!(file.endpoint.instance.as_deref(), Some("shop.db"));
        drop(file);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn results_are_rusqlite_s_own() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database");
        conn.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("created");
        assert_eq!(
            conn.execute("INSERT INTO t VALUES (1), (2)", []).ok(),
            Some(2)
        );
        let tx = conn.transaction().expect("begun");
        tx.execute("INSERT INTO t VALUES (3)", [])
            .expect("inserted");
        drop(tx); // rolled back
        let mut stmt = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .expect("prepared");
        let xs: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .expect("queried")
            .collect::<Result<_>>()
            .expect("read");
        assert_eq!(xs, [1, 2]);
        assert!(conn.execute("INSERT INTO missing VALUES (1)", []).is_err());
    }
}
