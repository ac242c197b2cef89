//! `apm::diesel`: diesel's instrumentation hook turns its queries into exit spans, on an
//! in-memory SQLite database and on the real PostgreSQL (127.0.0.1:5432, database `test`).

mod common;

use common::agent::{self, named};
use diesel::connection::{Connection as _, SimpleConnection as _};
use diesel::RunQueryDsl as _;

#[apm::span]
fn fill(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<usize> {
    conn.transaction(|conn| {
        diesel::sql_query("INSERT INTO item (id, name) VALUES (?, ?)")
            .bind::<diesel::sql_types::Integer, _>(7)
            .bind::<diesel::sql_types::Text, _>("secret-value")
            .execute(conn)
    })
}

#[apm::transaction]
fn stock(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<usize> {
    conn.batch_execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")?;
    fill(conn)
}

#[test]
fn sqlite_queries_become_db_exit_spans_without_their_binds() {
    let h = agent::start(|c| c);
    let mut conn = diesel::SqliteConnection::establish(":memory:").expect("an in-memory database");
    conn.set_instrumentation(apm::diesel::Instrumentation::for_url(":memory:"));
    assert_eq!(stock(&mut conn).expect("diesel's own result"), 1);
    // An error: the span fails, the application gets diesel's error.
    {
        let _t = apm::start_transaction("broken", "custom");
        let err = diesel::sql_query("SELECT * FROM nowhere")
            .execute(&mut conn)
            .expect_err("no such table");
        assert!(err.to_string().contains("no such table"), "{err}");
    }
    h.flush();
    let spans = h.spans();
    let txn = named(&h.transactions(), "stock").clone();
    let fill = named(&spans, "fill");
    let create = named(&spans, "CREATE");
    assert_eq!(create["parent_id"], txn["id"]);
    assert_eq!(create["subtype"], "sqlite");
    assert_eq!(create["context"]["db"]["instance"], ":memory:");
    let insert = named(&spans, "INSERT INTO item");
    assert_eq!(insert["parent_id"], fill["id"]);
    assert_eq!(insert["type"], "db");
    assert_eq!(insert["action"], "query");
    assert_eq!(
        insert["context"]["db"]["statement"],
        "INSERT INTO item (id, name) VALUES (?, ?)"
    );
    assert!(!insert.to_string().contains("secret-value"), "{insert:#}");
    // diesel's transaction: BEGIN and COMMIT, under `fill` too.
    for name in ["BEGIN", "COMMIT"] {
        assert_eq!(named(&spans, name)["parent_id"], fill["id"], "{name}");
    }
    assert_eq!(named(&spans, "SELECT FROM nowhere")["outcome"], "failure");
    h.finish();
}

#[test]
fn the_default_hook_learns_postgres_from_the_url() {
    if !apm_tests::services::require("postgres", "127.0.0.1:5432") {
        return;
    }
    let h = agent::start(|c| c);
    diesel::connection::set_default_instrumentation(apm::diesel::instrumentation)
        .expect("the default hook set");
    let mut conn = diesel::PgConnection::establish("postgres://postgres@127.0.0.1:5432/test")
        .expect("connected to PostgreSQL");
    {
        let _t = apm::start_transaction("pg", "custom");
        diesel::sql_query("SELECT $1::INT")
            .bind::<diesel::sql_types::Integer, _>(42)
            .execute(&mut conn)
            .expect("ran");
    }
    h.flush();
    let span = named(&h.spans(), "SELECT").clone();
    let ctx = &span["context"];
    assert_eq!(span["subtype"], "postgresql");
    assert_eq!(ctx["db"]["instance"], "test");
    assert_eq!(ctx["db"]["user"], "postgres");
    assert_eq!(ctx["db"]["statement"], "SELECT $1::INT");
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], 5432);
    assert_eq!(ctx["service"]["target"]["name"], "test");
    h.finish();
}
