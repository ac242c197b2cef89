//! Exit spans for PostgreSQL through [tokio-postgres](https://docs.rs/tokio-postgres) (async)
//! and [postgres](https://docs.rs/postgres) (its blocking client, in [`blocking`]): feature
//! `postgres`.
//!
//! Connect with [`connect`] instead of `tokio_postgres::connect` (or wrap a client with
//! [`Client::new`] and the `Config` it was connected with); nothing else changes. [`Client`]
//! dereferences to the real client, so every method of tokio-postgres is still there; those
//! that run SQL are traced:
//!
//! ```no_run
//! # fn spawn<T>(_: T) {}
//! # async fn f() -> Result<(), tokio_postgres::Error> {
//! let (client, connection) =
//!     apm::postgres::connect("host=127.0.0.1 user=shop dbname=shop", tokio_postgres::NoTls).await?;
//! spawn(connection); // tokio::spawn, as with tokio_postgres::connect
//! let rows = client.query("SELECT name FROM item WHERE id = $1", &[&7i32]).await?;
//! let stmt = client.prepare("UPDATE stock SET n = n - 1 WHERE id = $1").await?;
//! let changed = client.execute(&stmt, &[&7i32]).await?;
//! # Ok(()) }
//! ```
//!
//! Traced, on [`Client`] and [`Transaction`]: `query`, `query_one`, `query_opt`, `execute`,
//! `batch_execute`, `simple_query`, `prepare` (a span with action `prepare`), and the
//! transaction's `BEGIN` ([`Client::transaction`]), `COMMIT` and `ROLLBACK`. A statement is
//! given as SQL text, as a [`Statement`] prepared through the integration, or as a
//! `tokio_postgres::Statement` prepared elsewhere (its span is then named `PostgreSQL`, with
//! no statement: tokio-postgres does not keep the SQL). Methods reached through the
//! dereference (`query_raw`, `copy_in`, savepoints, ...) are not traced, nor is the
//! `ROLLBACK` tokio-postgres sends by itself for a transaction dropped unfinished.
//!
//! Inside a sampled transaction each call becomes an exit span, as
//! `specs/agents/tracing-instrumentation-db.md` ("SQL Databases") asks: type `db`, subtype
//! `postgresql`, action `query`, named after the statement
//! ([`sql::signature`](crate::sql::signature): `SELECT FROM item`); `context.db` has type
//! `sql`, the instance (the `dbname` of the configuration, else the user, as PostgreSQL
//! does), the statement (cut to `long_field_max_length`), the user and, for `execute`, the
//! rows it changed; `destination` is the first host and port of the configuration and
//! `service.target` is `postgresql` and the instance. An error makes the outcome `failure`.
//!
//! The async methods start their span when first polled, inside the caller's context, and the
//! span is never current (the future may move between threads). A future dropped before it
//! completes (a timeout, a cancelled request) still ends its span, with outcome `unknown`.
//!
//! Outside a sampled transaction nothing is recorded and nothing allocated (a [`Statement`]
//! keeps a copy of its SQL, once, when prepared). The application always gets the driver's
//! own result, unchanged.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use ::tokio_postgres::config::Host;
use ::tokio_postgres::tls::MakeTlsConnect;
use ::tokio_postgres::types::ToSql;
use ::tokio_postgres::{Error, Row, SimpleQueryMessage, Socket, ToStatement};

use super::db::{self, no_rows, Target};
use super::facade::DbEndpoint;

const SUBTYPE: &str = "postgresql";

/// The name of a span whose statement is unknown.
const UNKNOWN_STATEMENT: &str = "PostgreSQL";

/// Where a connection's statements go, read once from its configuration.
#[derive(Debug, Clone)]
struct Peer(Arc<DbEndpoint>);

/// Reads a [`Peer`] from a `tokio_postgres::Config` or a `postgres::Config` (the same getters).
macro_rules! peer_of {
    ($config:expr) => {{
        let config = $config;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => Some(host.clone()),
            // A Unix socket has no network address.
            Some(_) => None,
            None => config.get_hostaddrs().first().map(|a| a.to_string()),
        };
        Peer(Arc::new(DbEndpoint {
            subtype: SUBTYPE,
            instance: config.get_dbname().or(config.get_user()).map(str::to_owned),
            user: config.get_user().map(str::to_owned),
            destination: host.map(|host| {
                let port = config.get_ports().first().copied().unwrap_or(5432);
                (host, Some(port))
            }),
        }))
    }};
}

