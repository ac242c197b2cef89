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
    assert_eq!(ex["cause"].as_array().unwrap().len(), 2);
    let frame = &ex["stacktrace"][0];
    assert!(frame["filename"].as_str().unwrap().ends_with("errors.rs"));
    assert_eq!(frame["lineno"], line);
    assert_eq!(frame["module"], "errors");
    let culprit = e["culprit"].as_str().unwrap();
    assert!(
        culprit.starts_with("errors (") && culprit.contains(&format!(":{line})")),
        "{culprit}"
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
