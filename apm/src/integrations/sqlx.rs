//! Exit spans for [sqlx](https://docs.rs/sqlx) queries (features `sqlx-postgres`, `sqlx-mysql`,
//! `sqlx-sqlite`: one per driver).
//!
//! Wrap the pool once, where it is created; the code that runs queries stays as it is:
//!
//! ```no_run
//! # mod sqlx { // The doc tests have sqlx's crates, not `sqlx` itself.
//! #     pub use sqlx_core::{error::Error, query::query, query_as::query_as};
//! #     pub use sqlx_postgres::PgPool;
//! # }
//! # async fn f() -> Result<(), sqlx::Error> {
//! let pool = apm::sqlx::Traced::new(sqlx::PgPool::connect("postgres://app@db/shop").await?);
//!
//! let orders: Vec<(i64,)> = sqlx::query_as("SELECT id FROM orders WHERE customer = $1")
//!     .bind(7_i64)
//!     .fetch_all(&pool)
//!     .await?;
//!
//! let mut tx = pool.begin().await?; // a `BEGIN` span
//! sqlx::query("UPDATE stock SET n = n - 1 WHERE id = $1")
//!     .bind(3_i64)
//!     .execute(&mut tx) // `&mut tx`, not `&mut *tx`
//!     .await?;
//! tx.commit().await?; // a `COMMIT` span
//! # Ok(()) }
//! ```
//!
//! [`Traced`] wraps a pool (`Traced<PgPool>`), a connection (`Traced<PgConnection>`), a pool's
//! connection (`Traced<PoolConnection<Postgres>>`) or a transaction
//! (`Traced<Transaction<'_, Postgres>>`); `&Traced<Pool<_>>` and `&mut Traced<_>` of the others
//! are `sqlx::Executor`s, so they go wherever sqlx takes one: `execute`, `fetch`, `fetch_all`,
//! `fetch_one`, `fetch_optional` of `query`, `query_as`, `query_scalar`, the `query!` macros
//! and `raw_sql`, statements prepared with `prepare`, and functions of the application taking an
//! `impl PgExecutor<'_>`. Dereferencing gives the wrapped value, for everything else
//! (`migrator.run(&*pool)`, `pool.close()`); what goes through it directly is not traced.
//!
//! Inside a transaction every query becomes an exit span, child of the current span or
//! transaction (also in `async` code: the span starts where the query is called, in the caller's
//! context), as `specs/agents/tracing-instrumentation-db.md` ("SQL Databases") asks:
//!
//! - type `db`, subtype `postgresql`, `mysql` (MySQL and MariaDB) or `sqlite`, action `query`;
//!   name [`sql::signature`](crate::sql::signature) of the statement (`SELECT FROM orders`);
//! - `context.db`: type `sql`, instance (the database named in the connect options; for SQLite
//!   the database file's name, `:memory:` for an in-memory database), the statement (cut to
//!   `long_field_max_length` when sent, as every SQL client's), user (PostgreSQL, MySQL), and `rows_affected` when the driver reports a
//!   result (`execute`, `fetch`, `fetch_all`);
//! - `context.destination` address and port (PostgreSQL and MySQL over TCP; not SQLite, which
//!   runs in the process), and `service.target` `{type: <subtype>, name: <instance>}`;
//! - outcome `failure` when sqlx returns an error, `success` otherwise, `unknown` when the
//!   query's future or stream is dropped before the end (the span still ends then). A
//!   statement without a signature (`(SELECT 1)`) is named after the subtype. Preparing a
//!   statement (`prepare`) is not a span of its own.
//!
//! A transaction's `BEGIN` (or `SAVEPOINT`), `COMMIT` and `ROLLBACK` are spans too when made
//! with [`Traced::begin`], [`Traced::commit`] and [`Traced::rollback`]. The `BEGIN` span of
//! [`Traced::begin`] on a pool includes the wait for a connection of the pool, as sqlx does
//! both in one call. A transaction dropped without either ends with sqlx's own deferred
//! rollback, which is not recorded. The 200 identical queries of an N+1 loop become one
//! composite span (span compression, `span_compression_*`).
//!
//! Outside any transaction (or in an unsampled one) the query goes straight to sqlx: nothing is
//! recorded and nothing allocated. The application always gets sqlx's own result, unchanged.
//!
//! # Cargo features
//!
//! sqlx 0.9 needs Rust 1.94. The features use sqlx's driver crates, not the `sqlx` crate: the
//! application's own `sqlx` dependency chooses the runtime, TLS and SQLite's bundling. Each
//! feature turns on sqlx's `offline` feature for its driver (the one sqlx's `macros` turn on:
//! `sqlx::Executor` has a method more with it), so **enable the feature of every sqlx driver
//! the application compiles**, even of a driver it does not trace.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_core::future::BoxFuture;
use futures_core::stream::{BoxStream, Stream};
use sqlx_core::connection::Connection;
use sqlx_core::database::Database;
use sqlx_core::describe::Describe;
use sqlx_core::error::{BoxDynError, Error};
use sqlx_core::executor::{Execute, Executor};
use sqlx_core::pool::{Pool, PoolConnection};
use sqlx_core::sql_str::{SqlSafeStr, SqlStr};
use sqlx_core::statement::Statement;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
    Transaction, TransactionManager,
};
use sqlx_core::Either;

