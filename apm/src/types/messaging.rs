//! What a messaging integration records about the message a transaction processes
//! (`context.message` of a `messaging` transaction, `specs/agents/tracing-instrumentation-messaging.md`).
//! Headers are sanitised (`sanitize_field_names`) and sent only with `capture_headers`, on the
//! transport thread, not here.

/// A message received from a queue or topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// `context.message.queue.name`: the queue (or topic) the message was received from.
    pub queue: Option<String>,
    /// `context.message.age.ms`: how long ago the message was sent, in milliseconds.
    pub age_ms: Option<u64>,
    /// `context.message.routing_key` (RabbitMQ).
    pub routing_key: Option<String>,
    /// The message's headers (properties, attributes), in order.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// A message received from `queue`.
    pub fn new(queue: impl Into<String>) -> Message {
        Message {
            queue: Some(queue.into()),
            ..Message::default()
        }
    }

    /// Sets the message's age in milliseconds.
    pub fn age_ms(mut self, age_ms: u64) -> Message {
        self.age_ms = Some(age_ms);
        self
    }

    /// Sets the routing key.
    pub fn routing_key(mut self, routing_key: impl Into<String>) -> Message {
        self.routing_key = Some(routing_key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }
}
