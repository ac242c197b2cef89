//! RabbitMQ through [lapin](https://docs.rs/lapin) (feature `lapin`): an exit span for each
//! message published, a transaction for each delivery consumed, and the trace context carried
//! from one to the other in the message's headers, as
//! `specs/agents/tracing-instrumentation-messaging.md` asks.
//!
//! # Publishing
//!
//! Publish with [`ChannelExt::basic_publish_traced`] instead of `Channel::basic_publish` (same
//! arguments, same result). Inside a transaction each message becomes an exit span:
//!
//! - type `messaging`, subtype `rabbitmq`, action `send`; name `RabbitMQ SEND to <exchange>`,
//!   `<default>` standing for the default exchange (`""`);
//! - `context.message.queue.name` is the exchange (in RabbitMQ a sender names no queue), and
//!   `service.target` is `rabbitmq` with that name;
//! - the message's headers get `traceparent` (this span as the parent) and `tracestate`, next
//!   to the headers it already has; an unsampled transaction still propagates its context;
//! - outcome `failure` when lapin returns an error, `success` otherwise; the span ends when
//!   `basic_publish` returns (waiting for a publisher confirm is not timed). A future dropped
//!   before that (cancelled) ends the span with outcome `unknown`.
//!
//! lapin's `Channel` does not tell which broker it is connected to: connect with
//! [`connect`] instead of `lapin::Connection::connect` (same arguments) and the channels of
//! the [`TracedConnection`] it returns are [`TracedChannel`]s, whose send spans also have the
//! broker's host and port (from the URI) as `context.destination.address` and `port`. Both
//! dereference to lapin's own types. A plain `lapin::Channel` gives spans without them.
//!
//! ```no_run
//! use apm::lapin::ChannelExt as _;
//! # use lapin::{options::BasicPublishOptions, BasicProperties, ConnectionProperties};
//!
//! # async fn f() -> lapin::Result<()> {
//! let connection = apm::lapin::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
//! let channel = connection.create_channel().await?;
//! channel
//!     .basic_publish_traced(
//!         "".into(),
//!         "orders".into(),
//!         BasicPublishOptions::default(),
//!         b"order 7",
//!         BasicProperties::default(),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Outside any transaction nothing is recorded, no header is added and nothing is allocated.
//! The same for an exchange matching `ignore_message_queues` (the default exchange is
//! `<default>` there too). The application always gets lapin's own result, unchanged.
//!
//! ```no_run
//! use apm::lapin::ChannelExt as _;
//! use lapin::{options::BasicPublishOptions, BasicProperties};
//!
//! # async fn f(channel: lapin::Channel) -> lapin::Result<()> {
//! channel
//!     .basic_publish_traced(
//!         "".into(),
//!         "orders".into(),
//!         BasicPublishOptions::default(),
//!         b"order 7",
//!         BasicProperties::default(),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Consuming
//!
//! Wrap each delivery in a [`TracedDelivery`]: it starts a transaction of type `messaging`
//! named `RabbitMQ RECEIVE from <queue>` (a queue name the broker generated, `amq.gen-…`,
//! is named `amq.gen-*`), which continues the producer's trace when the message's headers
//! carry a valid `traceparent`, and starts a new trace otherwise (no headers, or headers that
//! do not parse: the message is processed the same). Its `context.message` has the queue's
//! name, the routing key, the headers (sent only with `capture_headers`, values of names
//! matching `sanitize_field_names` redacted) and, when the message has a `timestamp`
//! property (seconds since the epoch, as AMQP has it), its age in milliseconds.
//!
//! A delivery from a queue matching `ignore_message_queues` gets no transaction (and its
//! processing records nothing). The transaction ends when the delivery is acknowledged: [`TracedDelivery::ack`] gives
//! outcome `success` (`failure` if the broker could not be told), [`TracedDelivery::nack`] and
//! [`TracedDelivery::reject`] give `failure`. A `TracedDelivery` dropped without any of them
//! (a consumer with `no_ack`) ends the transaction then. Processing runs inside the
//! transaction (so its spans are the transaction's children) through
//! [`TracedDelivery::context`].
//!
//! ```no_run
//! use lapin::options::BasicAckOptions;
//!
//! # async fn handle(_: &[u8]) {}
//! // For each delivery of the consumer of queue `orders`:
//! async fn on_delivery(delivery: lapin::message::Delivery) -> lapin::Result<()> {
//!     let delivery = apm::lapin::TracedDelivery::new(delivery, "orders");
//!     delivery.context().bind(handle(&delivery.data)).await;
//!     delivery.ack(BasicAckOptions::default()).await?;
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ::lapin::message::Delivery;
use ::lapin::options::{
    BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
};
use ::lapin::types::{AMQPValue, FieldTable, ShortString};
use ::lapin::uri::AMQPUri;
use ::lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};

