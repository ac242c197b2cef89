//! `capture_error!`: error events linked to the trace, with type, message, cause chain and
//! capture site.

mod common;

use std::fmt;

use common::agent;

#[derive(Debug)]
struct Outer(Middle);
#[derive(Debug)]
struct Middle(std::io::Error);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("checkout failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
impl fmt::Display for Middle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment service unavailable")
    }
}
impl std::error::Error for Middle {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn errors_are_linked_to_the_current_span_with_their_chain_and_site() {
    let h = agent::start(|c| c);
    let line;
    {
        let _t = apm::start_transaction("pay", "request");
        let _s = apm::start_span("call payment", "external");
        let err = Outer(Middle(std::io::Error::other("connection refused")));
        line = line!() + 1;
        apm::capture_error!(err);
    }
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    let tx = &h.transactions()[0];
    let span = &h.spans()[0];
    assert_eq!(e["trace_id"], tx["trace_id"]);
    assert_eq!(e["transaction_id"], tx["id"]);
    assert_eq!(e["parent_id"], span["id"]);
    assert_eq!(e["transaction"]["name"], "pay");
    assert_eq!(e["transaction"]["type"], "request");
    assert_eq!(e["transaction"]["sampled"], true);
    assert_eq!(e["id"].as_str().unwrap().len(), 32);
    let ex = &e["exception"];
    assert_eq!(ex["message"], "checkout failed");
    assert_eq!(ex["type"], "Outer");
    assert_eq!(ex["module"], "errors");
    assert_eq!(ex["cause"][0]["message"], "payment service unavailable");
    assert_eq!(ex["cause"][1]["message"], "connection refused");
    // A `dyn Error` names no type: only those the agent recognises get one.
    assert!(ex["cause"][0].get("type").is_none());
    assert_eq!(ex["cause"][1]["type"], "Error");
    assert_eq!(ex["cause"][1]["module"], "std::io::error");
    assert_eq!(ex["cause"][1]["code"], "Other");
    assert_eq!(ex["cause"].as_array().unwrap().len(), 2);
    assert_eq!(ex["handled"], true);
    let frame = &ex["stacktrace"][0];
    assert!(frame["filename"].as_str().unwrap().ends_with("errors.rs"));
    assert_eq!(frame["lineno"], line);
    assert_eq!(frame["module"], "errors");
    assert_eq!(
        e["culprit"],
        "errors::errors_are_linked_to_the_current_span_with_their_chain_and_site"
    );
    h.finish();
}

#[test]
fn errors_outside_a_transaction_are_sent_unlinked() {
    let h = agent::start(|c| c);
    let parse: Result<u8, _> = "x".parse::<u8>();
    apm::capture_error!(parse.unwrap_err());
    let boxed: Box<dyn std::error::Error + Send + Sync> = "plain message".into();
    apm::capture_error!(boxed);
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(
            e.get("trace_id").is_none()
                && e.get("transaction_id").is_none()
                && e.get("transaction").is_none()
        );
    }
    assert_eq!(errors[0]["exception"]["type"], "ParseIntError");
    assert_eq!(errors[0]["exception"]["module"], "core::num::error");
    assert_eq!(errors[1]["exception"]["message"], "plain message");
    h.finish();
}

#[test]
fn errors_in_unsampled_transactions_are_linked_and_say_so() {
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    {
        let _t = apm::start_transaction("unsampled", "request");
        apm::capture_error!(std::io::Error::other("still reported"));
    }
    h.flush();
    let e = &h.errors()[0];
    assert_eq!(e["transaction"]["sampled"], false);
    assert_eq!(e["parent_id"], e["transaction_id"]);
    h.finish();
}

