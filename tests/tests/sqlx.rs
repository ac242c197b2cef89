//! `apm::sqlx` against the real PostgreSQL and MariaDB of this machine and an in-memory SQLite,
//! with the mock APM Server behind the agent (every event validated against the intake
//! schemas): one exit span per query, with the fields `specs/agents/tracing-instrumentation-db.md`
//! lists, nested under the current transaction and span of async code; failures, cancelled
//! queries, transactions' `BEGIN`/`COMMIT`, the N+1 loop compressed, nothing outside a
//! transaction.

mod common;

use apm::sqlx::Traced;
use common::agent::{self, named};
use futures_util::TryStreamExt as _;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, Row as _, Statement as _};

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A table name of this test and process (tests run in parallel, and so may CI runs).
fn table(test: &str) -> String {
    format!("apm_sqlx_{test}_{}", std::process::id())
}

fn sql(text: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(text)
}

/// What every query span of one database says.
struct Expected {
    subtype: &'static str,
    instance: &'static str,
    user: Option<&'static str>,
    /// Destination address and port (none for SQLite).
    destination: Option<(&'static str, u16)>,
}

/// The one span whose statement is `statement`.
fn by_statement<'a>(spans: &'a [Value], statement: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["context"]["db"]["statement"] == statement)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span of {statement:?} in {spans:#?}"
    );
    found[0]
}

/// Asserts the fields of the span of `statement`, named `name`, child of `parent`.
fn assert_query_span<'a>(
    spans: &'a [Value],
    statement: &str,
    name: &str,
    parent: &str,
    db: &Expected,
) -> &'a Value {
    let span = by_statement(spans, statement);
    assert_eq!(span["name"], name, "{span:#}");
    assert_eq!(span["type"], "db");
    assert_eq!(span["subtype"], db.subtype);
    assert_eq!(span["action"], "query");
    assert_eq!(span["parent_id"], parent, "{span:#}");
    let ctx = &span["context"];
    assert_eq!(ctx["db"]["type"], "sql");
    assert_eq!(ctx["db"]["instance"], db.instance);
    match db.user {
        Some(user) => assert_eq!(ctx["db"]["user"], user),
        None => assert!(ctx["db"].get("user").is_none(), "{span:#}"),
    }
    assert_eq!(ctx["service"]["target"]["type"], db.subtype);
    assert_eq!(ctx["service"]["target"]["name"], db.instance);
    match db.destination {
        Some((address, port)) => {
            assert_eq!(ctx["destination"]["address"], address);
            assert_eq!(ctx["destination"]["port"], port);
        }
        None => {
            assert!(ctx["destination"].get("address").is_none(), "{span:#}");
            assert!(ctx["destination"].get("port").is_none(), "{span:#}");
        }
    }
    span
}

/// The ids the queries should hang under.
struct Ids {
    transaction: String,
    span: String,
}

fn current_ids() -> Ids {
    let ids = apm::current_ids().expect("inside a transaction");
    Ids {
        transaction: ids.transaction_id(),
        span: ids.span_id().expect("inside a span"),
    }
}

