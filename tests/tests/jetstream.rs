//! `apm::nats::jetstream` against the real NATS server of the machine (127.0.0.1:4222, with
//! JetStream), with the mock APM Server behind the agent: a published message is an exit span
//! whose trace context travels in the message's headers, and each message consumed is a
//! `messaging` transaction continuing that trace, in another process (the test runs its own
//! binary again as the producer); a message without trace context, or with a `traceparent` that
//! does not parse, starts a new trace and is processed as usual; ack gives `success`, nak and
//! term `failure`; a batch fetched inside a transaction is a poll span with a span link to each
//! message's trace (`specs/agents/tracing-instrumentation-messaging.md`). Every event is
//! checked against the intake schemas. Without NATS the tests say so and skip (under `CI=true`
//! they fail).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use apm::nats::jetstream::{traced, ContextExt as _, PullConsumerExt as _, TracedMessage};
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use common::agent::{self, named};
use futures_core::Stream;
use serde_json::Value;

const ADDR: &str = "127.0.0.1:4222";

/// Set for the producer process: the subject it publishes to, and where its agent sends.
const PRODUCE_TO: &str = "APM_TESTS_JETSTREAM_PRODUCE_TO";
const PRODUCER_SERVER_URL: &str = "APM_TESTS_JETSTREAM_SERVER_URL";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn context() -> jetstream::Context {
    let client = async_nats::connect(ADDR)
        .await
        .expect("a connection to NATS");
    jetstream::new(client)
}

/// A stream of this process and test only (tests run in parallel, in several processes),
/// taking the subjects `<name>.>`, with a durable pull consumer. The stream is kept in memory
/// and deleted by [`cleanup`].
async fn stream(js: &jetstream::Context, test: &str) -> (String, PullConsumer) {
    let name = format!("apm-tests-{}-{test}", std::process::id());
    let stream = js
        .create_stream(StreamConfig {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            storage: StorageType::Memory,
            max_age: Duration::from_secs(600),
            ..StreamConfig::default()
        })
        .await
        .expect("a stream");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: AckPolicy::Explicit,
            ..pull::Config::default()
        })
        .await
        .expect("a pull consumer");
    (name, consumer)
}

async fn cleanup(js: &jetstream::Context, stream: &str) {
    js.delete_stream(stream).await.expect("delete the stream");
}

/// The next message of the consumer's continuous pull, as a traced message.
async fn next(consumer: &PullConsumer) -> TracedMessage {
    let mut messages = traced(consumer.messages().await.expect("a message stream"));
    tokio::time::timeout(
        Duration::from_secs(10),
        poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)),
    )
    .await
    .expect("a message within 10 s")
    .expect("the stream is open")
    .expect("a message")
}

/// The producer's side of [`one_trace_crosses_the_stream_between_processes`], run by that
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
        let js = context().await;
        let transaction = apm::Transaction::start("produce order", "job");
        transaction
            .bind(async {
                let mut headers = HeaderMap::new();
                headers.insert("password", "secret");
                headers.insert("x-attempt", "1");
                js.publish_with_headers_traced(subject, headers, "order 7".into())
                    .await
                    .expect("publish")
                    .await
                    .expect("the stream stored the message");
            })
            .await;
    });
    assert!(
        agent.flush(Duration::from_secs(10)),
        "the producer's events were not sent"
    );
}

