//! `apm::nats` against the real NATS server of the machine (127.0.0.1:4222), with the mock
//! APM Server behind the agent: a published message is an exit span whose trace context
//! travels in the message's headers, and the received message is a `messaging` transaction
//! continuing that trace; a message without trace context, or with a `traceparent` that does
//! not parse, starts a new trace and is processed as usual
//! (`specs/agents/tracing-instrumentation-messaging.md`). In the first test the producer is
//! another process (the test runs its own binary again), in the others a second client of the
//! same process. Every event is checked against the intake schemas. Without NATS the tests
//! say so and skip (under `CI=true` they fail).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use apm::nats::ClientExt as _;
use async_nats::{HeaderMap, Message, Subscriber};
use common::agent::{self, named};
use futures_core::Stream;
use serde_json::Value;

const ADDR: &str = "127.0.0.1:4222";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn client() -> async_nats::Client {
    async_nats::connect(ADDR)
        .await
        .expect("a connection to NATS")
}

/// A subject of this process and test only (tests run in parallel, in several processes).
fn subject(test: &str) -> String {
    format!("apm-tests.{}.{test}", std::process::id())
}

/// A subscription to `subject` that the server already knows of.
async fn subscribe(client: &async_nats::Client, subject: &str) -> Subscriber {
    let subscriber = client
        .subscribe(subject.to_owned())
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    subscriber
}

async fn next(subscriber: &mut Subscriber) -> Message {
    tokio::time::timeout(
        Duration::from_secs(10),
        poll_fn(|cx| Pin::new(&mut *subscriber).poll_next(cx)),
    )
    .await
    .expect("a message within 10 s")
    .expect("the subscription is open")
}

/// Set for the producer process: the subject it publishes to, and where its agent sends.
const PRODUCE_TO: &str = "APM_TESTS_NATS_PRODUCE_TO";
const PRODUCER_SERVER_URL: &str = "APM_TESTS_NATS_SERVER_URL";

/// The producer's side of [`one_trace_crosses_the_subject_between_processes`], run by that
/// test in a process of its own; alone (without its environment) it does nothing.
#[test]
fn producer_process() {
    let (Ok(subject), Ok(server_url)) = (
        std::env::var(PRODUCE_TO),
        std::env::var(PRODUCER_SERVER_URL),
    ) else {
        return;
    };
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("apm-tests-producer")
            .server_url(server_url)
            .build(),
    );
    runtime().block_on(async {
        let producer = client().await;
        let transaction = apm::Transaction::start("produce order", "job");
        transaction
            .bind(async {
                let mut headers = HeaderMap::new();
                headers.insert("password", "secret");
                producer
                    .publish_with_headers_traced(subject, headers, "order 7".into())
                    .await
                    .expect("publish");
                producer.flush().await.expect("flush");
            })
            .await;
    });
    assert!(
        agent.flush(Duration::from_secs(10)),
        "the producer's events were not sent"
    );
}

#[test]
fn one_trace_crosses_the_subject_between_processes() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let subject = subject("cross");
    runtime().block_on(async {
        let consumer = client().await;
        // Core NATS keeps nothing: the subscription exists before the producer starts.
        let mut subscriber = subscribe(&consumer, &subject).await;
        let producer = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "producer_process", "--test-threads=1"])
            .env(PRODUCE_TO, &subject)
            .env(PRODUCER_SERVER_URL, h.server.url())
            .output()
            .expect("the producer process runs");
        assert!(
            producer.status.success(),
            "the producer process failed ({}):\n{}\n{}",
            producer.status,
            String::from_utf8_lossy(&producer.stdout),
            String::from_utf8_lossy(&producer.stderr)
        );
        let message = next(&mut subscriber).await;
        assert_eq!(&message.payload[..], b"order 7");
        apm::nats::receive(&message)
            .bind(async {
                let _handling = apm::start_span("handle order", "app");
            })
            .await;
    });
    h.flush();

    let spans = h.spans();
    let transactions = h.transactions();
    let produce = named(&transactions, "produce order");
    let send = named(&spans, &format!("NATS SEND to {subject}"));
    assert_eq!(send["parent_id"], produce["id"], "{send:#}");
    assert_eq!(send["outcome"], "success");
    assert_eq!(send["context"]["destination"]["port"], 4222);
    let receive = named(&transactions, &format!("NATS RECEIVE from {subject}"));
    assert_eq!(receive["trace_id"], produce["trace_id"], "one trace");
    assert_eq!(
        receive["parent_id"], send["id"],
        "the send span is the parent"
    );
    assert_eq!(receive["outcome"], "success");
    let headers = &receive["context"]["message"]["headers"];
    assert_eq!(headers["password"], "[REDACTED]", "{receive:#}");
    let handling = named(&spans, "handle order");
    assert_eq!(handling["parent_id"], receive["id"], "processing is inside");
    h.finish();
}