impl Peer {
    fn target(&self) -> Target<'_> {
        Target::query(&self.0)
    }
}

/// A statement the traced methods accept: SQL text (`str`, `String`), a [`Statement`]
/// prepared through the integration, or a `tokio_postgres::Statement` (whose SQL is
/// unknown). Sealed.
pub trait Query: sealed::Sealed {
    /// What tokio-postgres is given.
    #[doc(hidden)]
    type Driver: ?Sized + ToStatement;
    #[doc(hidden)]
    fn driver(&self) -> &Self::Driver;
    /// The SQL, when known.
    #[doc(hidden)]
    fn sql(&self) -> Option<&str>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for ::tokio_postgres::Statement {}
    impl Sealed for super::Statement {}
}

impl Query for str {
    type Driver = str;
    fn driver(&self) -> &str {
        self
    }
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
}

impl Query for String {
    type Driver = String;
    fn driver(&self) -> &String {
        self
    }
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
}

impl Query for ::tokio_postgres::Statement {
    type Driver = ::tokio_postgres::Statement;
    fn driver(&self) -> &::tokio_postgres::Statement {
        self
    }
    fn sql(&self) -> Option<&str> {
        None
    }
}

impl Query for Statement {
    type Driver = ::tokio_postgres::Statement;
    fn driver(&self) -> &::tokio_postgres::Statement {
        &self.inner
    }
    fn sql(&self) -> Option<&str> {
        Some(&self.sql)
    }
}

/// A prepared statement that remembers its SQL, for the spans of its executions. It
/// dereferences to the `tokio_postgres::Statement` (the `postgres` crate's is the same type).
#[derive(Debug, Clone)]
pub struct Statement {
    inner: ::tokio_postgres::Statement,
    sql: Arc<str>,
}

impl Statement {
    /// The SQL it was prepared from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The driver's statement.
    pub fn into_inner(self) -> ::tokio_postgres::Statement {
        self.inner
    }
}

impl Deref for Statement {
    type Target = ::tokio_postgres::Statement;
    fn deref(&self) -> &::tokio_postgres::Statement {
        &self.inner
    }
}

/// `tokio_postgres::connect`, returning a traced [`Client`]; spawn the connection as usual.
pub async fn connect<T>(
    config: &str,
    tls: T,
) -> Result<(Client, ::tokio_postgres::Connection<Socket, T::Stream>), Error>
where
    T: MakeTlsConnect<Socket>,
{
    let config: ::tokio_postgres::Config = config.parse()?;
    let (client, connection) = config.connect(tls).await?;
    Ok((Client::new(client, &config), connection))
}

/// A `tokio_postgres::Client` whose statements are traced (see the
/// [module documentation](self)). It dereferences to the client for everything else.
#[derive(Debug)]
pub struct Client {
    inner: ::tokio_postgres::Client,
    peer: Peer,
}