use super::facade::spans_recorded_here;
use super::messaging::{ignored, SendSpan};
use crate::messaging::Message;
use crate::{Context, HeaderSource, Outcome, Span, Transaction};

/// The name of the default exchange (`""`) in span names and contexts.
const DEFAULT_EXCHANGE: &str = "<default>";

/// Publishes on a `lapin::Channel` with an exit span (see the [module documentation](self)).
pub trait ChannelExt: sealed::Sealed {
    /// Like `Channel::basic_publish`, with an exit span around the publish and the trace
    /// context in the message's headers. The span starts (and the headers are written) when
    /// this is called, in the caller's context.
    fn basic_publish_traced<'a>(
        &'a self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &'a [u8],
        properties: BasicProperties,
    ) -> impl Future<Output = ::lapin::Result<PublisherConfirm>> + Send + 'a;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::lapin::Channel {}
    impl Sealed for super::TracedChannel {}
}

impl ChannelExt for Channel {
    fn basic_publish_traced<'a>(
        &'a self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &'a [u8],
        properties: BasicProperties,
    ) -> impl Future<Output = ::lapin::Result<PublisherConfirm>> + Send + 'a {
        publish(
            self,
            None,
            exchange,
            routing_key,
            options,
            payload,
            properties,
        )
    }
}

impl ChannelExt for TracedChannel {
    fn basic_publish_traced<'a>(
        &'a self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &'a [u8],
        properties: BasicProperties,
    ) -> impl Future<Output = ::lapin::Result<PublisherConfirm>> + Send + 'a {
        let broker = self.broker.as_deref();
        publish(
            &self.channel,
            broker,
            exchange,
            routing_key,
            options,
            payload,
            properties,
        )
    }
}

/// The broker a [`TracedConnection`] connected to, as its URI names it.
#[derive(Debug)]
struct Broker {
    host: String,
    port: u16,
}

/// Connects to the broker at `uri` as `lapin::Connection::connect` does (same arguments, same
/// errors), remembering the broker's host and port for the send spans of the connection's
/// channels.
pub async fn connect(
    uri: &str,
    options: ConnectionProperties,
) -> ::lapin::Result<TracedConnection> {
    let broker = uri.parse::<AMQPUri>().ok().map(|uri| {
        Arc::new(Broker {
            host: uri.authority.host,
            port: uri.authority.port,
        })
    });
    let connection = Connection::connect(uri, options).await?;
    Ok(TracedConnection { connection, broker })
}

/// A `lapin::Connection` that knows its broker's address (see [`connect`]); it dereferences
/// to the connection.
#[derive(Debug)]
pub struct TracedConnection {
    connection: Connection,
    broker: Option<Arc<Broker>>,
}

impl TracedConnection {
    /// Like `Connection::create_channel`: a channel whose send spans name the broker.
    pub async fn create_channel(&self) -> ::lapin::Result<TracedChannel> {
        let channel = self.connection.create_channel().await?;
        Ok(TracedChannel {
            channel,
            broker: self.broker.clone(),
        })
    }

    /// The lapin connection.
    pub fn into_inner(self) -> Connection {
        self.connection
    }
}

impl Deref for TracedConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

/// A `lapin::Channel` whose send spans ([`ChannelExt`]) have the broker's address as
/// `context.destination`; it dereferences to the channel.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    channel: Channel,
    broker: Option<Arc<Broker>>,
}

impl TracedChannel {
    /// The lapin channel.
    pub fn into_inner(self) -> Channel {
        self.channel
    }
}

impl Deref for TracedChannel {
    type Target = Channel;

    fn deref(&self) -> &Channel {
        &self.channel
    }
}

/// Publishes on `channel` with the send span (see [`ChannelExt`]).
fn publish<'a>(
    channel: &'a Channel,
    broker: Option<&Broker>,
    exchange: ShortString,
    routing_key: ShortString,
    options: BasicPublishOptions,
    payload: &'a [u8],
    properties: BasicProperties,
) -> impl Future<Output = ::lapin::Result<PublisherConfirm>> + Send + 'a {
    let (span, properties) = start_send(exchange.as_str(), broker, properties);
    let publish = channel.basic_publish(exchange, routing_key, options, payload, properties);
    async move {
        let result = publish.await;
        if let Some(span) = span {
            span.end(&result);
        }
        result
    }
}

