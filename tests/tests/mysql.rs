//! `apm::mysql::Traced` against the real MariaDB of the machine (127.0.0.1:3306, root without
//! a password, database `test`), with the mock APM Server behind the agent: one exit span per
//! statement, described per `specs/agents/tracing-instrumentation-db.md` ("SQL Databases"),
//! nested under `#[apm::transaction]` and `#[apm::span]`, outcome `failure` on driver errors;
//! nothing recorded outside a sampled transaction. Without MariaDB the tests say so and skip
//! (under `CI=true` they fail).

mod common;

use common::agent::{self, named};
use mysql::prelude::Queryable as _;
use serde_json::Value;

const ADDR: &str = "127.0.0.1:3306";

/// Options for the local server, or `None` (after saying so) when it is not running.
fn opts() -> Option<mysql::Opts> {
    if !apm_tests::services::require("mariadb", ADDR) {
        return None;
    }
    Some(mysql::Opts::from_url(&format!("mysql://root@{ADDR}/test")).expect("a valid URL"))
}

/// A table name of this process and test only (tests run in parallel, in several processes).
fn table(test: &str) -> String {
    format!("apm_{test}_{}", std::process::id())
}

/// The recorded spans of subtype `mysql`.
fn mysql_spans(h: &agent::Harness) -> Vec<Value> {
    h.spans()
        .into_iter()
        .filter(|s| s["subtype"] == "mysql")
        .collect()
}

/// The one span whose statement is `statement`, checked against the spec.
#[track_caller]
fn check<'a>(
    spans: &'a [Value],
    statement: &str,
    parent: &Value,
    outcome: &str,
    rows_affected: Option<u64>,
) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["context"]["db"]["statement"] == statement)
        .collect();
    assert_eq!(found.len(), 1, "one span for {statement:?} in {spans:#?}");
    let span = found[0];
    assert_eq!(span["name"], apm::sql::signature(statement), "{span:#}");
    check_span(span, parent, outcome);
    assert_eq!(
        span["context"]["db"]["rows_affected"].as_u64(),
        rows_affected,
        "{span:#}"
    );
    span
}

#[track_caller]
fn check_span(span: &Value, parent: &Value, outcome: &str) {
    assert_eq!(span["type"], "db", "{span:#}");
    assert_eq!(span["subtype"], "mysql");
    assert_eq!(span["action"], "query");
    assert_eq!(span["outcome"], outcome, "{span:#}");
    assert_eq!(span["trace_id"], parent["trace_id"]);
    assert_eq!(span["parent_id"], parent["id"], "{span:#}");
    let ctx = &span["context"];
    assert_eq!(ctx["db"]["type"], "sql", "{span:#}");
    assert_eq!(ctx["db"]["instance"], "test");
    assert_eq!(ctx["db"]["user"], "root");
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], 3306);
    assert_eq!(ctx["destination"]["service"]["resource"], "mysql/test");
    assert_eq!(ctx["service"]["target"]["type"], "mysql");
    assert_eq!(ctx["service"]["target"]["name"], "test");
}

/// The statements the transaction runs on `t`, in order.
struct Statements {
    create: String,
    insert: String,
    select: String,
    update: String,
    delete: String,
    syntax_error: &'static str,
    missing_table: String,
}

impl Statements {
    fn on(t: &str) -> Statements {
        Statements {
            create: format!("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20))"),
            insert: format!("INSERT INTO {t} (id, name) VALUES (?, ?)"),
            select: format!("SELECT id, name FROM {t} ORDER BY id"),
            update: format!("UPDATE {t} SET name = ? WHERE id = ?"),
            delete: format!("DELETE FROM {t} WHERE id >= 2"),
            syntax_error: "SELEC 1",
            missing_table: format!("SELECT * FROM {t}_missing WHERE id = ?"),
        }
    }
}

#[derive(Debug)]
struct Results {
    rows: Vec<(i32, String)>,
    first: Option<String>,
    syntax_error: mysql::Error,
    missing_table: mysql::Error,
}

#[apm::transaction(name = "mysql statements", kind = "request")]
fn run(conn: &mut apm::mysql::Traced<mysql::Conn>, s: &Statements) -> Results {
    conn.query_drop(&s.create).expect("CREATE TABLE");
    conn.exec_drop(&s.insert, (1, "one")).expect("INSERT");
    conn.exec_batch(&s.insert, [(2, "two"), (3, "three")])
        .expect("batch INSERT");
    let rows = conn.query(&s.select).expect("SELECT");
    rename(conn, s);
    let deleted = conn.query_iter(&s.delete).expect("DELETE").affected_rows();
    assert_eq!(deleted, 2);
    let first = conn
        .exec_first(format!("{} LIMIT ?", s.select), (1,))
        .expect("SELECT first");
    let syntax_error = conn.query_drop(s.syntax_error).expect_err("a syntax error");
    // Fails when it is prepared.
    let missing_table = conn
        .exec_drop(&s.missing_table, (1,))
        .expect_err("no such table");
    Results {
        rows,
        first: first.map(|(_, name): (i32, String)| name),
        syntax_error,
        missing_table,
    }
}

