//! The cost per message of the messaging integrations, next to the same client untraced, in
//! one run: RabbitMQ (lapin, 127.0.0.1:5672) and core NATS (async-nats, 127.0.0.1:4222); a
//! broker that does not answer is skipped with a message.
//!
//! For each broker, two measurements:
//! - publish: `bare` (the client's own publish), for NATS `bare_with_trace_headers` (the
//!   client's own publish carrying the headers a traced publish adds, built once: what
//!   propagation costs the client itself), `traced_outside_transaction` (the traced
//!   publish with no transaction: the wrapper's check only), `traced_sampled` (inside sampled
//!   transactions of 100 messages: an exit span per message, its trace context written into
//!   the message's headers, serialised and shipped by the transport to a local APM Server).
//!   Messages go where no queue or subscriber takes them (RabbitMQ's `amq.direct` with a
//!   routing key nothing binds; a NATS subject nobody subscribes to), so nothing piles up;
//! - consume: `bare` (take the next message, and acknowledge it for RabbitMQ) and `traced` (the
//!   same with a `messaging` transaction per message: `TracedDelivery::new` and its `ack`,
//!   `apm::nats::receive` and its end). Each round first publishes its messages untimed.
//!
//! One current-thread tokio runtime, so the client's own tasks run on the measuring thread
//! too, for both variants alike. Variants run round-robin (rounds of each in turn, the first
//! thrown away): the medians of wall time and of the thread's CPU time per message, and what
//! each variant adds to `bare`, printed as tables.
//!
//! `cargo bench -p apm-benches --bench messaging`; the figures are in `BENCHMARKS.md`.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::time::{Duration, Instant};

use apm::lapin::{ChannelExt as _, TracedDelivery};
use apm::nats::ClientExt as _;
use apm_tests::MockServer;
use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

const RABBITMQ: &str = "127.0.0.1:5672";
const RABBITMQ_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NATS: &str = "127.0.0.1:4222";
const PAYLOAD: &[u8] = b"order 7: two items, express delivery";

/// Messages per transaction in the sampled variants.
const PER_TRANSACTION: u64 = 100;
/// Messages per round.
const MESSAGES: u64 = 1_000;
/// Rounds of each variant (one more is run first and thrown away).
const ROUNDS: usize = 21;

/// What one round of a variant measured: wall time and the thread's CPU time.
type Measured = (Duration, Duration);

/// Times `fut` on `rt`: wall time and this thread's CPU time.
fn timed(rt: &tokio::runtime::Runtime, fut: impl Future<Output = ()>) -> Measured {
    let (start, cpu) = (Instant::now(), apm_benches::thread_cpu_time());
    rt.block_on(fut);
    (
        start.elapsed(),
        apm_benches::thread_cpu_time().saturating_sub(cpu),
    )
}

/// Runs the variants round-robin, [`MESSAGES`] messages a round, and prints the medians per
/// message and what each variant adds to the first.
fn round_robin(what: &str, variants: &mut [(&str, &mut dyn FnMut() -> Measured)]) {
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=ROUNDS {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            let (w, c) = run();
            if round > 0 {
                wall[i].push(w.as_nanos() as f64 / MESSAGES as f64);
                cpu[i].push(c.as_nanos() as f64 / MESSAGES as f64);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wall: Vec<f64> = wall.iter_mut().map(median).collect();
    let cpu: Vec<f64> = cpu.iter_mut().map(median).collect();
    println!(
        "\n## {what}: round-robin, {ROUNDS} rounds of {MESSAGES} messages per variant (medians)\n"
    );
    println!("| variant | wall µs/message | × bare | thread CPU µs/message | CPU added to bare |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.3}× | {:.2} | {:+.2} µs |",
            wall[i] / 1000.0,
            wall[i] / wall[0],
            cpu[i] / 1000.0,
            (cpu[i] - cpu[0]) / 1000.0,
        );
    }
}

fn reachable(name: &str, addr: &str) -> bool {
    let ok = addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !ok {
        eprintln!("messaging/{name}: nothing answers at {addr}; skipped");
    }
    ok
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx))
        .await
        .expect("the stream is open")
}

/// `n` messages in sampled transactions of [`PER_TRANSACTION`], each sent by `send`.
async fn in_transactions<F: Future>(n: u64, mut send: impl FnMut() -> F) {
    let mut left = n;
    while left > 0 {
        let batch = left.min(PER_TRANSACTION);
        let transaction = apm::Transaction::start("bench", "custom");
        transaction
            .bind(async {
                for _ in 0..batch {
                    black_box(send().await);
                }
            })
            .await;
        left -= batch;
    }
}

