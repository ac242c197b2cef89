//! Exit spans: HTTP, database and messaging context, and the service target and destination
//! inferred from it; detached spans for calls awaited elsewhere.

mod common;

use common::agent::{self, named};

#[test]
fn an_http_exit_span_carries_its_request_and_target() {
    let h = agent::start(|c| c);
    let injected = {
        let _t = apm::start_transaction("calls", "request");
        let mut s = apm::start_span("GET api.example.com", "external");
        s.set_subtype("http");
        s.set_exit();
        s.set_http_request("GET", "https://user:secret@api.example.com/v1/items?page=2");
        s.set_http_status(503);
        s.set_outcome(apm::Outcome::Failure);
        let mut out: Vec<(String, String)> = Vec::new();
        s.inject(&mut out);
        (out, s.id())
    };
    h.flush();
    let span = named(&h.spans(), "GET api.example.com").clone();
    let (out, id) = injected;
    assert!(out[0].1.contains(id.as_deref().unwrap()), "{out:?}");
    let ctx = &span["context"];
    assert_eq!(
        ctx["http"]["url"],
        "https://api.example.com/v1/items?page=2"
    );
    assert_eq!(ctx["http"]["method"], "GET");
    assert_eq!(ctx["http"]["status_code"], 503);
    assert_eq!(ctx["service"]["target"]["type"], "http");
    assert_eq!(ctx["service"]["target"]["name"], "api.example.com:443");
    assert_eq!(
        ctx["destination"]["service"]["resource"],
        "api.example.com:443"
    );
    assert_eq!(ctx["destination"]["address"], "api.example.com");
    assert_eq!(ctx["destination"]["port"], 443);
    assert_eq!(span["outcome"], "failure");
    h.finish();
}

/// Everything `context.db` and `context.destination` can say about a database call, as the
/// database instrumentation spec lists it; the event validates against the intake schema.
#[test]
fn a_database_span_carries_user_rows_link_and_destination() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("report", "custom");
        let statement = "UPDATE stock@warehouse SET n = n - 1 WHERE id = :id";
        let mut db = apm::start_span(apm::sql::signature(statement), "db");
        db.set_subtype("oracle");
        db.set_action("query");
        db.set_exit();
        db.set_db("sql", Some("shop".into()), Some(statement.into()));
        db.set_db_user("reporter");
        db.set_db_rows_affected(3);
        if let Some(link) = apm::sql::db_link(statement) {
            db.set_db_link(link);
        }
        db.set_destination(Some("db.internal".into()), Some(1521));
    }
    h.flush();
    let span = named(&h.spans(), "UPDATE stock").clone();
    let ctx = &span["context"];
    assert_eq!(ctx["db"]["type"], "sql");
    assert_eq!(ctx["db"]["instance"], "shop");
    assert_eq!(ctx["db"]["user"], "reporter");
    assert_eq!(ctx["db"]["rows_affected"], 3);
    assert_eq!(ctx["db"]["link"], "warehouse");
    assert_eq!(ctx["destination"]["address"], "db.internal");
    assert_eq!(ctx["destination"]["port"], 1521);
    assert_eq!(ctx["destination"]["service"]["resource"], "oracle/shop");
    assert_eq!(ctx["service"]["target"]["type"], "oracle");
    assert_eq!(ctx["service"]["target"]["name"], "shop");
    h.finish();
}

#[apm::span(kind = "app", subtype = "internal")]
fn driver_internals() {}

/// An exit span is a leaf: what starts under it (a client library's own spans, in every
/// form) is not recorded, and recording resumes once it ends.
#[test]
fn nothing_is_recorded_under_an_exit_span() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("leaf", "custom");
        let mut query = apm::start_span("SELECT FROM t", "db");
        query.set_subtype("postgresql");
        query.set_exit();
        driver_internals();
        drop(apm::start_span("driver: encode", "app"));
        drop(apm::Span::start("driver: socket", "app"));
        drop(query);
        driver_internals();
    }
    h.flush();
    let spans = h.spans();
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["SELECT FROM t", "driver_internals"], "{names:?}");
    let txn = &h.transactions()[0];
    assert_eq!(spans[1]["parent_id"], txn["id"]);
    assert_eq!(txn["span_count"]["started"], 2);
    h.finish();
}

#[test]
fn database_and_messaging_targets_follow_the_spec() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("work", "custom");
        let mut db = apm::start_span("SELECT FROM items", "db");
        db.set_subtype("postgresql");
        db.set_action("query");
        db.set_exit();
        db.set_db(
            "sql",
            Some("shop".into()),
            Some("SELECT * FROM items WHERE id = $1".into()),
        );
        drop(db);
        let mut mq = apm::start_span("publish orders", "messaging");
        mq.set_subtype("rabbitmq");
        mq.set_exit();
        mq.set_message_queue("orders");
        drop(mq);
        let mut internal = apm::start_span("not an exit", "db");
        internal.set_db("sql", Some("shop".into()), None);
        drop(internal);
    }
    h.flush();
    let spans = h.spans();
    let db = &named(&spans, "SELECT FROM items")["context"];
    assert_eq!(db["db"]["statement"], "SELECT * FROM items WHERE id = $1");
    assert_eq!(db["db"]["instance"], "shop");
    assert_eq!(db["service"]["target"]["type"], "postgresql");
    assert_eq!(db["service"]["target"]["name"], "shop");
    assert_eq!(db["destination"]["service"]["resource"], "postgresql/shop");
    let mq = &named(&spans, "publish orders")["context"];
    assert_eq!(mq["message"]["queue"]["name"], "orders");
    assert_eq!(mq["destination"]["service"]["resource"], "rabbitmq/orders");
    let internal = &named(&spans, "not an exit")["context"];
    assert!(internal.get("service").is_none() && internal.get("destination").is_none());
    h.finish();
}

#[test]
fn a_detached_span_can_end_on_another_thread() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("spawns", "custom");
        let parent = apm::start_span("parent", "app");
        let mut call = apm::Span::start("call elsewhere", "external");
        call.set_exit();
        assert!(call.is_recording());
        std::thread::spawn(move || drop(call)).join().unwrap();
        // It was never current: spans opened meanwhile are children of `parent`.
        let _sibling = apm::start_span("sibling", "app");
        drop(parent);
    }
    h.flush();
    let spans = h.spans();
    let parent = named(&spans, "parent");
    assert_eq!(named(&spans, "call elsewhere")["parent_id"], parent["id"]);
    assert_eq!(named(&spans, "sibling")["parent_id"], parent["id"]);
    h.finish();
}