#[apm::span(name = "rename", kind = "app")]
fn rename(conn: &mut apm::mysql::Traced<mysql::Conn>, s: &Statements) {
    // Prepared first, executed later: the text is remembered.
    let update = conn.prep(&s.update).expect("prepare UPDATE");
    conn.exec_drop(&update, ("uno", 1)).expect("UPDATE");
}

#[test]
fn statements_are_exit_spans() {
    let Some(opts) = opts() else { return };
    let h = agent::start(|c| c.span_compression_enabled(false));
    let t = table("statements");
    let s = Statements::on(&t);
    let mut admin = mysql::Conn::new(opts.clone()).expect("a connection");
    admin
        .query_drop(format!("DROP TABLE IF EXISTS {t}"))
        .expect("DROP");
    let mut conn =
        apm::mysql::Traced::new(mysql::Conn::new(opts.clone()).expect("a connection"), &opts);
    let r = run(&mut conn, &s);
    admin.query_drop(format!("DROP TABLE {t}")).expect("DROP");
    assert_eq!(
        r.rows,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    assert_eq!(r.first.as_deref(), Some("uno"));
    assert!(
        matches!(r.syntax_error, mysql::Error::MySqlError(ref e) if e.code == 1064),
        "{:?}",
        r.syntax_error
    );
    assert!(
        matches!(r.missing_table, mysql::Error::MySqlError(ref e) if e.code == 1146),
        "{:?}",
        r.missing_table
    );

    h.flush();
    let txn = named(&h.transactions(), "mysql statements").clone();
    let spans = mysql_spans(&h);
    assert_eq!(spans.len(), 9, "{spans:#?}");
    check(&spans, &s.create, &txn, "success", Some(0));
    let inserts: Vec<&Value> = spans
        .iter()
        .filter(|sp| sp["context"]["db"]["statement"] == s.insert.as_str())
        .collect();
    assert_eq!(inserts.len(), 2, "{spans:#?}");
    for insert in &inserts {
        assert_eq!(insert["name"], format!("INSERT INTO {t}"));
        check_span(insert, &txn, "success");
    }
    // One row; the batch is one span, without a count.
    let mut counts: Vec<Option<u64>> = inserts
        .iter()
        .map(|i| i["context"]["db"]["rows_affected"].as_u64())
        .collect();
    counts.sort();
    assert_eq!(counts, [None, Some(1)]);
    let select = check(&spans, &s.select, &txn, "success", None);
    assert_eq!(select["name"], format!("SELECT FROM {t}"));
    let all = h.spans();
    let rename = named(&all, "rename");
    assert_eq!(rename["parent_id"], txn["id"]);
    let update = check(&spans, &s.update, rename, "success", Some(1));
    assert_eq!(update["name"], format!("UPDATE {t}"));
    check(&spans, &s.delete, &txn, "success", Some(2));
    check(
        &spans,
        &format!("{} LIMIT ?", s.select),
        &txn,
        "success",
        None,
    );
    check(&spans, s.syntax_error, &txn, "failure", None);
    check(&spans, &s.missing_table, &txn, "failure", None);
    // The admin connection is not wrapped: nothing of it is recorded.
    assert_eq!(all.len(), 10, "{all:#?}");
    h.finish();
}

#[test]
fn outside_a_sampled_transaction_nothing_is_recorded() {
    let Some(opts) = opts() else { return };
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    let mut conn =
        apm::mysql::Traced::new(mysql::Conn::new(opts.clone()).expect("a connection"), &opts);
    let one: Option<i64> = conn.query_first("SELECT 1").expect("SELECT outside");
    assert_eq!(one, Some(1));
    {
        let t = apm::start_transaction("unsampled", "request");
        assert!(!t.is_sampled());
        let two: Option<i64> = conn
            .exec_first("SELECT ? + 1", (1,))
            .expect("SELECT unsampled");
        assert_eq!(two, Some(2));
    }
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

#[test]
fn a_statement_prepared_outside_the_transaction_is_named_execute() {
    let Some(opts) = opts() else { return };
    let h = agent::start(|c| c);
    let mut conn =
        apm::mysql::Traced::new(mysql::Conn::new(opts.clone()).expect("a connection"), &opts);
    let stmt = conn.prep("SELECT ? * 2").expect("prepare");
    let doubled: Option<i64> = {
        let _t = apm::start_transaction("prepared before", "request");
        conn.exec_first(&stmt, (21,)).expect("execute")
    };
    assert_eq!(doubled, Some(42));
    h.flush();
    let txn = named(&h.transactions(), "prepared before").clone();
    let spans = mysql_spans(&h);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0]["name"], "EXECUTE");
    assert!(spans[0]["context"]["db"]["statement"].is_null());
    check_span(&spans[0], &txn, "success");
    h.finish();
}