use super::db::{self, Target};
use super::facade::{spans_recorded_here, DbEndpoint};
use sealed::{Driver as _, Endpoint};

/// A sqlx pool, connection or transaction whose queries are recorded as exit spans (see the
/// [module documentation](self)). It dereferences to the wrapped value.
pub struct Traced<T> {
    inner: T,
    endpoint: Arc<DbEndpoint>,
}

impl<T: fmt::Debug> fmt::Debug for Traced<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced")
            .field("inner", &self.inner)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl<T: Clone> Clone for Traced<T> {
    fn clone(&self) -> Self {
        Traced {
            inner: self.inner.clone(),
            endpoint: Arc::clone(&self.endpoint),
        }
    }
}

impl<T> Deref for Traced<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Traced<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Traced<T> {
    /// The wrapped pool, connection or transaction, no longer traced.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<DB: Driver> Traced<Pool<DB>> {
    /// Traces the queries run through `pool`. The database, user, host and port recorded with
    /// each query are read now from the pool's connect options.
    pub fn new(pool: Pool<DB>) -> Self {
        let endpoint = DB::endpoint(&pool.connect_options()).shared();
        Traced {
            inner: pool,
            endpoint,
        }
    }

    /// `Pool::acquire`: a connection of the pool, its queries traced.
    pub async fn acquire(&self) -> Result<Traced<PoolConnection<DB>>, Error> {
        let connection = self.inner.acquire().await?;
        Ok(self.wrap(connection))
    }

    /// `Pool::begin`: a transaction on a connection of the pool, with a `BEGIN` span (which
    /// includes waiting for the connection).
    pub async fn begin(&self) -> Result<Traced<Transaction<'static, DB>>, Error> {
        let span = transaction_span(&self.endpoint, || begin_ansi_transaction_sql(0));
        let result = self.inner.begin().await;
        end(span, result.as_ref().map(|_| None));
        result.map(|tx| self.wrap(tx))
    }

    /// `Pool::begin_with`: like [`begin`](Self::begin) with a statement of the application's
    /// (e.g. `BEGIN ISOLATION LEVEL SERIALIZABLE`), which names the span.
    pub async fn begin_with(
        &self,
        statement: impl SqlSafeStr,
    ) -> Result<Traced<Transaction<'static, DB>>, Error> {
        let statement = statement.into_sql_str();
        let span = transaction_span(&self.endpoint, || statement.clone());
        let result = self.inner.begin_with(statement).await;
        end(span, result.as_ref().map(|_| None));
        result.map(|tx| self.wrap(tx))
    }
}

/// [`Traced::new`].
impl<DB: Driver> From<Pool<DB>> for Traced<Pool<DB>> {
    fn from(pool: Pool<DB>) -> Self {
        Traced::new(pool)
    }
}