impl Deref for Client {
    type Target = ::tokio_postgres::Client;
    fn deref(&self) -> &::tokio_postgres::Client {
        &self.inner
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut ::tokio_postgres::Client {
        &mut self.inner
    }
}

/// The traced async methods, on [`Client`] and [`Transaction`] alike: `self.driver()` is the
/// tokio-postgres client or transaction, `self.peer()` where it goes.
macro_rules! async_methods {
    () => {
        /// `query`, traced.
        pub async fn query<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, Error>
        where
            T: ?Sized + Query,
        {
            let mut span =
                db::start_detached(&self.peer().target(), statement.sql(), UNKNOWN_STATEMENT);
            let result = self.driver().query(statement.driver(), params).await;
            db::finish(&mut span, &result, no_rows);
            result
        }

        /// `query_one`, traced (no row, or more than one, is an error and a failure).
        pub async fn query_one<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, Error>
        where
            T: ?Sized + Query,
        {
            let mut span =
                db::start_detached(&self.peer().target(), statement.sql(), UNKNOWN_STATEMENT);
            let result = self.driver().query_one(statement.driver(), params).await;
            db::finish(&mut span, &result, no_rows);
            result
        }

        /// `query_opt`, traced.
        pub async fn query_opt<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, Error>
        where
            T: ?Sized + Query,
        {
            let mut span =
                db::start_detached(&self.peer().target(), statement.sql(), UNKNOWN_STATEMENT);
            let result = self.driver().query_opt(statement.driver(), params).await;
            db::finish(&mut span, &result, no_rows);
            result
        }

        /// `execute`, traced; `rows_affected` is the count it returns.
        pub async fn execute<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, Error>
        where
            T: ?Sized + Query,
        {
            let mut span =
                db::start_detached(&self.peer().target(), statement.sql(), UNKNOWN_STATEMENT);
            let result = self.driver().execute(statement.driver(), params).await;
            db::finish(&mut span, &result, |n| Some(*n));
            result
        }

        /// `batch_execute`, traced: one span for the whole batch, named after its first
        /// statement.
        pub async fn batch_execute(&self, query: &str) -> Result<(), Error> {
            let mut span =
                db::start_detached(&self.peer().target(), Some(query), UNKNOWN_STATEMENT);
            let result = self.driver().batch_execute(query).await;
            db::finish(&mut span, &result, no_rows);
            result
        }

        /// `simple_query`, traced: one span, named after the first statement.
        pub async fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
            let mut span =
                db::start_detached(&self.peer().target(), Some(query), UNKNOWN_STATEMENT);
            let result = self.driver().simple_query(query).await;
            db::finish(&mut span, &result, no_rows);
            result
        }

        /// `prepare`, traced (action `prepare`); the [`Statement`] keeps the SQL for the spans
        /// of its executions.
        pub async fn prepare(&self, query: &str) -> Result<Statement, Error> {
            let mut span = db::start_detached(
                &self.peer().target().preparing(),
                Some(query),
                UNKNOWN_STATEMENT,
            );
            let result = self.driver().prepare(query).await;
            db::finish(&mut span, &result, no_rows);
            result.map(|inner| Statement {
                inner,
                sql: Arc::from(query),
            })
        }
    };
}

impl Client {
    /// Wraps a client connected with `config`, which tells the instance, user and host.
    pub fn new(inner: ::tokio_postgres::Client, config: &::tokio_postgres::Config) -> Self {
        Client {
            inner,
            peer: peer_of!(config),
        }
    }

    /// The client itself, no longer traced.
    pub fn into_inner(self) -> ::tokio_postgres::Client {
        self.inner
    }

    fn driver(&self) -> &::tokio_postgres::Client {
        &self.inner
    }

    fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Begins a transaction (`BEGIN`, traced), like tokio-postgres's.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let Client { inner, peer } = self;
        let mut span = db::start_detached(&peer.target(), Some("BEGIN"), UNKNOWN_STATEMENT);
        let result = inner.transaction().await;
        db::finish(&mut span, &result, no_rows);
        result.map(|inner| Transaction { inner, peer })
    }

    async_methods!();
}

/// A `tokio_postgres::Transaction` of a traced [`Client`]: its statements, `COMMIT` and
/// `ROLLBACK` are traced. It dereferences to the `tokio_postgres::Transaction`.
pub struct Transaction<'a> {
    inner: ::tokio_postgres::Transaction<'a>,
    peer: &'a Peer,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("peer", self.peer)
            .finish_non_exhaustive()
    }
}

impl<'a> Deref for Transaction<'a> {
    type Target = ::tokio_postgres::Transaction<'a>;
    fn deref(&self) -> &::tokio_postgres::Transaction<'a> {
        &self.inner
    }
}

impl<'a> DerefMut for Transaction<'a> {
    fn deref_mut(&mut self) -> &mut ::tokio_postgres::Transaction<'a> {
        &mut self.inner
    }
}

impl Transaction<'_> {
    fn driver(&self) -> &::tokio_postgres::Transaction<'_> {
        &self.inner
    }

    fn peer(&self) -> &Peer {
        self.peer
    }

    /// Commits (`COMMIT`, traced).
    pub async fn commit(self) -> Result<(), Error> {
        let mut span = db::start_detached(&self.peer.target(), Some("COMMIT"), UNKNOWN_STATEMENT);
        let result = self.inner.commit().await;
        db::finish(&mut span, &result, no_rows);
        result
    }

    /// Rolls back (`ROLLBACK`, traced).
    pub async fn rollback(self) -> Result<(), Error> {
        let mut span = db::start_detached(&self.peer.target(), Some("ROLLBACK"), UNKNOWN_STATEMENT);
        let result = self.inner.rollback().await;
        db::finish(&mut span, &result, no_rows);
        result
    }

    async_methods!();
}