/// Every kind of call of every executor method, for one database (`$p` is its placeholder
/// syntax: `$1` or `?`), under `#[apm::span]` under `#[apm::transaction]`; returns the ids
/// and the statements run, in the order of [`check_queries`].
macro_rules! queries {
    ($name:ident, $pool:ty, $p1:literal, $p2:literal) => {
        #[apm::transaction(name = "queries", kind = "custom")]
        async fn $name(pool: &$pool, t: &str) -> (Ids, Vec<String>) {
            work(pool, t).await
        }

        #[apm::span(name = "work", kind = "app")]
        async fn work(pool: &$pool, t: &str) -> (Ids, Vec<String>) {
            let ids = current_ids();
            let insert = format!(
                "INSERT INTO {t} (id, v) VALUES ({}, 'a'), ({}, 'b')",
                $p1, $p2
            );
            let result = sqlx::query(sql(insert.clone()))
                .bind(1_i32)
                .bind(2_i32)
                .execute(pool)
                .await
                .expect("insert");
            assert_eq!(result.rows_affected(), 2);
            // Unprepared: a plain string run by the executor.
            let update = format!("UPDATE {t} SET v = 'c' WHERE id = 2");
            let result = pool.execute(sql(update.clone())).await.expect("update");
            assert_eq!(result.rows_affected(), 1);
            let all = format!("SELECT id, v FROM {t} ORDER BY id");
            let rows = sqlx::query(sql(all.clone()))
                .fetch_all(pool)
                .await
                .expect("fetch_all");
            assert_eq!(rows.len(), 2);
            let one = format!("SELECT v FROM {t} WHERE id = {}", $p1);
            let row = sqlx::query(sql(one.clone()))
                .bind(2_i32)
                .fetch_one(pool)
                .await
                .expect("fetch_one");
            assert_eq!(row.get::<String, _>(0), "c");
            let optional = format!("SELECT v FROM {t} WHERE id > {}", $p1);
            let none = sqlx::query(sql(optional.clone()))
                .bind(10_i32)
                .fetch_optional(pool)
                .await
                .expect("fetch_optional");
            assert!(none.is_none());
            let stream = format!("SELECT id FROM {t} WHERE id >= {}", $p1);
            let ids_read: Vec<i32> = sqlx::query_scalar::<_, i32>(sql(stream.clone()))
                .bind(1_i32)
                .fetch(pool)
                .try_collect()
                .await
                .expect("fetch");
            assert_eq!(ids_read, [1, 2]);
            let raw = format!("DELETE FROM {t} WHERE id = 1");
            sqlx::raw_sql(sql(raw.clone()))
                .execute(pool)
                .await
                .expect("raw_sql");
            (ids, vec![insert, update, all, one, optional, stream, raw])
        }
    };
}

/// The spans of the statements [`queries!`] ran.
fn check_queries(h: &agent::Harness, ids: &Ids, statements: &[String], t: &str, db: &Expected) {
    let spans = h.spans();
    assert_eq!(spans.len(), statements.len() + 1, "{spans:#?}");
    let work = named(&spans, "work");
    assert_eq!(work["id"], ids.span.as_str());
    let names = [
        format!("INSERT INTO {t}"),
        format!("UPDATE {t}"),
        format!("SELECT FROM {t}"),
        format!("SELECT FROM {t}"),
        format!("SELECT FROM {t}"),
        format!("SELECT FROM {t}"),
        format!("DELETE FROM {t}"),
    ];
    for (statement, name) in statements.iter().zip(&names) {
        let span = assert_query_span(&spans, statement, name, &ids.span, db);
        assert_eq!(span["transaction_id"], ids.transaction.as_str());
        assert_eq!(span["outcome"], "success", "{span:#}");
    }
    assert_eq!(
        by_statement(&spans, &statements[0])["context"]["db"]["rows_affected"],
        2
    );
    assert_eq!(
        by_statement(&spans, &statements[1])["context"]["db"]["rows_affected"],
        1
    );
    let tx = named(&h.transactions(), "queries").clone();
    assert_eq!(tx["id"], ids.transaction.as_str());
}

mod postgres {
    use super::*;
    use sqlx::postgres::{PgPool, PgPoolOptions};

    queries!(run, Traced<PgPool>, "$1", "$2");

    pub(super) const DB: Expected = Expected {
        subtype: "postgresql",
        instance: "test",
        user: Some("postgres"),
        destination: Some(("127.0.0.1", 5432)),
    };

    pub(super) async fn pool() -> Traced<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(POSTGRES)
            .await
            .expect("connect to PostgreSQL");
        Traced::new(pool)
    }

    pub(super) async fn create(pool: &Traced<PgPool>, t: &str) {
        pool.execute(sql(format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, v text)"
        )))
        .await
        .expect("create table");
    }

    #[test]
    fn every_query_is_an_exit_span_under_the_current_span() {
        if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
            return;
        }
        let h = agent::start(|c| c.span_compression_enabled(false));
        let t = table("pg_queries");
        let (ids, statements) = runtime().block_on(async {
            let pool = pool().await;
            // Outside any transaction (not recorded: `check_queries` counts the spans).
            create(&pool, &t).await;
            let ran = run(&pool, &t).await;
            pool.execute(sql(format!("DROP TABLE {t}")))
                .await
                .expect("drop");
            ran
        });
        h.flush();
        check_queries(&h, &ids, &statements, &t, &DB);
        h.finish();
    }
}