impl<C: ConnectionLike> Traced<C> {
    /// Traces the queries run on `connection`, a connection opened with `options` (which tell
    /// the database, user, host and port recorded with each query).
    ///
    /// ```no_run
    /// # mod sqlx { // The doc tests have sqlx's crates, not `sqlx` itself.
    /// #     pub use sqlx_core::{connection::Connection, error::Error, query::query};
    /// #     pub use sqlx_postgres::{self as postgres, PgConnection};
    /// # }
    /// use sqlx::Connection as _;
    /// # async fn f() -> Result<(), sqlx::Error> {
    /// let options: sqlx::postgres::PgConnectOptions = "postgres://app@db/shop".parse()?;
    /// let connection = sqlx::PgConnection::connect_with(&options).await?;
    /// let mut connection = apm::sqlx::Traced::with_options(connection, &options);
    /// sqlx::query("DELETE FROM carts WHERE expired").execute(&mut connection).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_options(connection: C, options: &Options<C::Database>) -> Self {
        Traced {
            inner: connection,
            endpoint: C::Database::endpoint(options).shared(),
        }
    }

    /// `Connection::begin`: a transaction (a savepoint inside a transaction) with a `BEGIN`
    /// (`SAVEPOINT`) span.
    pub async fn begin(&mut self) -> Result<Traced<Transaction<'_, C::Database>>, Error> {
        let connection = self.inner.connection();
        let depth = depth::<C::Database>(connection);
        let span = transaction_span(&self.endpoint, || begin_ansi_transaction_sql(depth));
        let result = Connection::begin(connection).await;
        end(span, result.as_ref().map(|_| None));
        let endpoint = Arc::clone(&self.endpoint);
        result.map(|inner| Traced { inner, endpoint })
    }

    /// `Connection::begin_with`: like [`begin`](Self::begin) with a statement of the
    /// application's, which names the span.
    pub async fn begin_with(
        &mut self,
        statement: impl SqlSafeStr,
    ) -> Result<Traced<Transaction<'_, C::Database>>, Error> {
        let statement = statement.into_sql_str();
        let span = transaction_span(&self.endpoint, || statement.clone());
        let result = self.inner.connection().begin_with(statement).await;
        end(span, result.as_ref().map(|_| None));
        let endpoint = Arc::clone(&self.endpoint);
        result.map(|inner| Traced { inner, endpoint })
    }
}

impl<DB: Driver> Traced<Transaction<'_, DB>> {
    /// `Transaction::commit`, with a `COMMIT` (`RELEASE SAVEPOINT`) span.
    pub async fn commit(self) -> Result<(), Error> {
        let depth = depth::<DB>(&self.inner);
        let span = transaction_span(&self.endpoint, || commit_ansi_transaction_sql(depth));
        let result = self.inner.commit().await;
        end(span, result.as_ref().map(|_| None));
        result
    }

    /// `Transaction::rollback`, with a `ROLLBACK` (`ROLLBACK TO SAVEPOINT`) span.
    pub async fn rollback(self) -> Result<(), Error> {
        let depth = depth::<DB>(&self.inner);
        let span = transaction_span(&self.endpoint, || rollback_ansi_transaction_sql(depth));
        let result = self.inner.rollback().await;
        end(span, result.as_ref().map(|_| None));
        result
    }
}

impl<T> Traced<T> {
    fn wrap<U>(&self, inner: U) -> Traced<U> {
        Traced {
            inner,
            endpoint: Arc::clone(&self.endpoint),
        }
    }
}

/// The connect options of `DB`'s connections.
pub type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// The databases whose queries [`Traced`] records: `Postgres` (feature `sqlx-postgres`),
/// `MySql` (`sqlx-mysql`) and `Sqlite` (`sqlx-sqlite`).
pub trait Driver: Database + sealed::Driver {}

/// What [`Traced`] wraps besides a pool: a connection (`PgConnection`, `MySqlConnection`,
/// `SqliteConnection`), a pool's `PoolConnection` or a `Transaction`.
pub trait ConnectionLike: Send + fmt::Debug + sealed::ConnectionLike {}

mod sealed {
    use sqlx_core::database::Database;