/// Starts the send span (`None` when nothing is recorded here) and writes the trace context
/// into the properties' headers; outside any transaction the properties are left as they are.
fn start_send(
    exchange: &str,
    broker: Option<&Broker>,
    properties: BasicProperties,
) -> (Option<SendSpan>, BasicProperties) {
    let exchange = exchange_name(exchange);
    if Context::current().is_empty() || ignored(exchange) {
        return (None, properties);
    }
    let mut headers = properties.headers().clone().unwrap_or_default();
    let mut sink = |name: &'static str, value: &str| {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    };
    if !spans_recorded_here() {
        // Unsampled: the context only, no span, no name built.
        crate::inject_headers(&mut sink);
        return (None, properties.with_headers(headers));
    }
    let mut span = Span::start(format!("RabbitMQ SEND to {exchange}"), "messaging");
    if span.is_recording() {
        span.set_subtype("rabbitmq");
        span.set_action("send");
        span.set_exit();
        span.set_message_queue(exchange);
        span.set_service_target("rabbitmq", Some(exchange.to_owned().into()));
        if let Some(broker) = broker {
            span.set_destination(Some(broker.host.clone()), Some(broker.port));
        }
    }
    span.inject(&mut sink);
    let send = SendSpan::new(span, "rabbitmq", exchange);
    (Some(send), properties.with_headers(headers))
}

/// The exchange as span names and contexts show it.
fn exchange_name(exchange: &str) -> &str {
    if exchange.is_empty() {
        DEFAULT_EXCHANGE
    } else {
        exchange
    }
}

/// The queue as a transaction name shows it: names the broker generates (`amq.gen-…`) are
/// all `amq.gen-*`, so that they do not make a name each.
fn queue_name(queue: &str) -> &str {
    if queue.starts_with("amq.gen-") {
        "amq.gen-*"
    } else {
        queue
    }
}

/// A delivery processed inside its own `messaging` transaction (see the
/// [module documentation](self)). It dereferences to the `lapin::message::Delivery` (`data`,
/// `properties`, `routing_key`...). The transaction ends on [`ack`](Self::ack),
/// [`nack`](Self::nack), [`reject`](Self::reject), or when this is dropped.
#[derive(Debug)]
pub struct TracedDelivery {
    delivery: Delivery,
    transaction: Transaction,
}

impl TracedDelivery {
    /// Starts the transaction of `delivery`, received from `queue`: a child of the producer's
    /// span when the message's headers carry its trace context, else a new trace.
    pub fn new(delivery: Delivery, queue: &str) -> TracedDelivery {
        let transaction = receive(&delivery, queue);
        TracedDelivery {
            delivery,
            transaction,
        }
    }

    /// The transaction processing this delivery.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// The transaction's context: `delivery.context().bind(fut)` runs `fut` inside the
    /// transaction, `let _in = delivery.context().attach();` makes it current on this thread.
    pub fn context(&self) -> Context {
        self.transaction.context()
    }

    /// The delivery.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Acknowledges the delivery (`Acker::ack`) and ends the transaction: outcome `success`,
    /// or `failure` when lapin returns an error. Returns lapin's result.
    pub async fn ack(&self, options: BasicAckOptions) -> ::lapin::Result<bool> {
        let result = self.delivery.acker.ack(options).await;
        self.finish(if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        result
    }

    /// Negatively acknowledges the delivery (`Acker::nack`) and ends the transaction with
    /// outcome `failure`. Returns lapin's result.
    pub async fn nack(&self, options: BasicNackOptions) -> ::lapin::Result<bool> {
        let result = self.delivery.acker.nack(options).await;
        self.finish(Outcome::Failure);
        result
    }

    /// Rejects the delivery (`Acker::reject`) and ends the transaction with outcome
    /// `failure`. Returns lapin's result.
    pub async fn reject(&self, options: BasicRejectOptions) -> ::lapin::Result<bool> {
        let result = self.delivery.acker.reject(options).await;
        self.finish(Outcome::Failure);
        result
    }

    fn finish(&self, outcome: Outcome) {
        self.transaction.set_outcome(outcome);
        self.transaction.end();
    }
}

impl Deref for TracedDelivery {
    type Target = Delivery;

