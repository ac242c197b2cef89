//! `apm::postgres`: exit spans for statements sent to the real PostgreSQL on this machine
//! (127.0.0.1:5432, database `test`, user `postgres`), with tokio-postgres and with the
//! blocking `postgres` client; every event is checked against the intake schemas.

mod common;

use std::time::Duration;

use apm::postgres::Client;
use common::agent::{self, named};
use serde_json::Value;

const ADDRESS: &str = "127.0.0.1:5432";
const CONFIG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A traced client; its connection runs on the runtime.
async fn connect() -> Client {
    let (client, connection) = apm::postgres::connect(CONFIG, tokio_postgres::NoTls)
        .await
        .expect("connected to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A table name no other test uses.
fn table(test: &str) -> String {
    format!("apm_{test}_{}", std::process::id())
}

fn assert_postgres_span(span: &Value) {
    assert_eq!(span["type"], "db", "{span:#}");
    assert_eq!(span["subtype"], "postgresql");
    let ctx = &span["context"];
    assert_eq!(ctx["db"]["type"], "sql");
    assert_eq!(ctx["db"]["instance"], "test");
    assert_eq!(ctx["db"]["user"], "postgres");
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], 5432);
    assert_eq!(ctx["service"]["target"]["type"], "postgresql");
    assert_eq!(ctx["service"]["target"]["name"], "test");
}

#[apm::span]
async fn restock(client: &mut Client, table: &str) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            format!("UPDATE {table} SET n = n + $1 WHERE id < $2").as_str(),
            &[&5i32, &3i32],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

#[apm::transaction]
async fn inventory(client: &mut Client, table: &str) -> Result<(u64, i64), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, n INT); \
             INSERT INTO {table} VALUES (1, 10), (2, 20), (3, 30)"
        ))
        .await?;
    let changed = restock(client, table).await?;
    let stmt = client
        .prepare(&format!("SELECT sum(n)::BIGINT FROM {table} WHERE id > $1"))
        .await?;
    let total: i64 = client.query_one(&stmt, &[&0i32]).await?.get(0);
    let none = client
        .query_opt(&format!("SELECT n FROM {table} WHERE id = 99"), &[])
        .await?;
    assert!(none.is_none());
    client.simple_query(&format!("DROP TABLE {table}")).await?;
    Ok((changed, total))
}

#[test]
fn async_statements_become_db_exit_spans_under_their_transaction_and_span() {
    if !apm_tests::services::require("postgres", ADDRESS) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let table = table("async");
    let rt = runtime();
    let (changed, total) = rt
        .block_on(async {
            let mut client = connect().await;
            inventory(&mut client, &table).await
        })
        .expect("the application's own results");
    assert_eq!((changed, total), (2, 70));
    h.flush();

    let spans = h.spans();
    let txn = named(&h.transactions(), "inventory").clone();
    let restock = named(&spans, "restock");

    let create = named(&spans, "CREATE");
    assert_postgres_span(create);
    assert_eq!(create["parent_id"], txn["id"]);
    assert_eq!(create["action"], "query");
    assert_eq!(create["outcome"], "success");

    for name in ["BEGIN", &format!("UPDATE {table}"), "COMMIT"] {
        let span = named(&spans, name);
        assert_postgres_span(span);
        assert_eq!(span["parent_id"], restock["id"], "{name}");
    }
    let update = named(&spans, &format!("UPDATE {table}"));
    assert_eq!(update["context"]["db"]["rows_affected"], 2);
    assert_eq!(
        update["context"]["db"]["statement"],
        format!("UPDATE {table} SET n = n + $1 WHERE id < $2")
    );

    // The statement prepared through the integration names the span of its execution.
    let selects: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == format!("SELECT FROM {table}"))
        .collect();
    assert_eq!(
        selects.len(),
        3,
        "prepare, query_one, query_opt: {spans:#?}"
    );
    assert_eq!(
        selects.iter().filter(|s| s["action"] == "prepare").count(),
        1
    );
    for s in &selects {
        assert_postgres_span(s);
        assert_eq!(s["parent_id"], txn["id"]);
    }
    assert_postgres_span(named(&spans, "DROP"));
    h.finish();
}