/// The blocking client of the [postgres](https://docs.rs/postgres) crate, traced the same way
/// (see the [module documentation](crate::postgres)); its spans are current on the calling thread.
///
/// ```no_run
/// let mut client =
///     apm::postgres::blocking::Client::connect("host=127.0.0.1 user=shop", postgres::NoTls)?;
/// let row = client.query_one("SELECT count(*) FROM item", &[])?;
/// let mut tx = client.transaction()?;
/// tx.execute("DELETE FROM item WHERE id = $1", &[&7i32])?;
/// tx.commit()?;
/// # Ok::<(), postgres::Error>(())
/// ```
pub mod blocking {
    use std::ops::{Deref, DerefMut};
    use std::sync::Arc;

    use ::postgres::tls::{MakeTlsConnect, TlsConnect};
    use ::postgres::types::ToSql;
    use ::postgres::{Error, Row, SimpleQueryMessage, Socket};

    use super::{
        db, no_rows, DbEndpoint, Host, Peer, Query, Statement, SUBTYPE, UNKNOWN_STATEMENT,
    };

    /// Runs `call` inside the span of `statement` (current on this thread meanwhile).
    fn traced<T>(
        peer: &Peer,
        preparing: bool,
        statement: Option<&str>,
        call: impl FnOnce() -> Result<T, Error>,
        rows: impl FnOnce(&T) -> Option<u64>,
    ) -> Result<T, Error> {
        let target = if preparing {
            peer.target().preparing()
        } else {
            peer.target()
        };
        let mut span: Option<db::Guard> = db::start_maybe(&target, statement, UNKNOWN_STATEMENT);
        let result = call();
        db::finish(&mut span, &result, rows);
        result
    }

    /// A `postgres::Client` whose statements are traced. It dereferences to the client for
    /// everything else.
    pub struct Client {
        inner: ::postgres::Client,
        peer: Peer,
    }