    /// Where a pool's or connection's queries go, read once from its connect options.
    #[derive(Debug, Clone, Default)]
    pub struct Endpoint {
        pub(super) subtype: &'static str,
        pub(super) instance: Option<String>,
        pub(super) user: Option<String>,
        pub(super) address: Option<String>,
        pub(super) port: Option<u16>,
    }

    impl Endpoint {
        /// What the spans of its statements share.
        pub(super) fn shared(self) -> std::sync::Arc<super::DbEndpoint> {
            std::sync::Arc::new(super::DbEndpoint {
                subtype: self.subtype,
                instance: self.instance,
                user: self.user,
                destination: self.address.map(|address| (address, self.port)),
            })
        }
    }

    pub trait Driver: Database {
        /// Where the queries go, from the connect options.
        fn endpoint(options: &super::Options<Self>) -> Endpoint;
        /// What the driver says a statement changed (or returned).
        fn rows_affected(result: &Self::QueryResult) -> u64;
    }

    pub trait ConnectionLike {
        type Database: super::Driver;
        fn connection(&mut self) -> &mut <Self::Database as Database>::Connection;
    }
}

impl<DB: Driver> sealed::ConnectionLike for PoolConnection<DB> {
    type Database = DB;
    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}
impl<DB: Driver> ConnectionLike for PoolConnection<DB> {}

impl<DB: Driver> sealed::ConnectionLike for Transaction<'_, DB> {
    type Database = DB;
    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}
impl<DB: Driver> ConnectionLike for Transaction<'_, DB> {}

/// The driver-specific parts: subtype, where queries go, rows affected.
macro_rules! driver {
    ($db:ty, $connection:ty, $result:ty, |$options:ident| $endpoint:expr) => {
        impl sealed::Driver for $db {
            fn endpoint($options: &Options<$db>) -> Endpoint {
                $endpoint
            }
            fn rows_affected(result: &$result) -> u64 {
                result.rows_affected()
            }
        }
        impl Driver for $db {}

        impl sealed::ConnectionLike for $connection {
            type Database = $db;
            fn connection(&mut self) -> &mut $connection {
                self
            }
        }
        impl ConnectionLike for $connection {}
    };
}

#[cfg(feature = "sqlx-postgres")]
driver!(
    sqlx_postgres::Postgres,
    sqlx_postgres::PgConnection,
    sqlx_postgres::PgQueryResult,
    |o| {
        let user = o.get_username();
        Endpoint {
            subtype: "postgresql",
            // PostgreSQL's default database is the one named after the user.
            instance: Some(o.get_database().unwrap_or(user).to_owned()),
            user: Some(user.to_owned()),
            address: o.get_socket().is_none().then(|| o.get_host().to_owned()),
            port: o.get_socket().is_none().then(|| o.get_port()),
        }
    }
);

#[cfg(feature = "sqlx-mysql")]
driver!(
    sqlx_mysql::MySql,
    sqlx_mysql::MySqlConnection,
    sqlx_mysql::MySqlQueryResult,
    |o| Endpoint {
        subtype: "mysql",
        instance: o.get_database().map(str::to_owned),
        user: Some(o.get_username().to_owned()),
        address: o.get_socket().is_none().then(|| o.get_host().to_owned()),
        port: o.get_socket().is_none().then(|| o.get_port()),
    }
);

#[cfg(feature = "sqlx-sqlite")]
driver!(
    sqlx_sqlite::Sqlite,
    sqlx_sqlite::SqliteConnection,
    sqlx_sqlite::SqliteQueryResult,
    |o| Endpoint {
        subtype: "sqlite",
        instance: Some(sqlite_instance(o.get_filename())),
        user: None,
        address: None,
        port: None,
    }
);

/// The database file's name; `:memory:` for an in-memory database (sqlx names those
/// `file:sqlx-in-memory-<n>`, a name that changes from one set of options to the next).
#[cfg(feature = "sqlx-sqlite")]
fn sqlite_instance(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    if text == ":memory:"
        || text.starts_with("file:sqlx-in-memory-")
        || text.contains("mode=memory")
    {
        return ":memory:".to_owned();
    }
    path.file_name()
        .map_or(text.as_ref().into(), |name| name.to_string_lossy())
        .into_owned()
}