mod mariadb {
    use super::*;
    use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

    queries!(run, Traced<MySqlPool>, "?", "?");

    #[test]
    fn every_query_is_an_exit_span_under_the_current_span() {
        if !apm_tests::services::require("MariaDB", "127.0.0.1:3306") {
            return;
        }
        let h = agent::start(|c| c.span_compression_enabled(false));
        let t = table("my_queries");
        let (ids, statements) = runtime().block_on(async {
            let pool = MySqlPoolOptions::new()
                .max_connections(2)
                .connect(MARIADB)
                .await
                .expect("connect to MariaDB");
            let pool = Traced::new(pool);
            pool.execute(sql(format!("DROP TABLE IF EXISTS {t}")))
                .await
                .expect("drop");
            pool.execute(sql(format!(
                "CREATE TABLE {t} (id int PRIMARY KEY, v varchar(16))"
            )))
            .await
            .expect("create table");
            let ran = run(&pool, &t).await;
            pool.execute(sql(format!("DROP TABLE {t}")))
                .await
                .expect("drop");
            ran
        });
        h.flush();
        let db = Expected {
            subtype: "mysql",
            instance: "test",
            user: Some("root"),
            destination: Some(("127.0.0.1", 3306)),
        };
        check_queries(&h, &ids, &statements, &t, &db);
        h.finish();
    }
}

mod sqlite {
    use super::*;
    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

    queries!(run, Traced<SqlitePool>, "$1", "$2");

    pub(super) const DB: Expected = Expected {
        subtype: "sqlite",
        instance: ":memory:",
        user: None,
        destination: None,
    };

    pub(super) async fn pool() -> Traced<SqlitePool> {
        // One connection: each connection to `:memory:` would have a database of its own.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory SQLite database");
        Traced::new(pool)
    }

    #[test]
    fn every_query_is_an_exit_span_under_the_current_span() {
        let h = agent::start(|c| c.span_compression_enabled(false));
        let t = "items";
        let (ids, statements) = runtime().block_on(async {
            let pool = pool().await;
            pool.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
                .await
                .expect("create table");
            run(&pool, t).await
        });
        h.flush();
        check_queries(&h, &ids, &statements, t, &DB);
        h.finish();
    }

    #[apm::transaction(name = "sqlite transaction", kind = "custom")]
    async fn transaction(pool: &Traced<SqlitePool>) -> String {
        let id = apm::current_ids().expect("a transaction").transaction_id();
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO items (id) VALUES (1)")
            .execute(&mut tx)
            .await
            .expect("insert");
        // A prepared statement: its text is read without consuming the query.
        let count = (&mut tx)
            .prepare(sqlx::SqlStr::from_static("SELECT count(*) FROM items"))
            .await
            .expect("prepare");
        let n: i64 = count
            .query()
            .fetch_one(&mut tx)
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 1);
        tx.commit().await.expect("commit");
        id
    }

    #[test]
    fn a_transaction_has_begin_and_commit_spans() {
        let h = agent::start(|c| c.span_compression_enabled(false));
        let id = runtime().block_on(async {
            let pool = pool().await;
            pool.execute("CREATE TABLE items (id int PRIMARY KEY)")
                .await
                .expect("create table");
            transaction(&pool).await
        });
        h.flush();
        let spans = h.spans();
        assert_eq!(spans.len(), 4, "{spans:#?}");
        for (statement, name) in [
            ("BEGIN", "BEGIN"),
            ("INSERT INTO items (id) VALUES (1)", "INSERT INTO items"),
            ("SELECT count(*) FROM items", "SELECT FROM items"),
            ("COMMIT", "COMMIT"),
        ] {
            let span = assert_query_span(&spans, statement, name, &id, &DB);
            assert_eq!(span["outcome"], "success");
        }
        h.finish();
    }
}

