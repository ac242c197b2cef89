//! `apm::lapin` against the real RabbitMQ of the machine (127.0.0.1:5672, guest/guest), with the
//! mock APM Server behind the agent: a published message is an exit span whose trace context
//! travels in the message's headers, and its delivery is a `messaging` transaction continuing
//! that trace, in another process (the test runs its own binary again as the producer); a
//! message without trace context, or with a `traceparent` that does not parse, starts a new
//! trace and is processed as usual; ack gives `success`, nack and reject `failure`; a
//! cancelled publish ends its span as `unknown`; `ignore_message_queues` leaves matching
//! exchanges and queues untraced
//! (`specs/agents/tracing-instrumentation-messaging.md`). Every event is checked against the
//! intake schemas. Without RabbitMQ the tests say so and skip (under `CI=true` they fail).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apm::lapin::{ChannelExt as _, TracedDelivery};
use common::agent::{self, named};
use futures_core::Stream;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

const ADDR: &str = "127.0.0.1:5672";
const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Set for the producer process: the queue it publishes to, and where its agent sends.
const PRODUCE_TO: &str = "APM_TESTS_RABBITMQ_PRODUCE_TO";
const PRODUCER_SERVER_URL: &str = "APM_TESTS_RABBITMQ_SERVER_URL";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(URI, ConnectionProperties::default())
        .await
        .expect("a connection to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

/// A queue name of this process and test only (tests run in parallel, in several processes).
fn queue_name(test: &str) -> String {
    format!("apm-tests.{}.{test}", std::process::id())
}

/// Declares `name` (`""`: a name the broker generates), which the broker deletes a minute
/// after its last use; returns its name.
async fn declare(channel: &Channel, name: &str) -> String {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    let queue = channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
    queue.name().as_str().to_owned()
}

/// The next `n` deliveries of `queue`.
async fn consume(channel: &Channel, queue: &str, n: usize) -> Vec<Delivery> {
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let mut deliveries = Vec::new();
    while deliveries.len() < n {
        let next = tokio::time::timeout(
            Duration::from_secs(10),
            poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)),
        )
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is open")
        .expect("a delivery");
        deliveries.push(next);
    }
    deliveries
}

/// Publishes `payload` to `queue` through the default exchange, traced.
async fn publish(channel: &Channel, queue: &str, payload: &[u8]) {
    channel
        .basic_publish_traced(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// The producer's side of [`one_trace_crosses_the_queue_between_processes`], run by that
/// test in a process of its own; alone (without its environment) it does nothing.
#[test]
fn producer_process() {
    let (Ok(queue), Ok(server_url)) = (
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
        let (_connection, channel) = channel().await;
        let mut headers = FieldTable::default();
        headers.insert("password".into(), AMQPValue::LongString("secret".into()));
        headers.insert("x-attempt".into(), AMQPValue::LongInt(1));
        let properties = BasicProperties::default()
            .with_timestamp(now_secs())
            .with_headers(headers);
        let transaction = apm::Transaction::start("produce order", "job");
        transaction
            .bind(async {
                channel
                    .basic_publish_traced(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"order 7",
                        properties,
                    )
                    .await
                    .expect("basic.publish")
                    .await
                    .expect("the broker took the message");
            })
            .await;
    });
    assert!(
        agent.flush(Duration::from_secs(10)),
        "the producer's events were not sent"
    );
}

#[test]
fn one_trace_crosses_the_queue_between_processes() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let queue = queue_name("cross");
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        // Its output is shown only when it fails (its closing line is not this run's).
        let producer = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "producer_process", "--test-threads=1"])
            .env(PRODUCE_TO, &queue)
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
        let delivery = consume(&channel, &queue, 1).await.remove(0);
        let delivery = TracedDelivery::new(delivery, &queue);
        assert_eq!(delivery.data, b"order 7");
        delivery
            .context()
            .bind(async {
                let _handling = apm::start_span("handle order", "app");
            })
            .await;
        assert!(delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack"));
    });
    h.flush();

    let spans = h.spans();
    let transactions = h.transactions();
    let produce = named(&transactions, "produce order");
    let send = named(&spans, "RabbitMQ SEND to <default>");
    assert_eq!(send["type"], "messaging", "{send:#}");
    assert_eq!(send["subtype"], "rabbitmq");
    assert_eq!(send["action"], "send");
    assert_eq!(send["outcome"], "success");
    assert_eq!(send["parent_id"], produce["id"]);
    assert_eq!(send["trace_id"], produce["trace_id"]);
    let ctx = &send["context"];
    assert_eq!(ctx["message"]["queue"]["name"], "<default>", "{send:#}");
    assert_eq!(ctx["service"]["target"]["type"], "rabbitmq");
    assert_eq!(ctx["service"]["target"]["name"], "<default>");
    assert_eq!(
        ctx["destination"]["service"]["resource"],
        "rabbitmq/<default>"
    );

    let receive = named(&transactions, &format!("RabbitMQ RECEIVE from {queue}"));
    assert_eq!(receive["type"], "messaging", "{receive:#}");
    assert_eq!(receive["outcome"], "success");
    assert_eq!(receive["trace_id"], send["trace_id"], "one trace");
    assert_eq!(
        receive["parent_id"], send["id"],
        "the send span is the parent"
    );
    let message = &receive["context"]["message"];
    assert_eq!(message["queue"]["name"], queue.as_str(), "{receive:#}");
    assert_eq!(message["routing_key"], queue.as_str());
    let age = message["age"]["ms"].as_u64().expect("an age in ms");
    assert!(age < 60_000, "age {age} ms");
    let headers = &message["headers"];
    let traceparent = headers["traceparent"]
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
    assert_eq!(headers["password"], "[REDACTED]", "sanitize_field_names");
    assert_eq!(headers["x-attempt"], "1");
    let handling = named(&spans, "handle order");
    assert_eq!(handling["parent_id"], receive["id"], "processing is inside");
    assert_eq!(handling["transaction_id"], receive["id"]);
    h.finish();
}