    fn deref(&self) -> &Delivery {
        &self.delivery
    }
}

impl Drop for TracedDelivery {
    fn drop(&mut self) {
        self.transaction.end();
    }
}

/// Starts the transaction of a delivery received from `queue`, continuing the trace its
/// headers carry (see the [module documentation](self)). The caller ends it (with
/// [`Transaction::end`], after setting the outcome); [`TracedDelivery`] does that on
/// acknowledgement.
pub fn receive(delivery: &Delivery, queue: &str) -> Transaction {
    if ignored(queue) {
        return Transaction::default();
    }
    let headers = AmqpHeaders(delivery.properties.headers().as_ref());
    let transaction = Transaction::start_with(
        format!("RabbitMQ RECEIVE from {}", queue_name(queue)),
        "messaging",
        &headers,
    );
    if transaction.is_sampled() {
        transaction.set_message(message(delivery, queue));
    }
    transaction
}

/// `context.message` of a delivery.
fn message(delivery: &Delivery, queue: &str) -> Message {
    let mut message = Message::new(queue).routing_key(delivery.routing_key.as_str());
    if let Some(sent) = *delivery.properties.timestamp() {
        message = message.age_ms(age_ms(sent, SystemTime::now()));
    }
    if let Some(headers) = delivery.properties.headers() {
        for (name, value) in headers.inner() {
            if let Some(value) = header_text(value) {
                message = message.header(name.as_str(), value);
            }
        }
    }
    message
}

/// Milliseconds from `sent` (seconds since the epoch) to `now`; 0 when the clocks disagree
/// (a timestamp in the future), as the spec says.
fn age_ms(sent: u64, now: SystemTime) -> u64 {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    now_ms.saturating_sub(sent.saturating_mul(1000))
}

/// A header's value as text: strings (lossily when not UTF-8), numbers and booleans; `None`
/// for tables, arrays and byte arrays.
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(v) => v.to_string(),
        AMQPValue::ShortShortInt(v) => v.to_string(),
        AMQPValue::ShortShortUInt(v) => v.to_string(),
        AMQPValue::ShortInt(v) => v.to_string(),
        AMQPValue::ShortUInt(v) => v.to_string(),
        AMQPValue::LongInt(v) => v.to_string(),
        AMQPValue::LongUInt(v) => v.to_string(),
        AMQPValue::LongLongInt(v) => v.to_string(),
        AMQPValue::Float(v) => v.to_string(),
        AMQPValue::Double(v) => v.to_string(),
        AMQPValue::Timestamp(v) => v.to_string(),
        _ => return None,
    })
}

/// The headers of a message as a [`HeaderSource`]: string values only (`traceparent` is one).
struct AmqpHeaders<'a>(Option<&'a FieldTable>);

impl HeaderSource for AmqpHeaders<'_> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        let Some(headers) = self.0 else { return };
        for (key, value) in headers.inner() {
            if !key.as_str().eq_ignore_ascii_case(name) {
                continue;
            }
            match value {
                AMQPValue::LongString(s) => {
                    if let Ok(s) = std::str::from_utf8(s.as_bytes()) {
                        each(s);
                    }
                }
                AMQPValue::ShortString(s) => each(s.as_str()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_show_the_default_exchange_and_generated_queues_as_the_spec_says() {
        assert_eq!(exchange_name(""), "<default>");
        assert_eq!(exchange_name("orders"), "orders");
        assert_eq!(queue_name("amq.gen-JzTY20BRgKO-HjmUJj0wLg"), "amq.gen-*");
        assert_eq!(queue_name("orders"), "orders");
    }

    #[test]
    fn age_is_from_the_timestamp_and_never_negative() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(age_ms(1_700_000_000, now), 250);
        assert_eq!(age_ms(1_699_999_998, now), 2_250);
        assert_eq!(age_ms(1_700_000_001, now), 0);
        assert_eq!(age_ms(u64::MAX, now), 0);
    }

    #[test]
    fn headers_are_read_case_insensitively_and_as_text() {
        let mut table = FieldTable::default();
        table.insert("TraceParent".into(), AMQPValue::LongString("a".into()));
        table.insert("n".into(), AMQPValue::LongInt(7));
        table.insert("bytes".into(), AMQPValue::LongString(vec![0xff].into()));
        let headers = AmqpHeaders(Some(&table));
        let mut seen = Vec::new();
        headers.header_values("traceparent", &mut |v| seen.push(v.to_owned()));
        headers.header_values("n", &mut |v| seen.push(v.to_owned()));
        headers.header_values("bytes", &mut |v| seen.push(v.to_owned()));
        assert_eq!(seen, ["a"]);
        AmqpHeaders(None).header_values("traceparent", &mut |_| panic!("no headers"));
        assert_eq!(header_text(&AMQPValue::LongInt(7)).as_deref(), Some("7"));
        assert_eq!(header_text(&AMQPValue::Void), None);
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn publish(channel: &Channel) {
            send(&channel.basic_publish_traced(
                "".into(),
                "q".into(),
                BasicPublishOptions::default(),
                b"",
                BasicProperties::default(),
            ));
        }
        let _ = publish;
    }
}