#[test]
fn an_error_fails_the_span_and_reaches_the_application_unchanged() {
    if !apm_tests::services::require("postgres", ADDRESS) {
        return;
    }
    let h = agent::start(|c| c);
    let err = runtime().block_on(async {
        let client = connect().await;
        let t = apm::Transaction::start("broken", "custom");
        let result = t
            .bind(client.query("SELECT * FROM apm_no_such_table", &[]))
            .await;
        t.end();
        result.expect_err("no such table")
    });
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("42P01"),
        "{err}"
    );
    h.flush();
    let span = named(&h.spans(), "SELECT FROM apm_no_such_table").clone();
    assert_postgres_span(&span);
    assert_eq!(span["outcome"], "failure");
    h.finish();
}

/// A query future dropped before it completes (here by a timeout) still ends its span, with
/// outcome `unknown`, and the span lasted until the drop.
#[test]
fn a_cancelled_query_still_ends_its_span() {
    if !apm_tests::services::require("postgres", ADDRESS) {
        return;
    }
    let h = agent::start(|c| c);
    let timed_out = runtime().block_on(async {
        let client = connect().await;
        let t = apm::Transaction::start("impatient", "custom");
        let slow = client.query("SELECT pg_sleep(2)", &[]);
        let result = t
            .bind(tokio::time::timeout(Duration::from_millis(100), slow))
            .await;
        t.end();
        // Stop the server's sleep rather than wait for it.
        let _ = client
            .cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await;
        result.is_err()
    });
    assert!(timed_out);
    h.flush();
    let span = named(&h.spans(), "SELECT").clone();
    assert_postgres_span(&span);
    assert_eq!(span["outcome"], "unknown");
    let duration = span["duration"].as_f64().unwrap_or_default();
    assert!(
        (100.0..2000.0).contains(&duration),
        "ended at the drop: {duration} ms"
    );
    h.finish();
}

#[apm::span]
fn archive(
    client: &mut apm::postgres::blocking::Client,
    table: &str,
) -> Result<u64, postgres::Error> {
    let mut tx = client.transaction()?;
    let n = tx.execute(
        format!("DELETE FROM {table} WHERE id = $1").as_str(),
        &[&1i32],
    )?;
    tx.rollback()?;
    Ok(n)
}

#[apm::transaction]
fn blocking_job(
    client: &mut apm::postgres::blocking::Client,
    table: &str,
) -> Result<(u64, i64), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE TABLE {table} (id INT); INSERT INTO {table} VALUES (1), (2)"
    ))?;
    let deleted = archive(client, table)?;
    let count: i64 = client
        .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])?
        .get(0);
    client.execute(format!("DROP TABLE {table}").as_str(), &[])?;
    Ok((deleted, count))
}

#[test]
fn the_blocking_client_is_traced_too() {
    if !apm_tests::services::require("postgres", ADDRESS) {
        return;
    }
    let h = agent::start(|c| c);
    let table = table("blocking");
    let mut client = apm::postgres::blocking::Client::connect(CONFIG, postgres::NoTls)
        .expect("connected to PostgreSQL");
    let (deleted, count) = blocking_job(&mut client, &table).expect("the application's results");
    assert_eq!((deleted, count), (1, 2), "rolled back");
    h.flush();
    let spans = h.spans();
    let txn = named(&h.transactions(), "blocking_job").clone();
    let archive = named(&spans, "archive");
    for name in ["BEGIN", &format!("DELETE FROM {table}"), "ROLLBACK"] {
        let span = named(&spans, name);
        assert_postgres_span(span);
        assert_eq!(span["parent_id"], archive["id"], "{name}");
    }
    assert_eq!(
        named(&spans, &format!("DELETE FROM {table}"))["context"]["db"]["rows_affected"],
        1
    );
    let select = named(&spans, &format!("SELECT FROM {table}"));
    assert_postgres_span(select);
    assert_eq!(select["parent_id"], txn["id"]);
    h.finish();
}

#[test]
fn nothing_is_recorded_outside_a_transaction() {
    if !apm_tests::services::require("postgres", ADDRESS) {
        return;
    }
    let h = agent::start(|c| c);
    runtime().block_on(async {
        let client = connect().await;
        client.query_one("SELECT 1", &[]).await.expect("ran");
    });
    let mut client = apm::postgres::blocking::Client::connect(CONFIG, postgres::NoTls)
        .expect("connected to PostgreSQL");
    client.query_one("SELECT 1", &[]).expect("ran");
    apm::start_transaction("marker", "custom").end();
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}
