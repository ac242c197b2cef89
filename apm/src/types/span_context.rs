//! What an exit span says about the service it calls: `context.http`, `context.db`,
//! `context.message`, and a `service.target` set explicitly. What is inferred from them is the
//! transport thread's business (`export::encode::service_target`).

use std::borrow::Cow;

use super::outcome::LabelValue;
use super::raw_stack::RawStack;

/// Labels as they are recorded: keys as given (sanitised when written), values typed.
pub(crate) type Labels = Vec<(Cow<'static, str>, LabelValue)>;

/// The optional parts of a span: labels and exit-span context. Boxed in the record, so plain
/// spans carry one null pointer.
#[derive(Debug, Default)]
pub(crate) struct SpanExtra {
    pub(crate) labels: Labels,
    /// The span calls another service (an exit span).
    pub(crate) exit: bool,
    /// Its trace context was written into an outgoing call: it can be neither compressed nor
    /// dropped as a fast exit span (the callee's spans name it as their parent).
    pub(crate) propagated: bool,
    /// Several spans compressed into this one (set on the transport thread).
    pub(crate) composite: Option<Composite>,
    pub(crate) http: Option<Http>,
    pub(crate) db: Option<Db>,
    pub(crate) message: Option<Message>,
    /// `context.destination` address and port, set explicitly (a database's host); otherwise
    /// taken from an HTTP span's URL.
    pub(crate) destination: Option<Destination>,
    /// Set explicitly: inference does not override it.
    pub(crate) target_type: Option<Cow<'static, str>>,
    pub(crate) target_name: Option<Cow<'static, str>>,
    /// Where a span that lasted `span_stack_trace_min_duration` or longer ended.
    pub(crate) stack: Option<RawStack>,
    /// Span links: the traces of the messages a batch receive brought (at most
    /// [`MAX_LINKS`]).
    pub(crate) links: Vec<Link>,
    /// `destination.service.resource` is the target's name alone (`host:port`), not
    /// `type/name`: the OpenTelemetry bridge's HTTP and RPC spans.
    #[cfg(feature = "opentelemetry")]
    pub(crate) name_only_resource: bool,
    /// `otel.span_kind` and `otel.attributes` of a span made through the OpenTelemetry API.
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel: Option<Box<Otel>>,
    /// Empty strings with room, from the labels of the span these parts served before: the
    /// thread that takes them for another span keeps them for the texts it records
    /// (`queue/spare.rs`). Never sent.
    pub(crate) spent_texts: Vec<String>,
}

/// A spare span's labels' vector is kept with its room up to this many labels.
const SPARE_LABELS_MAX: usize = 16;
/// Strings a spare span's parts bring back at most, each with room for this many bytes at most.
#[cfg(feature = "tracing")]
pub(crate) const SPENT_TEXTS_MAX: usize = 4;
#[cfg(feature = "tracing")]
const SPENT_TEXT_BYTES_MAX: usize = 256;

impl SpanExtra {
    /// Empties these parts for another span (the transport thread, once the span is written):
    /// everything is dropped but the labels' vector's room and a few of their strings, kept in
    /// [`SpanExtra::spent_texts`].
    pub(crate) fn empty_for_reuse(&mut self) {
        let mut labels = std::mem::take(&mut self.labels);
        let mut spent_texts = std::mem::take(&mut self.spent_texts);
        spent_label_texts(&mut labels, &mut spent_texts);
        labels.clear();
        if labels.capacity() > SPARE_LABELS_MAX {
            labels = Vec::new();
        }
        *self = SpanExtra {
            labels,
            spent_texts,
            ..SpanExtra::default()
        };
    }
}

/// Moves the strings of `labels`' texts into `texts`, emptied, up to [`SPENT_TEXTS_MAX`].
#[cfg(feature = "tracing")]
fn spent_label_texts(labels: &mut Labels, texts: &mut Vec<String>) {
    for (_, value) in labels.drain(..) {
        if texts.len() == SPENT_TEXTS_MAX {
            break;
        }
        if let LabelValue::Str(Cow::Owned(mut text)) = value {
            if text.capacity() <= SPENT_TEXT_BYTES_MAX {
                text.clear();
                texts.push(text);
            }
        }
    }
}

/// Only the `tracing` bridge records texts into spare strings: without it, none are kept.
#[cfg(not(feature = "tracing"))]
fn spent_label_texts(_: &mut Labels, _: &mut Vec<String>) {}

/// What a span or transaction made through the OpenTelemetry API sends as it was given: its
/// kind, and its attributes as the application set them (written out on the transport
/// thread).
#[cfg(feature = "opentelemetry")]
#[derive(Debug)]
pub(crate) struct Otel {
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER` or `CONSUMER`.
    pub(crate) span_kind: &'static str,
    pub(crate) attributes: Vec<opentelemetry::KeyValue>,
}

/// The most span links one span carries (`specs/agents/tracing-instrumentation-messaging.md`:
/// a guard on the cost of huge batches).
pub(crate) const MAX_LINKS: usize = 1000;

#[derive(Debug, Default)]
pub(crate) struct Http {
    pub(crate) method: Option<Cow<'static, str>>,
    pub(crate) url: Option<String>,
    pub(crate) status_code: Option<u16>,
}

#[derive(Debug, Default)]
pub(crate) struct Db {
    pub(crate) kind: Option<Cow<'static, str>>,
    pub(crate) instance: Option<String>,
    pub(crate) statement: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) rows_affected: Option<u64>,
    /// An Oracle-style database link the statement goes through.
    pub(crate) link: Option<String>,
}

/// What a composite span stands for: `count` consecutive exit spans of one kind, whose own
/// durations add up to `sum_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Composite {
    pub(crate) count: u32,
    pub(crate) sum_ns: u64,
    /// `true`: `exact_match` (same name); `false`: `same_kind`.
    pub(crate) exact_match: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Destination {
    pub(crate) address: Option<String>,
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Default)]
pub(crate) struct Message {
    pub(crate) queue: Option<String>,
}

/// A span link: a span of another trace a transaction or span relates to (a restarted trace
/// points at the caller's; a batch receive at each message's sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
}