#[test]
fn long_messages_are_cut_at_ten_thousand_characters() {
    let h = agent::start(|c| c);
    apm::capture_error!(std::io::Error::other("m".repeat(20_000)));
    h.flush();
    let message = h.errors()[0]["exception"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(message.chars().count(), 10_000);
    assert!(message.ends_with('…'));
    h.finish();
}

#[test]
fn long_field_max_length_cuts_messages_causes_and_statements() {
    let h = agent::start(|c| c.long_field_max_length(20));
    {
        let _t = apm::start_transaction("work", "custom");
        let mut db = apm::start_span("SELECT FROM items", "db");
        db.set_exit();
        db.set_db("sql", None, Some("s".repeat(50)));
        drop(db);
        apm::capture_error!(Wrapped(std::io::Error::other("c".repeat(50))));
    }
    h.flush();
    let cut = |v: &serde_json::Value| {
        let text = v.as_str().unwrap_or_else(|| panic!("a string: {v}"));
        assert_eq!(text.chars().count(), 20, "{text}");
        assert!(text.ends_with('…'), "{text}");
    };
    let errors = h.errors();
    assert_eq!(errors.len(), 1);
    cut(&errors[0]["exception"]["message"]);
    cut(&errors[0]["exception"]["cause"][0]["message"]);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    cut(&spans[0]["context"]["db"]["statement"]);
    h.finish();
}

/// An error with a long message, caused by `.0`.
#[derive(Debug)]
struct Wrapped(std::io::Error);
impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&"w".repeat(50))
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[apm::span]
fn recovers(fail: bool) -> Result<u32, std::io::Error> {
    if fail {
        // Handled here: the function still succeeds, but an error was reported in it.
        apm::capture_error!(std::io::Error::other("cache miss"));
    }
    Ok(7)
}

#[apm::span]
async fn recovers_later(fail: bool) -> u32 {
    common::agent::Yield(false).await;
    if fail {
        apm::capture_error!(std::io::Error::other("retrying"));
    }
    7
}

/// `outcome.feature`: a span or transaction an error is reported to ends as a failure, one
/// without as a success; what the application set explicitly wins.
#[test]
fn an_error_reported_to_a_span_or_transaction_fails_it() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("with error", "request");
        recovers(true).expect("recovered");
        recovers(false).expect("no error");
        let span = apm::start_span("manual", "app");
        apm::capture_error!(std::io::Error::other("in a manual span"));
        drop(span);
        apm_tests::block_on(recovers_later(true));
        apm_tests::block_on(recovers_later(false));
    }
    {
        let _t = apm::start_transaction("reported to the transaction", "request");
        apm::capture_error!(std::io::Error::other("in the transaction itself"));
    }
    {
        // Captured on another thread, where the transaction's context is attached.
        let _t = apm::start_transaction("reported elsewhere", "request");
        let context = apm::Context::current();
        std::thread::spawn(move || {
            let _attached = context.attach();
            apm::capture_error!(std::io::Error::other("on a worker"));
        })
        .join()
        .expect("the worker ran");
    }
    {
        let _t = apm::start_transaction("set explicitly", "request");
        apm::capture_error!(std::io::Error::other("overruled"));
        apm::set_transaction_outcome(apm::Outcome::Unknown);
    }
    h.flush();
    let spans = h.spans();
    let outcomes = |name: &str| -> Vec<String> {
        let mut found: Vec<String> = spans
            .iter()
            .filter(|s| s["name"] == name)
            .map(|s| s["outcome"].as_str().unwrap_or_default().to_owned())
            .collect();
        found.sort();
        found
    };
    assert_eq!(outcomes("recovers"), ["failure", "success"]);
    assert_eq!(outcomes("recovers_later"), ["failure", "success"]);
    assert_eq!(outcomes("manual"), ["failure"]);
    let txs = h.transactions();
    let outcome = |name: &str| agent::named(&txs, name)["outcome"].clone();
    // Errors reported to its spans are theirs, not the transaction's.
    assert_eq!(outcome("with error"), "success");
    assert_eq!(outcome("reported to the transaction"), "failure");
    assert_eq!(outcome("reported elsewhere"), "failure");
    assert_eq!(outcome("set explicitly"), "unknown");
    h.finish();
}