/// A transaction with a savepoint rolled back, on a pool and on a connection of its own.
#[apm::transaction(name = "pg transaction", kind = "custom")]
async fn pg_transaction(pool: &Traced<sqlx::PgPool>, t: &str) -> String {
    let id = apm::current_ids().expect("a transaction").transaction_id();
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(sql(format!("INSERT INTO {t} (id, v) VALUES (1, 'a')")))
        .execute(&mut tx)
        .await
        .expect("insert");
    let mut savepoint = tx.begin().await.expect("savepoint");
    sqlx::query(sql(format!("UPDATE {t} SET v = 'b'")))
        .execute(&mut savepoint)
        .await
        .expect("update");
    savepoint.rollback().await.expect("rollback to savepoint");
    tx.commit().await.expect("commit");

    let options: sqlx::postgres::PgConnectOptions = POSTGRES.parse().expect("options");
    let connection = sqlx::PgConnection::connect_with(&options)
        .await
        .expect("connect");
    let mut connection = Traced::with_options(connection, &options);
    let mut tx = connection
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("begin on a connection");
    let v: String = sqlx::query_scalar(sql(format!("SELECT v FROM {t} WHERE id = 1")))
        .fetch_one(&mut tx)
        .await
        .expect("select");
    assert_eq!(v, "a", "the savepoint was rolled back");
    tx.rollback().await.expect("rollback");
    connection.into_inner().close().await.expect("close");
    id
}

#[test]
fn transactions_have_begin_commit_and_savepoint_spans() {
    if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let t = table("pg_tx");
    let id = runtime().block_on(async {
        let pool = postgres::pool().await;
        postgres::create(&pool, &t).await;
        let id = pg_transaction(&pool, &t).await;
        pool.execute(sql(format!("DROP TABLE {t}")))
            .await
            .expect("drop");
        id
    });
    h.flush();
    let spans = h.spans();
    let expected = [
        "BEGIN".to_owned(),
        format!("INSERT INTO {t} (id, v) VALUES (1, 'a')"),
        "SAVEPOINT _sqlx_savepoint_1".to_owned(),
        format!("UPDATE {t} SET v = 'b'"),
        "ROLLBACK TO SAVEPOINT _sqlx_savepoint_1".to_owned(),
        "COMMIT".to_owned(),
        "BEGIN ISOLATION LEVEL REPEATABLE READ".to_owned(),
        format!("SELECT v FROM {t} WHERE id = 1"),
        "ROLLBACK".to_owned(),
    ];
    assert_eq!(spans.len(), expected.len(), "{spans:#?}");
    for statement in &expected {
        let name = apm::sql::signature(statement);
        let span = assert_query_span(&spans, statement, &name, &id, &postgres::DB);
        assert_eq!(span["outcome"], "success", "{span:#}");
    }
    h.finish();
}

#[apm::transaction(name = "failing", kind = "custom")]
async fn failing(pool: &Traced<sqlx::PgPool>) -> sqlx::Error {
    sqlx::query("SELECT * FROM apm_sqlx_no_such_table")
        .fetch_all(pool)
        .await
        .expect_err("no such table")
}

#[test]
fn a_failing_query_ends_with_outcome_failure_and_the_error_is_sqlxs() {
    if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c);
    let error = runtime().block_on(async { failing(&postgres::pool().await).await });
    let sqlx::Error::Database(e) = &error else {
        panic!("not the database's error: {error:?}");
    };
    assert_eq!(e.code().as_deref(), Some("42P01"), "undefined_table");
    h.flush();
    let spans = h.spans();
    let span = named(&spans, "SELECT FROM apm_sqlx_no_such_table");
    assert_eq!(span["outcome"], "failure");
    assert_eq!(span["subtype"], "postgresql");
    h.finish();
}

#[apm::transaction(name = "cancelled", kind = "custom")]
async fn cancelled(pool: &Traced<sqlx::PgPool>) {
    // A stream dropped after its first row.
    let mut rows = sqlx::query("SELECT generate_series(1, 1000) AS n").fetch(pool);
    let first = rows.try_next().await.expect("a row").expect("not empty");
    assert_eq!(first.get::<i32, _>(0), 1);
    drop(rows);
    // A query whose future is dropped while the server is still at it.
    let mut sleeping = Box::pin(sqlx::query("SELECT pg_sleep(5)").execute(pool));
    for _ in 0..3 {
        assert!(futures_util::poll!(sleeping.as_mut()).is_pending());
        tokio::task::yield_now().await;
    }
    drop(sleeping);
}

