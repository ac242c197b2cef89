//! JetStream through async-nats's `jetstream` module (feature `nats-jetstream`): an exit span
//! for each message published, a `messaging` transaction for each message consumed, a poll
//! span with span links for each batch fetched, as
//! `specs/agents/tracing-instrumentation-messaging.md` asks.
//!
//! # Publishing
//!
//! Publish with [`ContextExt::publish_traced`] (or
//! [`publish_with_headers_traced`](ContextExt::publish_with_headers_traced)) instead of
//! `jetstream::Context::publish` (`publish_with_headers`): same arguments, same result (the
//! `PublishAckFuture` to await for the stream's acknowledgement). Inside a transaction each
//! message becomes an exit span as on core NATS ([the parent module](super)): `NATS SEND to
//! <subject>`, type `messaging`, subtype `nats`, action `send`, the subject as
//! `context.message.queue.name` and `service.target`, the server's address and port as
//! `context.destination`, and `traceparent`/`tracestate` in the message's headers. The span
//! times the publish up to the message being queued for sending (outcome `failure` when
//! async-nats returns an error); waiting for the acknowledgement is not timed, as a RabbitMQ
//! publisher confirm is not.
//!
//! ```no_run
//! use apm::nats::jetstream::ContextExt as _;
//!
//! # async fn f(jetstream: async_nats::jetstream::Context) -> Result<(), async_nats::Error> {
//! let ack = jetstream.publish_traced("orders.new", "order 7".into()).await?;
//! ack.await?;
//! # Ok(()) }
//! ```
//!
//! # Consuming
//!
//! Wrap each message in a [`TracedMessage`] (or a consumer's message stream in [`traced`]):
//! it starts a transaction of type `messaging` named `NATS RECEIVE from <stream>`, which
//! continues the producer's trace when the message's headers carry a valid `traceparent` and
//! starts a new trace otherwise (no headers, or headers that do not parse: the message is
//! processed the same). Its `context.message` has the stream as the queue's name, the subject
//! the message was published to as `routing_key`, the message's age in milliseconds (from the
//! time the stream stored it, in the message's JetStream metadata) and the headers (sent only
//! with `capture_headers`, values of names matching `sanitize_field_names` redacted).
//!
//! The transaction ends when the message is acknowledged: `ack` (and `AckKind::Ack` or
//! `Next`) gives outcome `success` (`failure` when the server could not be told),
//! `AckKind::Nak` and `AckKind::Term` give `failure`, `AckKind::Progress` leaves it running.
//! A `TracedMessage` dropped first (a consumer with `AckPolicy::None`) ends it then.
//! Processing runs inside it through [`TracedMessage::context`].
//!
//! ```no_run
//! use apm::nats::jetstream::traced;
//! # use std::future::poll_fn;
//! # use std::pin::Pin;
//! # use futures_core::Stream;
//! # async fn handle(_: &[u8]) -> bool { true }
//!
//! # async fn f(consumer: async_nats::jetstream::consumer::PullConsumer) -> Result<(), async_nats::Error> {
//! let mut messages = traced(consumer.messages().await?);
//! while let Some(message) = poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await {
//!     let message = message?;
//!     if message.context().bind(handle(&message.payload)).await {
//!         message.ack().await?;
//!     } else {
//!         message.ack_with(async_nats::jetstream::AckKind::Nak(None)).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Batches
//!
//! [`PullConsumerExt::fetch_traced`] and [`batch_traced`](PullConsumerExt::batch_traced) run
//! a consumer's `fetch()` or `batch()` (configured by the closure) and wait for the whole
//! batch. Inside a transaction that wait is a span `NATS POLL from <stream>` (type
//! `messaging`, subtype `nats`, action `poll`, an exit span, recorded whether or not messages
//! came) with a span link to the trace context of each message that carries one (at most
//! 1 000, the spec's bound); outcome `failure` when the pull or one of its messages failed.
//! Each message of the [`TracedBatch`] then gets its own transaction, started when the
//! iterator hands it out, as above.
//!
//! ```no_run
//! use apm::nats::jetstream::PullConsumerExt as _;
//! # async fn handle(_: &[u8]) {}
//!
//! # async fn f(consumer: async_nats::jetstream::consumer::PullConsumer) -> Result<(), async_nats::Error> {
//! for message in consumer.fetch_traced(|fetch| fetch.max_messages(10)).await? {
//!     let message = message?;
//!     message.context().bind(handle(&message.payload)).await;
//!     message.ack().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Outside any transaction nothing is recorded for publishes and polls, and no header is
//! added. A subject matching `ignore_message_queues` gets no send span; a message whose stream
//! or subject matches gets no transaction, and a batch of such a stream no poll span.