#[test]
fn one_trace_crosses_the_stream_between_processes() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let mut names = (String::new(), String::new());
    runtime().block_on(async {
        let js = context().await;
        let (stream, consumer) = stream(&js, "cross").await;
        let subject = format!("{stream}.orders");
        // Its output is shown only when it fails (its closing line is not this run's).
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
        let message = next(&consumer).await;
        assert_eq!(&message.payload[..], b"order 7");
        message
            .context()
            .bind(async {
                let _handling = apm::start_span("handle order", "app");
            })
            .await;
        message.ack().await.expect("ack");
        drop(message);
        cleanup(&js, &stream).await;
        names = (stream, subject);
    });
    h.flush();
    let (stream, subject) = names;

    let spans = h.spans();
    let transactions = h.transactions();
    let produce = named(&transactions, "produce order");
    let send = named(&spans, &format!("NATS SEND to {subject}"));
    assert_eq!(send["type"], "messaging", "{send:#}");
    assert_eq!(send["subtype"], "nats");
    assert_eq!(send["action"], "send");
    assert_eq!(send["outcome"], "success");
    assert_eq!(send["parent_id"], produce["id"]);
    assert_eq!(send["trace_id"], produce["trace_id"]);
    let ctx = &send["context"];
    assert_eq!(
        ctx["message"]["queue"]["name"],
        subject.as_str(),
        "{send:#}"
    );
    assert_eq!(ctx["service"]["target"]["type"], "nats");
    assert_eq!(ctx["service"]["target"]["name"], subject.as_str());
    assert_eq!(ctx["destination"]["address"], "127.0.0.1");
    assert_eq!(ctx["destination"]["port"], 4222);

    let receive = named(&transactions, &format!("NATS RECEIVE from {stream}"));
    assert_eq!(receive["type"], "messaging", "{receive:#}");
    assert_eq!(receive["outcome"], "success", "acknowledged");
    assert_eq!(receive["trace_id"], send["trace_id"], "one trace");
    assert_eq!(
        receive["parent_id"], send["id"],
        "the send span is the parent"
    );
    let message = &receive["context"]["message"];
    assert_eq!(message["queue"]["name"], stream.as_str(), "{receive:#}");
    assert_eq!(message["routing_key"], subject.as_str());
    let age = message["age"]["ms"].as_u64().expect("an age in ms");
    assert!(age < 60_000, "age {age} ms");
    let headers = &message["headers"];
    assert_eq!(
        headers["traceparent"],
        format!(
            "00-{}-{}-01",
            send["trace_id"].as_str().expect("a trace id"),
            send["id"].as_str().expect("a span id")
        )
    );
    assert_eq!(headers["password"], "[REDACTED]", "sanitize_field_names");
    assert_eq!(headers["x-attempt"], "1");
    let handling = named(&spans, "handle order");
    assert_eq!(handling["parent_id"], receive["id"], "processing is inside");
    assert_eq!(handling["transaction_id"], receive["id"]);
    h.finish();
}