#[test]
fn a_dropped_query_still_ends_its_span() {
    if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c);
    runtime().block_on(async { cancelled(&postgres::pool().await).await });
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(span["outcome"], "unknown", "{span:#}");
        assert_eq!(span["parent_id"], span["transaction_id"]);
        assert_eq!(span["name"], "SELECT");
    }
    h.finish();
}

#[apm::transaction(name = "n+1", kind = "custom")]
async fn n_plus_one(pool: &Traced<sqlx::PgPool>, t: &str) {
    let statement = format!("SELECT v FROM {t} WHERE id = $1");
    for id in 0..200_i32 {
        let v: Option<String> = sqlx::query_scalar(sql(statement.clone()))
            .bind(id % 2)
            .fetch_optional(pool)
            .await
            .expect("select");
        assert_eq!(v.is_some(), id % 2 == 1);
    }
}

#[test]
fn an_n_plus_one_loop_becomes_one_composite_span() {
    if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c);
    let t = table("pg_n_plus_one");
    runtime().block_on(async {
        let pool = postgres::pool().await;
        postgres::create(&pool, &t).await;
        pool.execute(sql(format!("INSERT INTO {t} VALUES (1, 'a')")))
            .await
            .expect("insert");
        n_plus_one(&pool, &t).await;
        pool.execute(sql(format!("DROP TABLE {t}")))
            .await
            .expect("drop");
    });
    h.flush();
    let spans = h.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = named(&spans, &format!("SELECT FROM {t}"));
    assert_eq!(span["composite"]["compression_strategy"], "exact_match");
    assert_eq!(span["composite"]["count"], 200);
    assert_eq!(span["context"]["service"]["target"]["name"], "test");
    h.finish();
}

#[test]
fn nothing_is_recorded_outside_a_transaction() {
    let h = agent::start(|c| c);
    runtime().block_on(async {
        let pool = sqlite::pool().await;
        pool.execute("CREATE TABLE t (id int)")
            .await
            .expect("create");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(n, 1);
    });
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    assert_eq!(h.agent().stats().events_recorded, 0);
    h.finish();
}

#[apm::transaction(name = "unnamed", kind = "custom")]
async fn unnamed(pool: &Traced<sqlx::PgPool>) {
    let n: i32 = sqlx::query_scalar("(SELECT 1)")
        .fetch_one(pool)
        .await
        .expect("select");
    assert_eq!(n, 1);
}

#[test]
fn a_statement_without_a_signature_is_named_after_the_database() {
    if !apm_tests::services::require("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c);
    runtime().block_on(async { unnamed(&postgres::pool().await).await });
    h.flush();
    let spans = h.spans();
    assert_eq!(
        named(&spans, "postgresql")["context"]["db"]["statement"],
        "(SELECT 1)"
    );
    h.finish();
}

/// Queries, transactions and their ends can be spawned on a multi-threaded runtime.
#[test]
fn futures_are_send() {
    fn send<T: Send>(_: T) {}
    let _ = |pool: Traced<sqlx::PgPool>, mut tx: Traced<sqlx::PgTransaction<'static>>| {
        send(sqlx::query("SELECT 1").execute(&pool));
        send(sqlx::query("SELECT 1").fetch_optional(&pool));
        send(pool.begin());
        send(pool.acquire());
        send(sqlx::query("SELECT 1").fetch_all(&mut tx));
        send(tx.begin());
        send(tx.commit());
    };
}

#[apm::transaction(name = "unsampled", kind = "custom")]
async fn unsampled(pool: &Traced<sqlx::SqlitePool>) {
    assert!(apm::current_ids().is_some(), "inside a transaction");
    pool.execute("CREATE TABLE t (id int)")
        .await
        .expect("create");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
}

#[test]
fn an_unsampled_transaction_records_no_query() {
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    runtime().block_on(async { unsampled(&sqlite::pool().await).await });
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}