use std::future::{poll_fn, Future, IntoFuture};
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use ::async_nats::jetstream::consumer::pull::{Batch, BatchBuilder, BatchError, FetchBuilder};
use ::async_nats::jetstream::consumer::PullConsumer;
use ::async_nats::jetstream::context::{PublishAckFuture, PublishError};
use ::async_nats::jetstream::{AckKind, Context as JetStream, Message};
use ::async_nats::{HeaderMap, ToSubject};
use ::bytes::Bytes;
use ::futures_core::Stream;

use super::{end_send, ignored, start_send, with_headers, MessageContext, NatsHeaders};
use crate::{Context, Outcome, Span, Transaction};

/// Publishes on a `jetstream::Context` with an exit span (see the
/// [module documentation](self)).
pub trait ContextExt: sealed::Sealed {
    /// Like `jetstream::Context::publish`, with an exit span around the publish and the trace
    /// context in the message's headers. The span starts when this is called, in the caller's
    /// context.
    fn publish_traced<S: ToSubject>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_;

    /// Like `jetstream::Context::publish_with_headers`, with an exit span around the publish
    /// and the trace context added to `headers`.
    fn publish_with_headers_traced<S: ToSubject>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_;
}

/// Fetches batches from a pull consumer with a poll span linking to each message's trace
/// (see the [module documentation](self#batches)).
pub trait PullConsumerExt: sealed::Sealed {
    /// `fetch()` configured by `configure`, then `messages()`, then the whole batch: the
    /// messages the stream has now, up to the batch's size. The span starts when this is
    /// called, in the caller's context.
    fn fetch_traced<'a>(
        &'a self,
        configure: impl FnOnce(FetchBuilder<'a>) -> FetchBuilder<'a>,
    ) -> impl Future<Output = Result<TracedBatch, BatchError>> + Send + 'a;

    /// `batch()` configured by `configure`, then `messages()`, then the whole batch: waits
    /// for the batch's size or its `expires`.
    fn batch_traced<'a>(
        &'a self,
        configure: impl FnOnce(BatchBuilder<'a>) -> BatchBuilder<'a>,
    ) -> impl Future<Output = Result<TracedBatch, BatchError>> + Send + 'a;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::async_nats::jetstream::Context {}
    impl Sealed for ::async_nats::jetstream::consumer::PullConsumer {}
}

impl ContextExt for JetStream {
    fn publish_traced<S: ToSubject>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_ {
        publish(self, subject, None, payload)
    }

    fn publish_with_headers_traced<S: ToSubject>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_ {
        publish(self, subject, Some(headers), payload)
    }
}

/// Publishes with the application's headers (if any) and the trace context.
fn publish<S: ToSubject>(
    jetstream: &JetStream,
    subject: S,
    headers: Option<HeaderMap>,
    payload: Bytes,
) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_ {
    let subject = subject.to_subject();
    let (span, headers) = start_send(&subject, headers, || jetstream.client().server_info());
    let publish = async move {
        match headers {
            Some(headers) => {
                jetstream
                    .publish_with_headers(subject, headers, payload)
                    .await
            }
            None => jetstream.publish(subject, payload).await,
        }
    };
    async move {
        let result = publish.await;
        end_send(span, &result);
        result
    }
}

impl PullConsumerExt for PullConsumer {
    fn fetch_traced<'a>(
        &'a self,
        configure: impl FnOnce(FetchBuilder<'a>) -> FetchBuilder<'a>,
    ) -> impl Future<Output = Result<TracedBatch, BatchError>> + Send + 'a {
        let span = start_poll(&self.cached_info().stream_name);
        receive_batch(span, configure(self.fetch()).messages())
    }

    fn batch_traced<'a>(
        &'a self,
        configure: impl FnOnce(BatchBuilder<'a>) -> BatchBuilder<'a>,
    ) -> impl Future<Output = Result<TracedBatch, BatchError>> + Send + 'a {
        let span = start_poll(&self.cached_info().stream_name);
        receive_batch(span, configure(self.batch()).messages())
    }
}

