//! Core NATS through [async-nats](https://docs.rs/async-nats) (feature `nats`): an exit span
//! for each message published, a transaction for each message received, and the trace context
//! carried from one to the other in the message's headers, as
//! `specs/agents/tracing-instrumentation-messaging.md` asks.
//!
//! # Publishing
//!
//! Publish with [`ClientExt::publish_traced`] (or
//! [`publish_with_headers_traced`](ClientExt::publish_with_headers_traced)) instead of
//! `Client::publish` (`publish_with_headers`): same arguments, same result. Inside a
//! transaction each message becomes an exit span:
//!
//! - type `messaging`, subtype `nats`, action `send`; name `NATS SEND to <subject>`;
//! - `context.message.queue.name` is the subject, `service.target` is `nats` with that name,
//!   and `context.destination` the address and port of the server the client is connected to
//!   (as that server announces them);
//! - the message's headers get `traceparent` (this span as the parent) and `tracestate`, next
//!   to those it already has; an unsampled transaction still propagates its context;
//! - outcome `failure` when async-nats returns an error, `success` otherwise. async-nats's
//!   publish returns when the message is queued for sending: that is what the span times. A
//!   future dropped before (cancelled) ends the span with outcome `unknown`.
//!
//! Outside any transaction, or for a subject matching `ignore_message_queues`, nothing is
//! recorded and no header is added. The application always gets async-nats's own result,
//! unchanged.
//!
//! ```no_run
//! use apm::nats::ClientExt as _;
//!
//! # async fn f(client: async_nats::Client) -> Result<(), async_nats::PublishError> {
//! client.publish_traced("orders.new", "order 7".into()).await?;
//! # Ok(()) }
//! ```
//!
//! # Receiving
//!
//! [`receive`] starts the transaction of a received message: type `messaging`, named
//! `NATS RECEIVE from <subject>`, continuing the producer's trace when the message's headers
//! carry a valid `traceparent` and starting a new trace otherwise (no headers, or headers
//! that do not parse: the message is processed the same), with the subject and the headers
//! (sent only with `capture_headers`, values of names matching `sanitize_field_names`
//! redacted) in `context.message`. Bind the processing to it: the transaction ends when that
//! future completes; set its outcome to `failure` when processing fails. A message whose
//! subject matches `ignore_message_queues` gets no transaction.
//!
//! ```no_run
//! # async fn handle(_: &[u8]) -> bool { true }
//! # async fn f(message: async_nats::Message) {
//! // For each message of a `Subscriber`:
//! let transaction = apm::nats::receive(&message);
//! let processed = transaction.bind(handle(&message.payload)).await;
//! if !processed {
//!     transaction.set_outcome(apm::Outcome::Failure);
//! }
//! # }
//! ```

use std::future::Future;
use std::str::FromStr;

use ::async_nats::{
    Client, HeaderMap, HeaderName, HeaderValue, Message, PublishError, ServerInfo, ToSubject,
};
use ::bytes::Bytes;

use super::facade::spans_recorded_here;
use super::messaging::{ignored, SendSpan};
use crate::messaging::Message as MessageContext;
use crate::{Context, HeaderSource, Span, Transaction};

#[cfg(feature = "nats-jetstream")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats-jetstream")))]
pub mod jetstream;

/// Publishes on an `async_nats::Client` with an exit span (see the
/// [module documentation](self)).
pub trait ClientExt: sealed::Sealed {
    /// Like `Client::publish`, with an exit span around the publish and the trace context in
    /// the message's headers. The span starts when this is called, in the caller's context.
    fn publish_traced<S: ToSubject>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + '_;

    /// Like `Client::publish_with_headers`, with an exit span around the publish and the
    /// trace context added to `headers`.
    fn publish_with_headers_traced<S: ToSubject>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + '_;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::async_nats::Client {}
}

impl ClientExt for Client {
    fn publish_traced<S: ToSubject>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + '_ {
        publish(self, subject, None, payload)
    }

    fn publish_with_headers_traced<S: ToSubject>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + '_ {
        publish(self, subject, Some(headers), payload)
    }
}