fn rabbitmq(rt: &tokio::runtime::Runtime) {
    if !reachable("rabbitmq", RABBITMQ) {
        return;
    }
    let (_connection, channel) = rt.block_on(async {
        let connection = Connection::connect(RABBITMQ_URI, ConnectionProperties::default())
            .await
            .expect("a connection to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        (connection, channel)
    });
    let publish = |traced: bool| {
        let channel = &channel;
        move || async move {
            let (exchange, key) = ("amq.direct".into(), "apm-bench-nowhere".into());
            let options = BasicPublishOptions::default();
            let properties = BasicProperties::default();
            if traced {
                channel
                    .basic_publish_traced(exchange, key, options, PAYLOAD, properties)
                    .await
            } else {
                channel
                    .basic_publish(exchange, key, options, PAYLOAD, properties)
                    .await
            }
            .expect("basic.publish");
        }
    };
    round_robin(
        "messaging/rabbitmq publish",
        &mut [
            ("bare", &mut || {
                let send = publish(false);
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        send().await;
                    }
                })
            }),
            ("traced_outside_transaction", &mut || {
                let send = publish(true);
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        send().await;
                    }
                })
            }),
            ("traced_sampled", &mut || {
                timed(rt, in_transactions(MESSAGES, publish(true)))
            }),
        ],
    );

    let queue = format!("apm-bench.{}", std::process::id());
    let mut consumer = rt.block_on(async {
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .expect("queue.declare");
        channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic.consume")
    });
    // The round's messages, published untimed, each with a sender's trace context (which the
    // bare consumer does not read).
    let fill = || {
        rt.block_on(async {
            let transaction = apm::Transaction::start("producer", "custom");
            let mut headers = FieldTable::default();
            transaction
                .context()
                .inject(&mut |name: &'static str, value: &str| {
                    headers.insert(name.into(), AMQPValue::LongString(value.into()));
                });
            let properties = BasicProperties::default().with_headers(headers);
            for _ in 0..MESSAGES {
                channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        PAYLOAD,
                        properties.clone(),
                    )
                    .await
                    .expect("basic.publish");
            }
        });
    };
    // Both variants take the one consumer, in turn.
    let consumer = RefCell::new(&mut consumer);
    round_robin(
        "messaging/rabbitmq consume",
        &mut [
            ("bare", &mut || {
                fill();
                let mut consumer = consumer.borrow_mut();
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        let delivery = next(&mut **consumer).await.expect("a delivery");
                        black_box(&delivery.data);
                        delivery
                            .ack(BasicAckOptions::default())
                            .await
                            .expect("basic.ack");
                    }
                })
            }),
            ("traced", &mut || {
                fill();
                let queue = queue.as_str();
                let mut consumer = consumer.borrow_mut();
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        let delivery = next(&mut **consumer).await.expect("a delivery");
                        let delivery = TracedDelivery::new(delivery, queue);
                        black_box(&delivery.data);
                        delivery
                            .ack(BasicAckOptions::default())
                            .await
                            .expect("basic.ack");
                    }
                })
            }),
        ],
    );
}

fn nats(rt: &tokio::runtime::Runtime) {
    if !reachable("nats", NATS) {
        return;
    }
    let client = rt.block_on(async { async_nats::connect(NATS).await.expect("a NATS client") });
    let nowhere = "apm-bench.nowhere";
    let publish = |traced: bool| {
        let client = &client;
        move || async move {
            if traced {
                client.publish_traced(nowhere, PAYLOAD.into()).await
            } else {
                client.publish(nowhere, PAYLOAD.into()).await
            }
            .expect("publish");
        }
    };
    // What carrying a trace context costs async-nats itself: the same headers as a traced
    // publish writes (HPUB instead of PUB), built once, without the agent.
    let mut trace_headers = async_nats::HeaderMap::new();
    trace_headers.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    trace_headers.insert("tracestate", "es=s:1");
    round_robin(
        "messaging/nats publish",
        &mut [
            ("bare", &mut || {
                let send = publish(false);
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        send().await;
                    }
                })
            }),
            ("bare_with_trace_headers", &mut || {
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        client
                            .publish_with_headers(nowhere, trace_headers.clone(), PAYLOAD.into())
                            .await
                            .expect("publish");
                    }
                })
            }),
            ("traced_outside_transaction", &mut || {
                let send = publish(true);
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        send().await;
                    }
                })
            }),
            ("traced_sampled", &mut || {
                timed(rt, in_transactions(MESSAGES, publish(true)))
            }),
        ],
    );

    let subject = format!("apm-bench.{}", std::process::id());
    let mut subscriber = rt.block_on(async {
        let subscriber = client.subscribe(subject.clone()).await.expect("subscribe");
        client.flush().await.expect("flush");
        subscriber
    });
    let fill = || {
        rt.block_on(async {
            let transaction = apm::Transaction::start("producer", "custom");
            let mut headers = async_nats::HeaderMap::new();
            transaction
                .context()
                .inject(&mut |name: &'static str, value: &str| {
                    headers.insert(name, value);
                });
            for _ in 0..MESSAGES {
                client
                    .publish_with_headers(subject.clone(), headers.clone(), PAYLOAD.into())
                    .await
                    .expect("publish");
            }
            client.flush().await.expect("flush");
        });
    };
    let subscriber = RefCell::new(&mut subscriber);
    round_robin(
        "messaging/nats consume",
        &mut [
            ("bare", &mut || {
                fill();
                let mut subscriber = subscriber.borrow_mut();
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        let message = next(&mut **subscriber).await;
                        black_box(&message.payload);
                    }
                })
            }),
            ("traced", &mut || {
                fill();
                let mut subscriber = subscriber.borrow_mut();
                timed(rt, async {
                    for _ in 0..MESSAGES {
                        let message = next(&mut **subscriber).await;
                        let transaction = apm::nats::receive(&message);
                        transaction
                            .bind(async {
                                black_box(&message.payload);
                            })
                            .await;
                    }
                })
            }),
        ],
    );
}

fn main() {
    let server = MockServer::start();
    server.set_keep_payloads(false);
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(server.url())
            .max_queue_size(64 * 1024)
            .build(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rabbitmq(&rt);
    nats(&rt);
    agent.flush(Duration::from_secs(30));
}