const DECLINED_AT: u32 = line!() + 4;
#[inline(never)]
fn charge_card(amount: u32) -> u32 {
    if amount > 100 {
        apm::capture_error!(std::io::Error::other("card declined"));
    }
    amount
}

const CHECKOUT_CALLS_AT: u32 = line!() + 3;
#[inline(never)]
fn checkout(amount: u32) -> u32 {
    charge_card(amount) + std::hint::black_box(1)
}

fn frames_of(e: &serde_json::Value) -> &Vec<serde_json::Value> {
    e["exception"]["stacktrace"]
        .as_array()
        .expect("a stack trace")
}

fn functions(e: &serde_json::Value) -> Vec<&str> {
    frames_of(e)
        .iter()
        .map(|f| f["function"].as_str().unwrap_or(""))
        .collect()
}

/// The stack trace starts at the function that captured the error, with the application's
/// frames told from the libraries' (the test harness and std below it); the agent's frames
/// and the hash of symbol names are left out.
#[test]
fn errors_carry_a_symbolized_stack_trace() {
    let h = agent::start(|c| c);
    checkout(500);
    h.flush();
    let e = &h.errors()[0];
    let frames = frames_of(e);
    let names = functions(e);
    assert_eq!(names[0], "errors::charge_card", "{names:?}");
    assert_eq!(names[1], "errors::checkout", "{names:?}");
    assert_eq!(frames[0]["lineno"], DECLINED_AT);
    assert_eq!(frames[1]["lineno"], CHECKOUT_CALLS_AT);
    assert!(frames[0]["colno"].as_u64().is_some());
    assert_eq!(frames[0]["module"], "errors");
    assert!(frames[0]["filename"]
        .as_str()
        .unwrap()
        .ends_with("tests/errors.rs"));
    assert!(frames[0]["abs_path"].as_str().unwrap().starts_with('/'));
    assert_eq!(frames[0]["library_frame"], false);
    assert_eq!(frames[1]["library_frame"], false);
    assert!(names.len() <= 50, "stack_trace_limit defaults to 50");
    assert!(names
        .iter()
        .all(|n| !n.starts_with("apm::") && !n.starts_with("backtrace::")));
    // Symbol hashes (`::h0123456789abcdef`) would split error groups at every build.
    let hash = regex::Regex::new(r"::h[0-9a-f]{16}$").unwrap();
    assert!(names.iter().all(|n| !hash.is_match(n)), "{names:?}");
    // Below the test itself: the harness and std, library frames.
    let std_frame = frames
        .iter()
        .find(|f| f["function"].as_str().unwrap().starts_with("core::"))
        .expect("a frame of core below the test");
    assert_eq!(std_frame["library_frame"], true);
    assert_eq!(e["culprit"], "errors::charge_card");
    assert_eq!(e["exception"]["handled"], true);
    h.finish();
}

/// `stack_trace_limit`: N keeps the first N frames, 0 sends none, -1 all.
#[test]
fn stack_trace_limit_bounds_the_frames() {
    for (limit, check) in [
        (
            Some(1),
            Box::new(|n: usize| n == 1) as Box<dyn Fn(usize) -> bool>,
        ),
        (Some(0), Box::new(|n: usize| n == 0)),
        (None, Box::new(|n: usize| n > 2)),
    ] {
        let h = agent::start(|c| c.stack_trace_limit(limit));
        checkout(500);
        h.flush();
        let e = &h.errors()[0];
        let n = e["exception"]["stacktrace"].as_array().map_or(0, Vec::len);
        assert!(check(n), "limit {limit:?}: {n} frames");
        if limit == Some(0) {
            assert!(e["exception"].get("stacktrace").is_none());
        } else {
            assert_eq!(functions(e)[0], "errors::charge_card");
        }
        h.finish();
    }
}