#[test]
fn messages_without_a_valid_trace_context_start_new_traces() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c);
    let queue = queue_name("untraced");
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        // Outside any transaction the traced publish adds nothing: no headers at all.
        channel
            .basic_publish_traced(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"plain",
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        let mut garbage = FieldTable::default();
        garbage.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-not-a-trace-context".into()),
        );
        garbage.insert("tracestate".into(), AMQPValue::LongString("é,,=".into()));
        garbage.insert("elastic-apm-traceparent".into(), AMQPValue::LongInt(-1));
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"garbage",
                BasicProperties::default().with_headers(garbage),
            )
            .await
            .expect("basic.publish");
        let mut deliveries = consume(&channel, &queue, 2).await.into_iter();
        let plain = deliveries.next().expect("the plain message");
        assert_eq!(plain.properties.headers(), &None, "no header was added");
        let plain = TracedDelivery::new(plain, &queue);
        assert_eq!(plain.data, b"plain");
        assert!(plain
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack"));
        let garbage = TracedDelivery::new(deliveries.next().expect("the other"), &queue);
        assert_eq!(garbage.data, b"garbage");
        assert!(garbage
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("basic.reject"));
    });
    h.flush();

    let transactions = h.transactions();
    let name = format!("RabbitMQ RECEIVE from {queue}");
    let received: Vec<&Value> = transactions.iter().filter(|t| t["name"] == name).collect();
    assert_eq!(received.len(), 2, "{transactions:#?}");
    for t in &received {
        assert_eq!(t["type"], "messaging");
        assert!(t["parent_id"].is_null(), "a new trace: {t:#}");
        assert_eq!(t["context"]["message"]["queue"]["name"], queue.as_str());
        assert!(
            t["context"]["message"]["age"].is_null(),
            "no timestamp, no age"
        );
    }
    assert_ne!(received[0]["trace_id"], received[1]["trace_id"]);
    let garbage = received
        .iter()
        .find(|t| !t["context"]["message"]["headers"].is_null())
        .expect("the garbage message's transaction, with its headers");
    assert_eq!(garbage["outcome"], "failure", "rejected");
    assert_eq!(
        garbage["context"]["message"]["headers"]["traceparent"],
        "00-not-a-trace-context"
    );
    let plain = received
        .iter()
        .find(|t| t["context"]["message"]["headers"].is_null())
        .expect("the plain message's transaction");
    assert_eq!(plain["outcome"], "success", "acknowledged");
    assert!(
        h.spans().is_empty(),
        "nothing published inside a transaction"
    );
    h.finish();
}