#[test]
fn one_trace_crosses_the_subject() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let subject = subject("orders");
    runtime().block_on(async {
        let consumer = client().await;
        let mut subscriber = subscribe(&consumer, &subject).await;
        let producer = client().await;
        let checkout = apm::Transaction::start("checkout", "request");
        checkout
            .bind(async {
                let mut headers = HeaderMap::new();
                headers.insert("password", "secret");
                producer
                    .publish_with_headers_traced(subject.clone(), headers, "order 7".into())
                    .await
                    .expect("publish");
                producer.flush().await.expect("flush");
            })
            .await;
        let message = next(&mut subscriber).await;
        assert_eq!(&message.payload[..], b"order 7");
        let transaction = apm::nats::receive(&message);
        transaction
            .bind(async {
                let _handling = apm::start_span("handle order", "app");
            })
            .await;
    });
    h.flush();

    let spans = h.spans();
    let transactions = h.transactions();
    let checkout = named(&transactions, "checkout");
    let send = named(&spans, &format!("NATS SEND to {subject}"));
    assert_eq!(send["type"], "messaging", "{send:#}");
    assert_eq!(send["subtype"], "nats");
    assert_eq!(send["action"], "send");
    assert_eq!(send["outcome"], "success");
    assert_eq!(send["parent_id"], checkout["id"]);
    let ctx = &send["context"];
    assert_eq!(ctx["message"]["queue"]["name"], subject.as_str());
    assert_eq!(ctx["service"]["target"]["type"], "nats");
    assert_eq!(ctx["service"]["target"]["name"], subject.as_str());
    assert_eq!(ctx["destination"]["address"], "127.0.0.1", "{send:#}");
    assert_eq!(ctx["destination"]["port"], 4222);

    let receive = named(&transactions, &format!("NATS RECEIVE from {subject}"));
    assert_eq!(receive["type"], "messaging", "{receive:#}");
    assert_eq!(receive["trace_id"], checkout["trace_id"], "one trace");
    assert_eq!(
        receive["parent_id"], send["id"],
        "the send span is the parent"
    );
    assert_eq!(receive["outcome"], "success");
    let message = &receive["context"]["message"];
    assert_eq!(message["queue"]["name"], subject.as_str());
    assert_eq!(message["headers"]["password"], "[REDACTED]", "{receive:#}");
    let traceparent = message["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("traceparent sent: {receive:#}"));
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            send["trace_id"].as_str().expect("a trace id"),
            send["id"].as_str().expect("a span id")
        )
    );
    let handling = named(&spans, "handle order");
    assert_eq!(handling["parent_id"], receive["id"], "processing is inside");
    h.finish();
}

/// Past `transaction_max_spans`, messages published are not spans but are counted in the
/// transaction's `dropped_spans_stats` (service target `nats` and the subject), and still
/// carry the trace context.
#[test]
fn messages_published_past_the_span_limit_are_counted_in_dropped_spans_stats() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.transaction_max_spans(1).span_compression_enabled(false));
    let subject = subject("over_limit");
    let trace_id = runtime().block_on(async {
        let consumer = client().await;
        let mut subscriber = subscribe(&consumer, &subject).await;
        let producer = client().await;
        let transaction = apm::Transaction::start("publishing", "request");
        let trace_id = transaction.trace_id().expect("a trace id");
        transaction
            .bind(async {
                for _ in 0..4 {
                    producer
                        .publish_traced(subject.clone(), "x".into())
                        .await
                        .expect("publish");
                }
            })
            .await;
        producer.flush().await.expect("flush");
        for _ in 0..4 {
            let message = next(&mut subscriber).await;
            let headers = message.headers.expect("headers");
            let traceparent = headers.get("traceparent").expect("a traceparent");
            assert!(
                traceparent.as_str().starts_with(&format!("00-{trace_id}-")),
                "{traceparent}"
            );
        }
        trace_id
    });
    h.flush();
    assert_eq!(h.spans().len(), 1, "{:#?}", h.spans());
    let txn = named(&h.transactions(), "publishing").clone();
    assert_eq!(txn["trace_id"], trace_id.as_str());
    assert_eq!(txn["span_count"]["dropped"], 3, "{txn:#}");
    let resource = format!("nats/{subject}");
    let count = agent::the_dropped_stat(&txn, ("nats", Some(&subject)), &resource, "success");
    assert_eq!(count, 3);
    h.finish();
}

#[test]
fn messages_without_a_valid_trace_context_start_new_traces() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c);
    let subject = subject("untraced");
    runtime().block_on(async {
        let consumer = client().await;
        let mut subscriber = subscribe(&consumer, &subject).await;
        let producer = client().await;
        // Outside any transaction the traced publish adds nothing: no headers at all.
        producer
            .publish_traced(subject.clone(), "plain".into())
            .await
            .expect("publish");
        let mut garbage = HeaderMap::new();
        garbage.insert("traceparent", "00-not-a-trace-context");
        garbage.insert("tracestate", "é,,=");
        producer
            .publish_with_headers(subject.clone(), garbage, "garbage".into())
            .await
            .expect("publish");
        producer.flush().await.expect("flush");
        let plain = next(&mut subscriber).await;
        assert_eq!(&plain.payload[..], b"plain");
        assert!(plain.headers.is_none(), "no header was added");
        apm::nats::receive(&plain).bind(async {}).await;
        let garbage = next(&mut subscriber).await;
        assert_eq!(&garbage.payload[..], b"garbage");
        let transaction = apm::nats::receive(&garbage);
        transaction.set_outcome(apm::Outcome::Failure);
        transaction.bind(async {}).await;
    });
    h.flush();

    let transactions = h.transactions();
    let name = format!("NATS RECEIVE from {subject}");
    let received: Vec<&Value> = transactions.iter().filter(|t| t["name"] == name).collect();
    assert_eq!(received.len(), 2, "{transactions:#?}");
    for t in &received {
        assert!(t["parent_id"].is_null(), "a new trace: {t:#}");
        assert_eq!(t["type"], "messaging");
    }
    assert_ne!(received[0]["trace_id"], received[1]["trace_id"]);
    let garbage = received
        .iter()
        .find(|t| !t["context"]["message"]["headers"].is_null())
        .expect("the garbage message's transaction");
    assert_eq!(garbage["outcome"], "failure");
    assert!(
        h.spans().is_empty(),
        "nothing published inside a transaction"
    );
    h.finish();
}