/// The poll span of a batch from `stream` (`None` outside any transaction or for an ignored
/// stream).
fn start_poll(stream: &str) -> Option<Span> {
    if Context::current().is_empty() || ignored(stream) {
        return None;
    }
    let mut span = Span::start(format!("NATS POLL from {stream}"), "messaging");
    if !span.is_recording() {
        return None;
    }
    span.set_subtype("nats");
    span.set_action("poll");
    span.set_exit();
    span.set_message_queue(stream);
    span.set_service_target("nats", Some(stream.to_owned().into()));
    // Until the batch is in: a poll dropped before that (cancelled) ends `unknown`.
    span.set_outcome(Outcome::Unknown);
    Some(span)
}

/// Waits for the whole batch, links the poll span to each message's trace and ends it.
fn receive_batch(
    mut span: Option<Span>,
    batch: impl IntoFuture<Output = Result<Batch, BatchError>, IntoFuture: Send>,
) -> impl Future<Output = Result<TracedBatch, BatchError>> + Send {
    let batch = batch.into_future();
    async move {
        let mut batch = match batch.await {
            Ok(batch) => batch,
            Err(error) => {
                if let Some(span) = &mut span {
                    span.set_outcome(Outcome::Failure);
                }
                return Err(error);
            }
        };
        let mut messages = Vec::new();
        while let Some(message) = poll_fn(|cx| Pin::new(&mut batch).poll_next(cx)).await {
            messages.push(message);
        }
        if let Some(span) = &mut span {
            let mut failed = false;
            for message in &messages {
                match message {
                    Ok(message) => {
                        span.add_link(&NatsHeaders(message.headers.as_ref()));
                    }
                    Err(_) => failed = true,
                }
            }
            span.set_outcome(if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
        if let Some(span) = span {
            span.end();
        }
        Ok(TracedBatch {
            messages: messages.into_iter(),
        })
    }
}

/// The messages of a batch fetched by [`PullConsumerExt`]: an iterator that starts each
/// message's transaction as it hands the message out (so that each one times its own
/// processing). async-nats's errors come through as they came.
#[derive(Debug)]
pub struct TracedBatch {
    messages: std::vec::IntoIter<Result<Message, async_nats::Error>>,
}

impl TracedBatch {
    /// The messages (and errors) not handed out yet.
    pub fn remaining(&self) -> &[Result<Message, async_nats::Error>] {
        self.messages.as_slice()
    }
}

impl Iterator for TracedBatch {
    type Item = Result<TracedMessage, async_nats::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.messages
            .next()
            .map(|message| message.map(TracedMessage::new))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.messages.size_hint()
    }
}

impl ExactSizeIterator for TracedBatch {}

/// A consumer's message stream (`messages()` of a pull or push consumer) whose messages come
/// as [`TracedMessage`]s, each starting its transaction when it comes.
pub fn traced<S>(messages: S) -> Traced<S> {
    Traced(messages)
}

/// See [`traced`]: a `Stream` of `Result<TracedMessage, E>`.
#[derive(Debug)]
pub struct Traced<S>(S);

impl<S> Traced<S> {
    /// The stream it wraps.
    pub fn into_inner(self) -> S {
        self.0
    }
}

impl<S, E> Stream for Traced<S>
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    type Item = Result<TracedMessage, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|next| next.map(|message| message.map(TracedMessage::new)))
    }
}

/// A JetStream message processed inside its own `messaging` transaction (see the
/// [module documentation](self)). It dereferences to the `jetstream::Message` (`payload`,
/// `headers`, `subject`, `info()`...). The transaction ends when the message is acknowledged
/// (or negatively, or terminated), or when this is dropped.
#[derive(Debug)]
pub struct TracedMessage {
    message: Message,
    transaction: Transaction,
}

impl TracedMessage {
    /// Starts the transaction of `message`: a child of the producer's span when the message's
    /// headers carry its trace context, else a new trace.
    pub fn new(message: Message) -> TracedMessage {
        let transaction = receive(&message);
        TracedMessage {
            message,
            transaction,
        }
    }

