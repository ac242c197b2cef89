//! Our agent against the local server: the trace arrives whole, every event passes the
//! schemas, and the terminal waterfall and the web page's JSON show it.

mod common;

use apm_server_local::waterfall;
use common::{get, T};

#[test]
fn a_trace_from_our_agent_is_kept_validated_and_shown() {
    let server = common::server(|_| {});
    let trace_id = common::record_known_trace(&server, "GET /users/{id}");
    assert!(server.wait_for_events(4, T), "{:?}", server.stats());

    let stats = server.stats();
    assert_eq!(
        stats
            .events_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{:?}",
        server.violations()
    );
    assert!(server.violations().is_empty(), "{:?}", server.violations());
    common::validating(&server);

    let traces = server.traces();
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.trace_id, trace_id);
    let root = t.root().expect("root");
    assert_eq!(root.name, "GET /users/{id}");
    assert_eq!(root.service.as_deref(), Some("shop"), "metadata merged");
    assert_eq!(root.outcome.as_deref(), Some("failure"));
    let names: Vec<_> = t.walk().iter().map(|(d, n)| (*d, n.name.clone())).collect();
    assert_eq!(
        names,
        [
            (0, "GET /users/{id}".to_owned()),
            (1, "SELECT FROM users".to_owned()),
            (1, "GET pricing".to_owned())
        ]
    );
    let db = t.find("SELECT FROM users").expect("db span");
    assert_eq!(db.errors.len(), 1);
    assert_eq!(db.errors[0].message.as_deref(), Some("disk on fire"));

    let text = waterfall::render(t, false);
    assert!(
        text.starts_with(&format!("trace {trace_id}  shop\n")),
        "{text}"
    );
    assert!(
        text.contains("SELECT FROM users (db/sqlite/query)"),
        "{text}"
    );
    assert!(text.contains("! error"), "{text}");
    assert!(text.contains("disk on fire"), "{text}");
    let coloured = waterfall::render(t, true);
    assert!(coloured.contains("\x1b[31mfailure\x1b[0m"), "{coloured}");

    // The web page's JSON: the list, its filters, and the trace's details.
    let list = get(server.addr(), "/ui/api/traces?service=shop").json();
    assert_eq!(list["traces"][0]["name"], "GET /users/{id}");
    assert_eq!(list["traces"][0]["errors"], 1);
    assert_eq!(list["services"][0], "shop");
    for filter in [
        "service=other",
        "outcome=success",
        "min_ms=100000",
        "name=nope",
    ] {
        let list = get(server.addr(), &format!("/ui/api/traces?{filter}")).json();
        assert_eq!(list["traces"].as_array().map(Vec::len), Some(0), "{filter}");
    }
    let list = get(server.addr(), "/ui/api/traces?name=users&outcome=failure").json();
    assert_eq!(list["traces"].as_array().map(Vec::len), Some(1));

    let detail = get(server.addr(), &format!("/ui/api/trace?id={trace_id}")).json();
    let nodes = detail["nodes"].as_array().expect("nodes");
    assert_eq!(
        nodes[1]["db_statement"],
        "SELECT name FROM users WHERE id = 7"
    );
    assert_eq!(nodes[1]["errors"][0]["message"], "disk on fire");
    assert!(
        !nodes[1]["errors"][0]["frames"]
            .as_array()
            .expect("frames")
            .is_empty(),
        "{detail}"
    );
    assert_eq!(nodes[2]["http_url"], "http://pricing.local/items/7");
    assert_eq!(nodes[2]["labels"]["region"], "eu-west");
    assert_eq!(get(server.addr(), "/ui/api/trace?id=nope").status, 404);
    let page = get(server.addr(), "/ui");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<title>apm-server-local</title>"));
}