#[test]
fn messages_without_a_valid_trace_context_start_new_traces_and_nak_and_term_fail() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c);
    let mut stream_name = String::new();
    runtime().block_on(async {
        let js = context().await;
        let (stream, consumer) = stream(&js, "untraced").await;
        let subject = format!("{stream}.orders");
        // Outside any transaction the traced publish adds nothing: no headers at all.
        js.publish_traced(subject.clone(), "plain".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let mut garbage = HeaderMap::new();
        garbage.insert("traceparent", "00-not-a-trace-context");
        garbage.insert("tracestate", "é,,=");
        js.publish_with_headers(subject.clone(), garbage, "garbage".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        // Outside any transaction: no poll span, a transaction per message all the same.
        let mut batch = consumer
            .fetch_traced(|fetch| fetch.max_messages(2))
            .await
            .expect("fetch");
        assert_eq!(batch.len(), 2);
        let plain = batch.next().expect("the plain message").expect("a message");
        assert_eq!(&plain.payload[..], b"plain");
        assert!(plain.headers.is_none(), "no header was added");
        plain
            .ack_with(AckKind::Progress)
            .await
            .expect("in progress");
        assert!(
            !plain.context().is_empty(),
            "in progress: the transaction goes on"
        );
        plain.ack_with(AckKind::Nak(None)).await.expect("nak");
        let garbage = batch.next().expect("the other").expect("a message");
        assert_eq!(&garbage.payload[..], b"garbage");
        garbage.ack_with(AckKind::Term).await.expect("term");
        drop((plain, garbage));
        cleanup(&js, &stream).await;
        stream_name = stream;
    });
    h.flush();

    let transactions = h.transactions();
    let name = format!("NATS RECEIVE from {stream_name}");
    let received: Vec<&Value> = transactions.iter().filter(|t| t["name"] == name).collect();
    assert_eq!(received.len(), 2, "{transactions:#?}");
    for t in &received {
        assert_eq!(t["type"], "messaging");
        assert!(t["parent_id"].is_null(), "a new trace: {t:#}");
        assert_eq!(t["outcome"], "failure", "nak and term: {t:#}");
        assert_eq!(
            t["context"]["message"]["queue"]["name"],
            stream_name.as_str()
        );
    }
    assert_ne!(received[0]["trace_id"], received[1]["trace_id"]);
    let garbage = received
        .iter()
        .find(|t| !t["context"]["message"]["headers"].is_null())
        .expect("the garbage message's transaction, with its headers");
    assert_eq!(
        garbage["context"]["message"]["headers"]["traceparent"],
        "00-not-a-trace-context"
    );
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

#[test]
fn a_batch_fetched_inside_a_transaction_links_to_each_message_trace() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let mut stream_name = String::new();
    runtime().block_on(async {
        let js = context().await;
        let (stream, consumer) = stream(&js, "batch").await;
        let subject = format!("{stream}.orders");
        // Three traces, one message each, and a message with no trace context.
        for n in 0..3 {
            let checkout = apm::Transaction::start(format!("checkout {n}"), "request");
            checkout
                .bind(async {
                    js.publish_traced(subject.clone(), "traced".into())
                        .await
                        .expect("publish")
                        .await
                        .expect("stored");
                })
                .await;
        }
        js.publish(subject.clone(), "untraced".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let poller = apm::Transaction::start("poller", "job");
        let batch = poller
            .bind(async {
                let batch = consumer
                    .fetch_traced(|fetch| fetch.max_messages(10))
                    .await
                    .expect("fetch");
                // Nothing left: a poll that brings nothing is recorded too, without links.
                let empty = consumer
                    .fetch_traced(|fetch| fetch.max_messages(10))
                    .await
                    .expect("fetch");
                assert_eq!(empty.len(), 0);
                batch
            })
            .await;
        assert_eq!(batch.len(), 4);
        for message in batch {
            let message = message.expect("a message");
            message.ack().await.expect("ack");
        }
        cleanup(&js, &stream).await;
        stream_name = stream;
    });
    h.flush();

    let spans = h.spans();
    let transactions = h.transactions();
    let poller = named(&transactions, "poller");
    let polls: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == format!("NATS POLL from {stream_name}"))
        .collect();
    assert_eq!(polls.len(), 2, "{spans:#?}");
    for poll in &polls {
        assert_eq!(poll["type"], "messaging", "{poll:#}");
        assert_eq!(poll["subtype"], "nats");
        assert_eq!(poll["action"], "poll");
        assert_eq!(poll["outcome"], "success");
        assert_eq!(poll["parent_id"], poller["id"]);
        assert_eq!(
            poll["context"]["message"]["queue"]["name"],
            stream_name.as_str()
        );
    }
    let sends: Vec<&Value> = spans.iter().filter(|s| s["action"] == "send").collect();
    assert_eq!(sends.len(), 3, "{spans:#?}");
    let mut expected: Vec<(String, String)> = sends
        .iter()
        .map(|s| (s["trace_id"].to_string(), s["id"].to_string()))
        .collect();
    expected.sort();
    let (full, empty): (Vec<&Value>, Vec<&Value>) =
        polls.iter().partition(|p| p["links"].is_array());
    assert_eq!((full.len(), empty.len()), (1, 1), "{polls:#?}");
    let mut links: Vec<(String, String)> = full[0]["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| (l["trace_id"].to_string(), l["span_id"].to_string()))
        .collect();
    links.sort();
    assert_eq!(links, expected, "a link to each traced message's send span");
    assert_ne!(
        full[0]["trace_id"], sends[0]["trace_id"],
        "links, not parents"
    );

    let received: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["name"] == format!("NATS RECEIVE from {stream_name}"))
        .collect();
    assert_eq!(received.len(), 4, "a transaction per message");
    let send_ids: Vec<&Value> = sends.iter().map(|s| &s["id"]).collect();
    let continued = received
        .iter()
        .filter(|t| send_ids.contains(&&t["parent_id"]))
        .count();
    assert_eq!(continued, 3, "each traced message continues its trace");
    assert!(received.iter().all(|t| t["outcome"] == "success"));
    h.finish();
}

#[test]
fn ignore_message_queues_leaves_matching_streams_untraced() {
    if !apm_tests::services::require("nats", ADDR) {
        return;
    }
    let h = agent::start(|c| c.ignore_message_queues(["apm-tests-*-ignored*"]));
    runtime().block_on(async {
        let js = context().await;
        let (stream, consumer) = stream(&js, "ignored").await;
        let subject = format!("{stream}.orders");
        let publisher = apm::Transaction::start("publisher", "request");
        let batch = publisher
            .bind(async {
                js.publish_traced(subject.clone(), "x".into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
                consumer
                    .fetch_traced(|fetch| fetch.max_messages(1))
                    .await
                    .expect("fetch")
            })
            .await;
        for message in batch {
            let message = message.expect("a message");
            assert!(message.headers.is_none(), "no header was added");
            assert!(message.context().is_empty(), "no transaction");
            message.ack().await.expect("ack");
        }
        cleanup(&js, &stream).await;
    });
    h.flush();
    let transactions = h.transactions();
    assert_eq!(transactions.len(), 1, "{transactions:#?}");
    assert_eq!(transactions[0]["name"], "publisher");
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}