    /// The transaction processing this message.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// The transaction's context: `message.context().bind(fut)` runs `fut` inside the
    /// transaction, `let _in = message.context().attach();` makes it current on this thread.
    pub fn context(&self) -> Context {
        self.transaction.context()
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Acknowledges the message (`Message::ack`) and ends the transaction: outcome `success`,
    /// or `failure` when async-nats returns an error. Returns async-nats's result.
    pub async fn ack(&self) -> Result<(), async_nats::Error> {
        let result = self.message.ack().await;
        self.settle(AckKind::Ack, result.is_ok());
        result
    }

    /// `Message::ack_with`: `Ack` and `Next` end the transaction with outcome `success`
    /// (`failure` on an error), `Nak` and `Term` with `failure`; `Progress` leaves it
    /// running. Returns async-nats's result.
    pub async fn ack_with(&self, kind: AckKind) -> Result<(), async_nats::Error> {
        let result = self.message.ack_with(kind).await;
        self.settle(kind, result.is_ok());
        result
    }

    /// `Message::double_ack` (waits for the server to confirm): as [`ack`](Self::ack).
    pub async fn double_ack(&self) -> Result<(), async_nats::Error> {
        let result = self.message.double_ack().await;
        self.settle(AckKind::Ack, result.is_ok());
        result
    }

    /// `Message::double_ack_with`: as [`ack_with`](Self::ack_with).
    pub async fn double_ack_with(&self, kind: AckKind) -> Result<(), async_nats::Error> {
        let result = self.message.double_ack_with(kind).await;
        self.settle(kind, result.is_ok());
        result
    }

    fn settle(&self, kind: AckKind, told: bool) {
        if let Some(outcome) = outcome(kind, told) {
            self.transaction.set_outcome(outcome);
            self.transaction.end();
        }
    }
}

impl Deref for TracedMessage {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

impl Drop for TracedMessage {
    fn drop(&mut self) {
        self.transaction.end();
    }
}

/// The outcome an acknowledgement gives (`None`: the processing goes on); `told` is whether
/// the server could be told.
fn outcome(kind: AckKind, told: bool) -> Option<Outcome> {
    match kind {
        AckKind::Ack | AckKind::Next if told => Some(Outcome::Success),
        AckKind::Ack | AckKind::Next | AckKind::Nak(_) | AckKind::Term => Some(Outcome::Failure),
        AckKind::Progress => None,
    }
}

/// Starts the transaction of a JetStream message, continuing the trace its headers carry
/// (see the [module documentation](self)); an empty handle when its stream or subject matches
/// `ignore_message_queues`. The caller ends it (with [`Transaction::end`], after setting the
/// outcome); [`TracedMessage`] does that on acknowledgement.
pub fn receive(message: &Message) -> Transaction {
    let subject = message.subject.as_str();
    let info = message.info().ok();
    let stream = info.as_ref().map_or(subject, |info| info.stream);
    if ignored(stream) || (stream != subject && ignored(subject)) {
        return Transaction::default();
    }
    let transaction = Transaction::start_with(
        format!("NATS RECEIVE from {stream}"),
        "messaging",
        &NatsHeaders(message.headers.as_ref()),
    );
    if transaction.is_sampled() {
        let mut context = MessageContext::new(stream).routing_key(subject);
        if let Some(info) = &info {
            context = context.age_ms(age_ms(SystemTime::from(info.published), SystemTime::now()));
        }
        transaction.set_message(with_headers(context, message.headers.as_ref()));
    }
    transaction
}

/// Milliseconds from `stored` to `now`; 0 when the clocks disagree (the spec's rule).
fn age_ms(stored: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(stored)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn acknowledgements_give_the_outcome() {
        assert_eq!(outcome(AckKind::Ack, true), Some(Outcome::Success));
        assert_eq!(outcome(AckKind::Next, true), Some(Outcome::Success));
        assert_eq!(outcome(AckKind::Ack, false), Some(Outcome::Failure));
        assert_eq!(outcome(AckKind::Nak(None), true), Some(Outcome::Failure));
        assert_eq!(
            outcome(AckKind::Nak(Some(Duration::from_secs(1))), true),
            Some(Outcome::Failure)
        );
        assert_eq!(outcome(AckKind::Term, true), Some(Outcome::Failure));
        assert_eq!(outcome(AckKind::Progress, true), None);
    }

    #[test]
    fn age_is_never_negative() {
        let stored = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(age_ms(stored, stored + Duration::from_millis(250)), 250);
        assert_eq!(age_ms(stored, stored - Duration::from_millis(250)), 0);
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn publish(jetstream: &JetStream, consumer: &PullConsumer) {
            send(&jetstream.publish_traced("s", Bytes::new()));
            send(&consumer.fetch_traced(|f| f.max_messages(1)));
            send(&consumer.batch_traced(|b| b.max_messages(1)));
        }
        let _ = publish;
    }
}
