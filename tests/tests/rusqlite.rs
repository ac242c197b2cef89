//! `apm::rusqlite`: exit spans for SQLite statements run through rusqlite, on in-memory and
//! file databases, checked field by field and against the intake schemas.

mod common;

use apm::rusqlite::Connection;
use common::agent::{self, named};
use serde_json::Value;

fn by_name<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[apm::span]
fn restock(conn: &mut Connection) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let n = tx.execute("UPDATE stock SET n = n + ?1 WHERE id < ?2", (5, 3))?;
    tx.commit()?;
    Ok(n)
}

#[apm::transaction]
fn inventory(conn: &mut Connection) -> rusqlite::Result<(usize, i64, Vec<i64>)> {
    conn.execute_batch(
        "CREATE TABLE stock (id INTEGER PRIMARY KEY, n INTEGER);
         INSERT INTO stock (id, n) VALUES (1, 10), (2, 20), (3, 30);",
    )?;
    let changed = restock(conn)?;
    let total: i64 = conn.query_row("SELECT sum(n) FROM stock", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("SELECT n FROM stock WHERE n > ?1 ORDER BY id")?;
    let big = stmt
        .query_map([12], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok((changed, total, big))
}

#[test]
fn statements_become_db_exit_spans_under_their_transaction_and_span() {
    // The two `SELECT FROM stock` would otherwise be compressed into one.
    let h = agent::start(|c| c.span_compression_enabled(false));
    let mut conn = Connection::open_in_memory().expect("an in-memory database");
    let (changed, total, big) = inventory(&mut conn).expect("the application's own results");
    assert_eq!((changed, total, big), (2, 70, vec![15, 25, 30]));
    h.flush();

    let spans = h.spans();
    let txn = named(&h.transactions(), "inventory").clone();
    let restock = named(&spans, "restock");

    let create = named(&spans, "CREATE");
    assert_eq!(create["type"], "db");
    assert_eq!(create["subtype"], "sqlite");
    assert_eq!(create["action"], "query");
    assert_eq!(create["parent_id"], txn["id"]);
    assert_eq!(create["outcome"], "success");
    let ctx = &create["context"];
    assert_eq!(ctx["db"]["type"], "sql");
    assert_eq!(ctx["db"]["instance"], ":memory:");
    assert!(ctx["db"]["statement"]
        .as_str()
        .is_some_and(|s| s.starts_with("CREATE TABLE stock")));
    assert_eq!(ctx["service"]["target"]["type"], "sqlite");
    assert_eq!(ctx["service"]["target"]["name"], ":memory:");
    assert!(ctx["destination"].get("address").is_none(), "{ctx}");

    // The transaction's statements are children of the `#[apm::span]` function.
    for name in ["BEGIN", "UPDATE stock", "COMMIT"] {
        assert_eq!(named(&spans, name)["parent_id"], restock["id"], "{name}");
    }
    let update = named(&spans, "UPDATE stock");
    assert_eq!(
        update["context"]["db"]["statement"],
        "UPDATE stock SET n = n + ?1 WHERE id < ?2"
    );
    assert_eq!(update["context"]["db"]["rows_affected"], 2);
    assert_eq!(
        named(&spans, "BEGIN")["context"]["db"]["statement"],
        "BEGIN DEFERRED"
    );

    let selects = by_name(&spans, "SELECT FROM stock");
    assert_eq!(selects.len(), 2, "{spans:#?}");
    for s in &selects {
        assert_eq!(s["parent_id"], txn["id"]);
        assert_eq!(s["subtype"], "sqlite");
    }
    assert!(
        selects
            .iter()
            .any(|s| s["context"]["db"]["statement"]
                == "SELECT n FROM stock WHERE n > ?1 ORDER BY id")
    );
    h.finish();
}

#[test]
fn an_error_fails_the_span_and_reaches_the_application_unchanged() {
    let h = agent::start(|c| c);
    let conn = Connection::open_in_memory().expect("an in-memory database");
    let err = {
        let _t = apm::start_transaction("broken", "custom");
        conn.execute("INSERT INTO nowhere VALUES (1)", [])
            .expect_err("no such table")
    };
    assert!(err.to_string().contains("no such table: nowhere"), "{err}");
    h.flush();
    let span = named(&h.spans(), "INSERT INTO nowhere").clone();
    assert_eq!(span["outcome"], "failure");
    assert_eq!(span["subtype"], "sqlite");
    h.finish();
}

/// A query's span lasts while its rows are read, and is never current: a span the
/// application starts between two rows is its sibling, not a child of the exit span.
#[test]
fn rows_are_read_inside_the_query_span() {
    let h = agent::start(|c| c);
    let conn = Connection::open_in_memory().expect("an in-memory database");
    {
        let _t = apm::start_transaction("report", "custom");
        let mut stmt = conn
            .prepare("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT x FROM c")
            .expect("prepared");
        let mut rows = stmt.query([]).expect("queried");
        while let Some(row) = rows.next().expect("a row") {
            let x: i64 = row.get(0).expect("an integer");
            let _s = apm::start_span(format!("row {x}"), "app");
        }
    }
    h.flush();
    let spans = h.spans();
    let txn = &h.transactions()[0];
    let query = spans
        .iter()
        .find(|s| s["subtype"] == "sqlite")
        .expect("the query's span");
    for x in 1..=3 {
        let row = named(&spans, &format!("row {x}"));
        assert_eq!(row["parent_id"], txn["id"]);
        let (start, q_start) = (row["timestamp"].as_u64(), query["timestamp"].as_u64());
        assert!(start >= q_start, "row {x} read after the query started");
    }
    // The query's span ends when its rows are dropped, after the last one was read.
    let ts = |s: &Value| s["timestamp"].as_f64().unwrap_or_default();
    let query_end = ts(query) + query["duration"].as_f64().unwrap_or_default() * 1000.0;
    assert!(query_end >= ts(named(&spans, "row 3")), "{spans:#?}");
    h.finish();
}

#[test]
fn a_file_database_is_named_by_its_file_and_a_dropped_transaction_rolls_back_traced() {
    let h = agent::start(|c| c);
    let dir = std::env::temp_dir().join(format!("apm-tests-rusqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut conn = Connection::open(dir.join("orders.db")).expect("a database file");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS orders (id INTEGER)")
        .expect("created");
    {
        let _t = apm::start_transaction("abandon", "custom");
        let tx = conn.transaction().expect("begun");
        tx.execute("INSERT INTO orders VALUES (1)", [])
            .expect("inserted");
        // Dropped without commit: rolled back.
    }
    let count: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .expect("counted");
    assert_eq!(count, 0);
    h.flush();
    let spans = h.spans();
    let rollback = named(&spans, "ROLLBACK");
    assert_eq!(rollback["context"]["db"]["instance"], "orders.db");
    assert_eq!(
        rollback["context"]["service"]["target"]["name"],
        "orders.db"
    );
    // Only the three statements inside the transaction are recorded.
    assert_eq!(spans.len(), 3, "{spans:#?}");
    drop(conn);
    let _ = std::fs::remove_dir_all(dir);
    h.finish();
}

#[test]
fn nothing_is_recorded_outside_a_transaction() {
    let h = agent::start(|c| c);
    let conn = Connection::open_in_memory().expect("an in-memory database");
    conn.execute_batch("CREATE TABLE t (x INTEGER)")
        .expect("created");
    let mut stmt = conn.prepare("SELECT x FROM t").expect("prepared");
    assert!(!stmt.exists([]).expect("ran"));
    {
        let _t = apm::start_transaction("marker", "custom");
    }
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

/// A statement prepared where nothing is recorded does not keep its SQL (nothing is
/// allocated there), so its runs inside a transaction are named `SQLite`, without statement.
#[test]
fn a_statement_prepared_outside_a_transaction_is_named_sqlite() {
    let h = agent::start(|c| c);
    let conn = Connection::open_in_memory().expect("an in-memory database");
    let mut stmt = conn.prepare("SELECT 1").expect("prepared");
    {
        let _t = apm::start_transaction("later", "custom");
        let one: i64 = stmt.query_row([], |r| r.get(0)).expect("ran");
        assert_eq!(one, 1);
    }
    h.flush();
    let span = named(&h.spans(), "SQLite").clone();
    assert_eq!(span["subtype"], "sqlite");
    assert!(span["context"]["db"].get("statement").is_none(), "{span:#}");
    h.finish();
}

/// Past `transaction_max_spans`, statements are not sent but counted in the transaction's
/// `dropped_spans_stats`, per destination and outcome, with their summed duration.
#[test]
fn statements_past_the_span_limit_are_counted_in_dropped_spans_stats() {
    let h = agent::start(|c| c.transaction_max_spans(2).span_compression_enabled(false));
    let conn = Connection::open_in_memory().expect("an in-memory database");
    {
        let _t = apm::start_transaction("busy", "custom");
        for _ in 0..5 {
            let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).expect("a row");
            assert_eq!(one, 1);
        }
        conn.execute("DELETE FROM nowhere", [])
            .expect_err("no such table");
    }
    h.flush();
    assert_eq!(h.spans().len(), 2, "{:?}", h.spans());
    let txn = named(&h.transactions(), "busy").clone();
    assert_eq!(txn["span_count"]["started"], 2);
    assert_eq!(txn["span_count"]["dropped"], 4);
    let stats = txn["dropped_spans_stats"]
        .as_array()
        .expect("dropped_spans_stats")
        .clone();
    assert_eq!(stats.len(), 2, "{stats:?}");
    let of = |outcome: &str| {
        stats
            .iter()
            .find(|s| s["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} entry in {stats:?}"))
            .clone()
    };
    let success = of("success");
    assert_eq!(success["destination_service_resource"], "sqlite/:memory:");
    assert_eq!(success["service_target_type"], "sqlite");
    assert_eq!(success["service_target_name"], ":memory:");
    assert_eq!(success["duration"]["count"], 3);
    assert!(
        success["duration"]["sum"]["us"].as_u64().is_some(),
        "{success}"
    );
    assert_eq!(of("failure")["duration"]["count"], 1);
    h.finish();
}