/// Publishes with the application's headers (if any) and the trace context.
fn publish<S: ToSubject>(
    client: &Client,
    subject: S,
    headers: Option<HeaderMap>,
    payload: Bytes,
) -> impl Future<Output = Result<(), PublishError>> + Send + '_ {
    let subject = subject.to_subject();
    let (span, headers) = start_send(&subject, headers, || client.server_info());
    let publish = async move {
        match headers {
            Some(headers) => client.publish_with_headers(subject, headers, payload).await,
            None => client.publish(subject, payload).await,
        }
    };
    async move {
        let result = publish.await;
        end_send(span, &result);
        result
    }
}

/// Starts the send span (`None` when nothing is recorded here) and adds the trace context to
/// the headers; outside any transaction the headers are left as they are. `server` tells the
/// server the client is connected to, asked only when the span records.
fn start_send(
    subject: &str,
    headers: Option<HeaderMap>,
    server: impl FnOnce() -> ServerInfo,
) -> (Option<SendSpan>, Option<HeaderMap>) {
    if Context::current().is_empty() || ignored(subject) {
        return (None, headers);
    }
    let mut headers = headers.unwrap_or_default();
    let mut sink = |name: &'static str, value: &str| {
        // The agent's own header names (valid, static): no check, no copy.
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if !spans_recorded_here() {
        // Unsampled: the context only, no span, no name built.
        crate::inject_headers(&mut sink);
        return (None, Some(headers));
    }
    let mut span = Span::start(format!("NATS SEND to {subject}"), "messaging");
    if span.is_recording() {
        span.set_subtype("nats");
        span.set_action("send");
        span.set_exit();
        span.set_message_queue(subject);
        span.set_service_target("nats", Some(subject.to_owned().into()));
        let server = server();
        let host = server.host.as_str();
        if !host.is_empty() && host != "0.0.0.0" && host != "::" {
            span.set_destination(Some(server.host), Some(server.port));
        }
    }
    span.inject(&mut sink);
    (Some(SendSpan::new(span, "nats", subject)), Some(headers))
}

/// Sets a send span's outcome from async-nats's result.
fn end_send<T, E>(span: Option<SendSpan>, result: &Result<T, E>) {
    if let Some(span) = span {
        span.end(result);
    }
}

/// Starts the transaction of a received message, continuing the trace its headers carry (see
/// the [module documentation](self)); an empty handle for a subject matching
/// `ignore_message_queues`. `Transaction::bind` runs the processing inside it and ends it.
pub fn receive(message: &Message) -> Transaction {
    let subject = message.subject.as_str();
    if ignored(subject) {
        return Transaction::default();
    }
    let transaction = Transaction::start_with(
        format!("NATS RECEIVE from {subject}"),
        "messaging",
        &NatsHeaders(message.headers.as_ref()),
    );
    if transaction.is_sampled() {
        transaction.set_message(with_headers(
            MessageContext::new(subject),
            message.headers.as_ref(),
        ));
    }
    transaction
}

/// `context.message` with a message's headers added.
fn with_headers(mut context: MessageContext, headers: Option<&HeaderMap>) -> MessageContext {
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            for value in values {
                context = context.header(name.as_ref() as &str, value.as_str());
            }
        }
    }
    context
}

/// The headers of a message as a [`HeaderSource`] (names compared case-insensitively).
#[derive(Clone, Copy)]
struct NatsHeaders<'a>(Option<&'a HeaderMap>);

impl HeaderSource for NatsHeaders<'_> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        let Some(headers) = self.0 else { return };
        for (key, values) in headers.iter() {
            let key: &str = key.as_ref();
            if key.eq_ignore_ascii_case(name) {
                for value in values {
                    each(value.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert("TraceParent", "a");
        headers.append("traceparent", "b");
        headers.insert("other", "c");
        let mut seen = Vec::new();
        NatsHeaders(Some(&headers)).header_values("traceparent", &mut |v| seen.push(v.to_owned()));
        seen.sort();
        assert_eq!(seen, ["a", "b"]);
        NatsHeaders(None).header_values("traceparent", &mut |_| panic!("no headers"));
    }
}