const WARNED_AT: u32 = line!() + 3;
#[apm::span]
fn warn_about_quota(pct: u32) {
    apm::capture_message!(apm::Level::Warn, "quota at {}%", pct);
}

/// `capture_message!`: a log record (no exception) with level, message and format string,
/// linked to the span it was sent in.
#[test]
fn messages_are_sent_as_log_records() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("quota", "job");
        warn_about_quota(93);
    }
    apm::capture_message!(apm::Level::Error, "no transaction here");
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 2);
    let e = &errors[0];
    assert!(e.get("exception").is_none());
    let log = &e["log"];
    assert_eq!(log["message"], "quota at 93%");
    assert_eq!(log["param_message"], "quota at {}%");
    assert_eq!(log["level"], "warning");
    assert_eq!(log["logger_name"], "errors");
    assert_eq!(log["stacktrace"][0]["function"], "errors::warn_about_quota");
    assert_eq!(log["stacktrace"][0]["lineno"], WARNED_AT);
    assert_eq!(e["parent_id"], h.spans()[0]["id"]);
    assert_eq!(e["culprit"], "errors::warn_about_quota");
    assert_eq!(errors[1]["log"]["level"], "error");
    assert_eq!(errors[1]["log"]["param_message"], "no transaction here");
    assert!(errors[1].get("trace_id").is_none());
    h.finish();
}

/// The ids code can stamp on its own log lines are those of the events.
#[test]
fn current_ids_are_those_of_the_events() {
    let h = agent::start(|c| c);
    assert_eq!(apm::current_ids(), None);
    let (in_txn, in_span);
    {
        let _t = apm::start_transaction("ids", "job");
        in_txn = apm::current_ids().expect("inside a transaction");
        let _s = apm::start_span("step", "app");
        in_span = apm::current_ids().expect("inside a span");
    }
    h.flush();
    let tx = &h.transactions()[0];
    let span = &h.spans()[0];
    assert_eq!(in_txn.trace_id(), tx["trace_id"].as_str().unwrap());
    assert_eq!(in_txn.transaction_id(), tx["id"].as_str().unwrap());
    assert_eq!(in_txn.span_id(), None);
    assert_eq!(in_span.span_id().as_deref(), span["id"].as_str());
    assert_eq!(in_span.transaction_id(), tx["id"].as_str().unwrap());
    assert_eq!(
        in_span.to_string(),
        format!(
            "trace.id={} transaction.id={} span.id={}",
            tx["trace_id"].as_str().unwrap(),
            tx["id"].as_str().unwrap(),
            span["id"].as_str().unwrap()
        )
    );
    h.finish();
}

#[derive(Debug)]
struct Unreachable(std::io::Error);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("inventory unreachable")
    }
}
impl std::error::Error for Unreachable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// An I/O cause with an OS error number sends the number as its code; a parse error its type.
#[test]
fn causes_carry_the_os_error_number_and_known_types() {
    let h = agent::start(|c| c);
    apm::capture_error!(Unreachable(std::io::Error::from_raw_os_error(111)));
    #[derive(Debug)]
    struct BadQuantity(std::num::ParseIntError);
    impl fmt::Display for BadQuantity {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bad quantity")
        }
    }
    impl std::error::Error for BadQuantity {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    apm::capture_error!(BadQuantity("x".parse::<u8>().unwrap_err()));
    h.flush();
    let errors = h.errors();
    assert_eq!(errors[0]["exception"]["cause"][0]["code"], 111);
    assert_eq!(errors[1]["exception"]["cause"][0]["type"], "ParseIntError");
    assert!(errors[1]["exception"]["cause"][0].get("code").is_none());
    h.finish();
}