#[test]
fn each_delivery_continues_its_own_send_span_and_nack_is_a_failure() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let exchange = queue_name("orders-exchange");
    let mut queue = String::new();
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange.declare");
        // A name the broker generates: transactions are named `amq.gen-*`.
        queue = declare(&channel, "").await;
        assert!(queue.starts_with("amq.gen-"), "{queue}");
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "new".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
        let checkout = apm::Transaction::start("checkout", "request");
        checkout
            .bind(async {
                for body in [b"first", b"other"] {
                    channel
                        .basic_publish_traced(
                            exchange.as_str().into(),
                            "new".into(),
                            BasicPublishOptions::default(),
                            body,
                            BasicProperties::default(),
                        )
                        .await
                        .expect("basic.publish");
                }
            })
            .await;
        let mut deliveries = consume(&channel, &queue, 2).await.into_iter();
        let first = TracedDelivery::new(deliveries.next().expect("first"), &queue);
        assert_eq!(first.data, b"first");
        assert!(first
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack"));
        let other = TracedDelivery::new(deliveries.next().expect("other"), &queue);
        assert_eq!(other.data, b"other");
        let nack = BasicNackOptions {
            requeue: false,
            ..BasicNackOptions::default()
        };
        assert!(other.nack(nack).await.expect("basic.nack"));
    });
    h.flush();

    let spans = h.spans();
    let transactions = h.transactions();
    let checkout = named(&transactions, "checkout");
    let sends: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == format!("RabbitMQ SEND to {exchange}"))
        .collect();
    assert_eq!(sends.len(), 2, "{spans:#?}");
    for send in &sends {
        assert_eq!(send["parent_id"], checkout["id"]);
        assert_eq!(
            send["context"]["message"]["queue"]["name"],
            exchange.as_str()
        );
        assert_eq!(
            send["context"]["service"]["target"]["name"],
            exchange.as_str()
        );
        assert_eq!(send["outcome"], "success");
    }
    let received: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["name"] == "RabbitMQ RECEIVE from amq.gen-*")
        .collect();
    assert_eq!(received.len(), 2, "{transactions:#?}");
    // Transactions are sent as they end: the acknowledged one first.
    let (first, other) = (received[0], received[1]);
    for (t, outcome) in [(first, "success"), (other, "failure")] {
        assert_eq!(t["outcome"], outcome, "{t:#}");
        assert_eq!(t["trace_id"], checkout["trace_id"]);
        let message = &t["context"]["message"];
        assert_eq!(message["queue"]["name"], queue.as_str(), "the real name");
        assert_eq!(message["routing_key"], "new");
    }
    // Each delivery's parent is the span of its own publish.
    let parents: Vec<&Value> = received.iter().map(|t| &t["parent_id"]).collect();
    let send_ids: Vec<&Value> = sends.iter().map(|s| &s["id"]).collect();
    assert_ne!(parents[0], parents[1]);
    for p in parents {
        assert!(send_ids.contains(&p), "{p} not a send span");
    }
    h.finish();
}

/// Past `transaction_max_spans`, messages sent are not spans but are counted in the
/// transaction's `dropped_spans_stats` (service target `rabbitmq` and the exchange), and
/// still carry the trace context.
#[test]
fn messages_sent_past_the_span_limit_are_counted_in_dropped_spans_stats() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.transaction_max_spans(1).span_compression_enabled(false));
    let queue = queue_name("over_limit");
    let trace_id = runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        let transaction = apm::Transaction::start("sending", "request");
        let trace_id = transaction.trace_id().expect("a trace id");
        transaction
            .bind(async {
                for _ in 0..4 {
                    publish(&channel, &queue, b"x").await;
                }
            })
            .await;
        for delivery in consume(&channel, &queue, 4).await {
            let headers = delivery.properties.headers().clone().expect("headers");
            let Some(AMQPValue::LongString(traceparent)) = headers.inner().get("traceparent")
            else {
                panic!("no traceparent in {headers:?}");
            };
            let traceparent = String::from_utf8_lossy(traceparent.as_bytes()).into_owned();
            assert!(
                traceparent.starts_with(&format!("00-{trace_id}-")),
                "{traceparent}"
            );
            delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("basic.ack");
        }
        trace_id
    });
    h.flush();
    assert_eq!(h.spans().len(), 1, "{:#?}", h.spans());
    let txn = named(&h.transactions(), "sending").clone();
    assert_eq!(txn["trace_id"], trace_id.as_str());
    assert_eq!(txn["span_count"]["dropped"], 3, "{txn:#}");
    let target = ("rabbitmq", Some("<default>"));
    let count = agent::the_dropped_stat(&txn, target, "rabbitmq/<default>", "success");
    assert_eq!(count, 3);
    h.finish();
}