impl<'p, DB> Executor<'p> for &'p Traced<Pool<DB>>
where
    DB: Driver,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let pool = &self.inner;
        traced_stream(&self.endpoint, query, move |q| pool.fetch_many(q))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let pool = &self.inner;
        traced_future(&self.endpoint, query, move |q| pool.fetch_optional(q))
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, Error>>
    where
        'p: 'e,
    {
        (&self.inner).prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<DB>, Error>>
    where
        'p: 'e,
    {
        (&self.inner).describe(sql)
    }
}

impl<'c, C> Executor<'c> for &'c mut Traced<C>
where
    C: ConnectionLike,
    for<'x> &'x mut <C::Database as Database>::Connection: Executor<'x, Database = C::Database>,
{
    type Database = C::Database;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<
        'e,
        Result<
            Either<<C::Database as Database>::QueryResult, <C::Database as Database>::Row>,
            Error,
        >,
    >
    where
        'c: 'e,
        E: 'q + Execute<'q, C::Database>,
    {
        let connection = self.inner.connection();
        traced_stream(&self.endpoint, query, move |q| connection.fetch_many(q))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<C::Database as Database>::Row>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, C::Database>,
    {
        let connection = self.inner.connection();
        traced_future(&self.endpoint, query, move |q| connection.fetch_optional(q))
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<C::Database as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<C::Database as Database>::Statement, Error>>
    where
        'c: 'e,
    {
        self.inner.connection().prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<C::Database>, Error>>
    where
        'c: 'e,
    {
        self.inner.connection().describe(sql)
    }
}

/// Runs `query` with `run`, inside a span when one is recorded here.
fn traced_stream<'e, 'q: 'e, DB: Driver, E: 'q + Execute<'q, DB>>(
    endpoint: &Arc<DbEndpoint>,
    query: E,
    run: impl FnOnce(Captured<'q, DB, E>) -> BoxStream<'e, Result<Step<DB>, Error>>,
) -> BoxStream<'e, Result<Step<DB>, Error>> {
    if !spans_recorded_here() {
        return run(Captured::Whole(query));
    }
    let query = Captured::capture(query);
    let span = query_span(endpoint, query.text());
    Box::pin(TracedStream::<DB> {
        inner: run(query),
        span,
        rows: None,
    })
}

/// Like [`traced_stream`] for a query that returns one value.
fn traced_future<'e, 'q: 'e, DB: Driver, E: 'q + Execute<'q, DB>, T: Send + 'e>(
    endpoint: &Arc<DbEndpoint>,
    query: E,
    run: impl FnOnce(Captured<'q, DB, E>) -> BoxFuture<'e, Result<T, Error>>,
) -> BoxFuture<'e, Result<T, Error>> {
    if !spans_recorded_here() {
        return run(Captured::Whole(query));
    }
    let query = Captured::capture(query);
    let span = query_span(endpoint, query.text());
    Box::pin(TracedFuture {
        inner: run(query),
        span,
    })
}

/// The exit span of one statement (a statement that does not start with a word, such as
/// `(SELECT 1)`, has no signature: it is named after the subtype). Until a result decides
/// it, its outcome is `unknown`: a query dropped before the end (a cancelled future, a stream
/// not read to the end) says so.
fn query_span(endpoint: &Arc<DbEndpoint>, statement: &str) -> Option<db::Detached> {
    db::start_detached(&Target::query(endpoint), Some(statement), endpoint.subtype)
}

/// The span of a transaction's `BEGIN`, `COMMIT` or `ROLLBACK` (the statement is built only
/// when the span is recorded); `None` when nothing is recorded here.
fn transaction_span(
    endpoint: &Arc<DbEndpoint>,
    statement: impl FnOnce() -> SqlStr,
) -> Option<db::Detached> {
    if !spans_recorded_here() {
        return None;
    }
    query_span(endpoint, statement().as_str())
}

/// Ends `span` with the outcome of `result`, and the rows it affected when known.
fn end(mut span: Option<db::Detached>, result: Result<Option<u64>, &Error>) {
    db::finish(&mut span, &result, |rows| *rows);
}

/// The transaction depth of a connection (0: none, 1: a transaction, more: savepoints).
fn depth<DB: Driver>(connection: &DB::Connection) -> usize {
    DB::TransactionManager::get_transaction_depth(connection)
}

/// A query whose statement was read: the query itself when it is a prepared statement (its
/// text is readable without consuming it), else its parts, taken in the order sqlx's drivers
/// take them.
enum Captured<'q, DB: Database, E> {
    Whole(E),
    Parts {
        sql: SqlStr,
        arguments: Option<Result<Option<DB::Arguments>, BoxDynError>>,
        persistent: bool,
        _query: PhantomData<fn() -> &'q ()>,
    },
}

impl<'q, DB: Database, E: Execute<'q, DB>> Captured<'q, DB, E> {
    fn capture(mut query: E) -> Self {
        if query.statement().is_some() {
            return Captured::Whole(query);
        }
        let arguments = query.take_arguments();
        let persistent = query.persistent();
        Captured::Parts {
            sql: query.sql(),
            arguments: Some(arguments),
            persistent,
            _query: PhantomData,
        }
    }

    fn text(&self) -> &str {
        match self {
            Captured::Whole(query) => query.statement().map_or("", |s| s.sql().as_str()),
            Captured::Parts { sql, .. } => sql.as_str(),
        }
    }
}