/// `exception.code`: the code of the error itself, else of its outermost cause that has one;
/// none when no error of the chain has one.
#[test]
fn the_exception_code_is_the_outermost_one_of_the_chain() {
    let h = agent::start(|c| c);
    let not_found = std::io::Error::from_raw_os_error(2);
    apm::capture_error!(&not_found);
    apm::capture_error!(std::io::Error::other("no number"));
    apm::capture_error!(Unreachable(std::io::Error::from_raw_os_error(111)));
    apm::capture_error!("x".parse::<u8>().unwrap_err());
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 4);
    assert_eq!(errors[0]["exception"]["code"], 2);
    assert_eq!(errors[1]["exception"]["code"], "Other");
    assert_eq!(errors[2]["exception"]["code"], 111);
    assert!(errors[3]["exception"].get("code").is_none());
    h.finish();
}

/// `ignore_exceptions`: errors whose type path matches a pattern are not reported.
#[test]
fn ignored_error_types_are_not_reported() {
    let h = agent::start(|c| c.ignore_exceptions(["*::ParseIntError"]));
    apm::capture_error!("x".parse::<u8>().unwrap_err());
    apm::capture_error!(std::io::Error::other("still reported"));
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["exception"]["message"], "still reported");
    h.finish();
}

/// A transaction's labels, user and custom context sit in a part of its record that stays
/// with the record's box when the box is reused: a transaction without any, ending in a box
/// that carried another's, sends none of them, and each sends its own.
#[test]
fn a_reused_record_carries_no_earlier_transactions_labels_user_or_custom_context() {
    const ROUNDS: u64 = 3;
    const PAIRS: u64 = 50;
    let h = agent::start(|c| c);
    for round in 0..ROUNDS {
        for i in 0..PAIRS {
            {
                let t = apm::start_transaction("rich", "request");
                t.set_label("n", (round * PAIRS + i) as i64);
                apm::set_user(apm::User::id("42"));
                apm::set_custom_context("cart", true);
            }
            drop(apm::start_transaction("plain", "request"));
        }
        // The records' boxes go back to be reused by the next round.
        h.flush();
    }
    let transactions = h.transactions();
    assert_eq!(transactions.len() as u64, ROUNDS * PAIRS * 2);
    let mut seen = Vec::new();
    for tx in &transactions {
        match tx["name"].as_str() {
            Some("plain") => {
                for part in ["context", "links", "dropped_spans_stats"] {
                    assert!(tx.get(part).is_none(), "{tx:#}");
                }
            }
            Some("rich") => {
                let context = &tx["context"];
                assert_eq!(context["user"]["id"], "42", "{tx:#}");
                assert_eq!(context["custom"]["cart"], true, "{tx:#}");
                let n = context["tags"]["n"].as_f64().expect("its label");
                seen.push(n as u64);
            }
            other => panic!("unexpected transaction {other:?}"),
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..ROUNDS * PAIRS).collect::<Vec<_>>());
    h.finish();
}

#[test]
fn transactions_and_their_errors_carry_labels_user_and_custom_context() {
    let h = agent::start(|c| c);
    {
        let t = apm::start_transaction("checkout", "request");
        t.set_label("tier", "gold");
        apm::set_user(apm::User::id("42").username("ada").email("ada@example.com"));
        apm::set_custom_context("cart.items", 3);
        apm::set_custom_context("coupon", "WINTER");
        apm::capture_error!(std::io::Error::other("card declined"));
    }
    apm::capture_error!(std::io::Error::other("outside any transaction"));
    h.flush();
    let tx = &h.transactions()[0];
    let errors = h.errors();
    for context in [&tx["context"], &errors[0]["context"]] {
        assert_eq!(context["user"]["id"], "42", "{context:#}");
        assert_eq!(context["user"]["username"], "ada");
        assert_eq!(context["user"]["email"], "ada@example.com");
        // Keys are sanitised like labels' keys.
        assert_eq!(context["custom"]["cart_items"].as_f64(), Some(3.0));
        assert_eq!(context["custom"]["coupon"], "WINTER");
        assert_eq!(context["tags"]["tier"], "gold");
    }
    assert!(errors[1].get("context").is_none(), "{:#}", errors[1]);
    h.finish();
}