#[test]
fn an_unsampled_transaction_propagates_without_recording_a_span() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.transaction_sample_rate(0.0));
    let queue = queue_name("unsampled");
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        let transaction = apm::Transaction::start("unsampled", "request");
        let trace_id = transaction.trace_id().expect("a trace id");
        transaction
            .bind(async {
                channel
                    .basic_publish_traced(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await
                    .expect("basic.publish");
            })
            .await;
        let delivery = consume(&channel, &queue, 1).await.remove(0);
        let headers = delivery.properties.headers().clone().expect("headers");
        let Some(AMQPValue::LongString(traceparent)) = headers.inner().get("traceparent") else {
            panic!("no traceparent in {headers:?}");
        };
        let traceparent = String::from_utf8_lossy(traceparent.as_bytes()).into_owned();
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")) && traceparent.ends_with("-00"),
            "{traceparent}"
        );
        let delivery = TracedDelivery::new(delivery, &queue);
        assert!(
            !delivery.transaction().is_sampled(),
            "the producer's decision"
        );
        delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack");
    });
    h.flush();
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

#[test]
fn ignore_message_queues_leaves_matching_exchanges_and_queues_untraced() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    // Case-insensitive wildcards; the default exchange is `<default>` there too.
    let h = agent::start(|c| c.ignore_message_queues(["*.IGNORED", "<Default>"]));
    let queue = queue_name("ignored");
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        let publisher = apm::Transaction::start("publisher", "request");
        publisher
            .bind(async {
                channel
                    .basic_publish_traced(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await
                    .expect("basic.publish");
            })
            .await;
        let delivery = consume(&channel, &queue, 1).await.remove(0);
        assert_eq!(delivery.properties.headers(), &None, "no header was added");
        let delivery = TracedDelivery::new(delivery, &queue);
        assert!(delivery.context().is_empty(), "no transaction");
        delivery
            .context()
            .bind(async {
                let _handling = apm::start_span("handle", "app");
            })
            .await;
        assert!(delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack"));
    });
    h.flush();
    let transactions = h.transactions();
    assert_eq!(transactions.len(), 1, "{transactions:#?}");
    assert_eq!(transactions[0]["name"], "publisher");
    assert!(h.spans().is_empty(), "{:#?}", h.spans());
    h.finish();
}

#[test]
fn a_dropped_publish_future_ends_its_span_as_unknown() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let queue = queue_name("dropped");
    runtime().block_on(async {
        let (_connection, channel) = channel().await;
        declare(&channel, &queue).await;
        let transaction = apm::Transaction::start("cancelled", "request");
        transaction
            .bind(async {
                let publish = channel.basic_publish_traced(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"never sent",
                    BasicProperties::default(),
                );
                // Cancelled before it ran, as a timeout or a `select!` would.
                drop(publish);
            })
            .await;
    });
    h.flush();
    let spans = h.spans();
    let send = named(&spans, "RabbitMQ SEND to <default>");
    assert_eq!(send["outcome"], "unknown", "{send:#}");
    assert_eq!(
        send["parent_id"],
        named(&h.transactions(), "cancelled")["id"]
    );
    h.finish();
}

#[test]
fn channels_of_the_connect_helper_give_send_spans_the_broker_address() {
    if !apm_tests::services::require("rabbitmq", ADDR) {
        return;
    }
    let h = agent::start(|c| c.span_compression_enabled(false));
    let queue = queue_name("destination");
    runtime().block_on(async {
        let connection = apm::lapin::connect(URI, ConnectionProperties::default())
            .await
            .expect("a connection to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        declare(&channel, &queue).await;
        let (_plain_connection, plain_channel) = self::channel().await;
        let transaction = apm::Transaction::start("publisher", "request");
        transaction
            .bind(async {
                channel
                    .basic_publish_traced(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await
                    .expect("basic.publish");
                plain_channel
                    .basic_publish_traced(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"y",
                        BasicProperties::default(),
                    )
                    .await
                    .expect("basic.publish");
            })
            .await;
        let deliveries = consume(&channel, &queue, 2).await;
        for delivery in deliveries {
            TracedDelivery::new(delivery, &queue)
                .ack(BasicAckOptions::default())
                .await
                .expect("basic.ack");
        }
    });
    h.flush();
    let spans = h.spans();
    let mut sends: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "RabbitMQ SEND to <default>")
        .collect();
    assert_eq!(sends.len(), 2, "{spans:#?}");
    // The helper's channel published first.
    sends.sort_by_key(|s| s["timestamp"].as_u64());
    let (helper, plain) = (sends[0], sends[1]);
    let destination = &helper["context"]["destination"];
    assert_eq!(destination["address"], "127.0.0.1", "{helper:#}");
    assert_eq!(destination["port"], 5672);
    assert_eq!(destination["service"]["resource"], "rabbitmq/<default>");
    let destination = &plain["context"]["destination"];
    assert!(destination["address"].is_null(), "{plain:#}");
    assert!(destination["port"].is_null());
    assert_eq!(destination["service"]["resource"], "rabbitmq/<default>");
    h.finish();
}