impl<'q, DB: Database, E: Execute<'q, DB>> Execute<'q, DB> for Captured<'q, DB, E> {
    fn sql(self) -> SqlStr {
        match self {
            Captured::Whole(query) => query.sql(),
            Captured::Parts { sql, .. } => sql,
        }
    }

    fn statement(&self) -> Option<&DB::Statement> {
        match self {
            Captured::Whole(query) => query.statement(),
            Captured::Parts { .. } => None,
        }
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
        match self {
            Captured::Whole(query) => query.take_arguments(),
            Captured::Parts { arguments, .. } => arguments.take().unwrap_or(Ok(None)),
        }
    }

    fn persistent(&self) -> bool {
        match self {
            Captured::Whole(query) => query.persistent(),
            Captured::Parts { persistent, .. } => *persistent,
        }
    }
}

/// A query's stream inside its span: the span ends with the first error, at the end of the
/// stream, or when the stream is dropped.
struct TracedStream<'e, DB: Driver> {
    inner: BoxStream<'e, Result<Step<DB>, Error>>,
    span: Option<db::Detached>,
    /// The rows the results so far affected.
    rows: Option<u64>,
}

/// What `fetch_many` yields: a statement's result or a row.
type Step<DB> = Either<<DB as Database>::QueryResult, <DB as Database>::Row>;

impl<DB: Driver> Stream for TracedStream<'_, DB> {
    type Item = Result<Step<DB>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = std::task::ready!(this.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(Either::Left(result))) => {
                if this.span.is_some() {
                    *this.rows.get_or_insert(0) += DB::rows_affected(result);
                }
            }
            Some(Ok(Either::Right(_))) => {}
            Some(Err(e)) => end(this.span.take(), Err(e)),
            None => end(this.span.take(), Ok(this.rows)),
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A query's future inside its span, which ends with the future (or when it is dropped).
struct TracedFuture<'e, T> {
    inner: BoxFuture<'e, Result<T, Error>>,
    span: Option<db::Detached>,
}

impl<T> Future for TracedFuture<'_, T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        end(this.span.take(), result.as_ref().map(|_| None));
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "sqlx-sqlite")]
    #[test]
    fn sqlite_instances_are_file_names_or_memory() {
        use super::sqlite_instance;
        use std::path::Path;
        assert_eq!(
            sqlite_instance(Path::new("/var/lib/app/shop.db")),
            "shop.db"
        );
        assert_eq!(sqlite_instance(Path::new("shop.db")), "shop.db");
        assert_eq!(sqlite_instance(Path::new(":memory:")), ":memory:");
        assert_eq!(
            sqlite_instance(Path::new("file:sqlx-in-memory-3")),
            ":memory:"
        );
    }
}