    impl std::fmt::Debug for Client {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Client")
                .field("peer", &self.peer)
                .finish_non_exhaustive()
        }
    }

    impl Deref for Client {
        type Target = ::postgres::Client;
        fn deref(&self) -> &::postgres::Client {
            &self.inner
        }
    }

    impl DerefMut for Client {
        fn deref_mut(&mut self) -> &mut ::postgres::Client {
            &mut self.inner
        }
    }

    /// The traced methods, on [`Client`] and [`Transaction`] alike.
    macro_rules! blocking_methods {
        () => {
            /// `query`, traced.
            pub fn query<T>(
                &mut self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error>
            where
                T: ?Sized + Query,
            {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    statement.sql(),
                    || driver.query(statement.driver(), params),
                    no_rows,
                )
            }

            /// `query_one`, traced.
            pub fn query_one<T>(
                &mut self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, Error>
            where
                T: ?Sized + Query,
            {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    statement.sql(),
                    || driver.query_one(statement.driver(), params),
                    no_rows,
                )
            }

            /// `query_opt`, traced.
            pub fn query_opt<T>(
                &mut self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error>
            where
                T: ?Sized + Query,
            {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    statement.sql(),
                    || driver.query_opt(statement.driver(), params),
                    no_rows,
                )
            }

            /// `execute`, traced; `rows_affected` is the count it returns.
            pub fn execute<T>(
                &mut self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, Error>
            where
                T: ?Sized + Query,
            {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    statement.sql(),
                    || driver.execute(statement.driver(), params),
                    |n| Some(*n),
                )
            }

            /// `batch_execute`, traced: one span for the whole batch.
            pub fn batch_execute(&mut self, query: &str) -> Result<(), Error> {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    Some(query),
                    || driver.batch_execute(query),
                    no_rows,
                )
            }

            /// `simple_query`, traced: one span for the whole text.
            pub fn simple_query(&mut self, query: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
                let (driver, peer) = self.parts();
                traced(
                    peer,
                    false,
                    Some(query),
                    || driver.simple_query(query),
                    no_rows,
                )
            }

            /// `prepare`, traced (action `prepare`).
            pub fn prepare(&mut self, query: &str) -> Result<Statement, Error> {
                let (driver, peer) = self.parts();
                traced(peer, true, Some(query), || driver.prepare(query), no_rows).map(|inner| {
                    Statement {
                        inner,
                        sql: Arc::from(query),
                    }
                })
            }
        };
    }

    impl Client {
        /// `postgres::Client::connect`, returning a traced client.
        pub fn connect<T>(params: &str, tls: T) -> Result<Client, Error>
        where
            T: MakeTlsConnect<Socket> + 'static + Send,
            T::TlsConnect: Send,
            T::Stream: Send,
            <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
        {
            let config: ::postgres::Config = params.parse()?;
            let inner = config.connect(tls)?;
            Ok(Client::new(inner, &config))
        }

        /// Wraps a client connected with `config`, which tells the instance, user and host.
        pub fn new(inner: ::postgres::Client, config: &::postgres::Config) -> Self {
            Client {
                inner,
                peer: peer_of!(config),
            }
        }

        /// The client itself, no longer traced.
        pub fn into_inner(self) -> ::postgres::Client {
            self.inner
        }

        fn parts(&mut self) -> (&mut ::postgres::Client, &Peer) {
            (&mut self.inner, &self.peer)
        }

        /// Begins a transaction (`BEGIN`, traced).
        pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
            let (driver, peer) = self.parts();
            traced(peer, false, Some("BEGIN"), || driver.transaction(), no_rows)
                .map(|inner| Transaction { inner, peer })
        }

        blocking_methods!();
    }

    /// A `postgres::Transaction` of a traced [`Client`]: its statements, `COMMIT` and
    /// `ROLLBACK` are traced. It dereferences to the `postgres::Transaction`.
    pub struct Transaction<'a> {
        inner: ::postgres::Transaction<'a>,
        peer: &'a Peer,
    }

    impl std::fmt::Debug for Transaction<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Transaction")
                .field("peer", self.peer)
                .finish_non_exhaustive()
        }
    }

    impl<'a> Deref for Transaction<'a> {
        type Target = ::postgres::Transaction<'a>;
        fn deref(&self) -> &::postgres::Transaction<'a> {
            &self.inner
        }
    }

    impl<'a> DerefMut for Transaction<'a> {
        fn deref_mut(&mut self) -> &mut ::postgres::Transaction<'a> {
            &mut self.inner
        }
    }

    impl<'a> Transaction<'a> {
        fn parts(&mut self) -> (&mut ::postgres::Transaction<'a>, &Peer) {
            (&mut self.inner, self.peer)
        }

        /// Commits (`COMMIT`, traced).
        pub fn commit(self) -> Result<(), Error> {
            let inner = self.inner;
            traced(self.peer, false, Some("COMMIT"), || inner.commit(), no_rows)
        }

        /// Rolls back (`ROLLBACK`, traced).
        pub fn rollback(self) -> Result<(), Error> {
            let inner = self.inner;
            traced(
                self.peer,
                false,
                Some("ROLLBACK"),
                || inner.rollback(),
                no_rows,
            )
        }

        blocking_methods!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The futures of a `Send + Sync` client are `Send`, so they can run in spawned tasks.
    #[allow(dead_code)]
    fn futures_are_send(client: &Client, tx: &Transaction<'_>, stmt: &Statement, c: &mut Client) {
        fn send<T: Send>(_: &T) {}
        send(&client.query("SELECT 1", &[]));
        send(&client.execute(stmt, &[]));
        send(&client.prepare("SELECT 1"));
        send(&tx.query_one("SELECT 1", &[]));
        send(&c.transaction());
    }

    #[test]
    fn the_peer_comes_from_the_configuration() {
        let config: ::tokio_postgres::Config = "host=db.internal port=5433 user=app dbname=shop"
            .parse()
            .expect("a valid configuration");
        let peer = peer_of!(&config).0;
        assert_eq!(peer.instance.as_deref(), Some("shop"));
        assert_eq!(peer.user.as_deref(), Some("app"));
        assert_eq!(
            peer.destination,
            Some(("db.internal".to_owned(), Some(5433)))
        );

        // No dbname: PostgreSQL uses the user's name; no port: 5432.
        let config: ::tokio_postgres::Config = "host=10.0.0.7 user=app"
            .parse()
            .expect("a valid configuration");
        let peer = peer_of!(&config).0;
        assert_eq!(peer.instance.as_deref(), Some("app"));
        assert_eq!(peer.destination, Some(("10.0.0.7".to_owned(), Some(5432))));

        let config: ::tokio_postgres::Config = "host=/run/postgresql user=app"
            .parse()
            .expect("a valid configuration");
        let peer = peer_of!(&config).0;
        assert_eq!(peer.destination, None);
    }
}
