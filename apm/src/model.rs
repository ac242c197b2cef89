//! The intake v2 wire format: records turned into NDJSON lines, on the transport thread only.
//!
//! Serialisation goes straight from the records through borrowed views (no intermediate
//! `serde_json::Value`). Keyword fields are cut to 1024 characters and long text fields to
//! 10 000, ending in `…`, as the agent spec says.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::clock;
use crate::ids::hex;
use crate::record::{ErrorRecord, Labels, MetricsetRecord, SpanRecord, TransactionRecord};
use crate::LabelValue;

pub(crate) const KEYWORD_LIMIT: usize = 1024;
pub(crate) const LONG_LIMIT: usize = 10_000;

/// `text` cut to `limit` characters, the last one replaced by `…` when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> Cow<'_, str> {
    match text.char_indices().nth(limit) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let cut = text
                .char_indices()
                .nth(limit - 1)
                .map_or(text.len(), |(i, _)| i);
            let mut s = String::with_capacity(cut + 3);
            s.push_str(&text[..cut]);
            s.push('…');
            Cow::Owned(s)
        }
    }
}

/// A keyword field (≤ 1024 characters).
struct Kw<'a>(&'a str);
impl Serialize for Kw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&truncate(self.0, KEYWORD_LIMIT))
    }
}

/// A long text field (≤ 10 000 characters).
struct Long<'a>(&'a str);
impl Serialize for Long<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&truncate(self.0, LONG_LIMIT))
    }
}

struct Hex64(u64);
impl Serialize for Hex64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = hex::<16>(u128::from(self.0));
        s.serialize_str(std::str::from_utf8(&h).unwrap_or_default())
    }
}

struct Hex128(u128);
impl Serialize for Hex128 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = hex::<32>(self.0);
        s.serialize_str(std::str::from_utf8(&h).unwrap_or_default())
    }
}

/// Label keys may not contain `.`, `*` or `"` (the spec replaces them with `_`).
pub(crate) fn label_key(key: &str) -> Cow<'_, str> {
    if key.contains(['.', '*', '"']) {
        Cow::Owned(key.replace(['.', '*', '"'], "_"))
    } else {
        Cow::Borrowed(key)
    }
}

struct LabelsView<'a>(&'a Labels);
impl Serialize for LabelsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            let k = label_key(k);
            let k = truncate(&k, KEYWORD_LIMIT);
            match v {
                LabelValue::Str(v) => m.serialize_entry(&*k, &Kw(v))?,
                LabelValue::Number(n) if n.is_finite() => m.serialize_entry(&*k, n)?,
                LabelValue::Number(_) => m.serialize_entry(&*k, &())?,
                LabelValue::Bool(b) => m.serialize_entry(&*k, b)?,
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
struct LabelsContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<LabelsView<'a>>,
}

/// Sample rate × 10 000 as sent; [`UNKNOWN_RATE`](crate::record::UNKNOWN_RATE) (a continued
/// trace whose root did not say) is left out.
fn rate(fixed: u16) -> Option<f64> {
    (fixed != crate::record::UNKNOWN_RATE).then(|| f64::from(fixed) / 10_000.0)
}

#[derive(Serialize)]
struct SpanView<'a> {
    id: Hex64,
    transaction_id: Hex64,
    parent_id: Hex64,
    trace_id: Hex128,
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtype: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Kw<'a>>,
    timestamp: u64,
    duration: f64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<LabelsContext<'a>>,
}

/// A span link (to the trace a restarted transaction came from).
#[derive(Serialize)]
pub(crate) struct Link {
    trace_id: Hex128,
    span_id: Hex64,
}

impl Link {
    pub(crate) fn new(trace_id: u128, span_id: u64) -> Link {
        Link {
            trace_id: Hex128(trace_id),
            span_id: Hex64(span_id),
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({:x}-{:x})", self.trace_id.0, self.span_id.0)
    }
}

#[derive(Serialize)]
struct SpanCount {
    started: u32,
    dropped: u32,
}

#[derive(Serialize)]
struct TransactionView<'a> {
    id: Hex64,
    trace_id: Hex128,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<Hex64>,
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    timestamp: u64,
    duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Kw<'a>>,
    outcome: &'static str,
    sampled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_rate: Option<f64>,
    span_count: SpanCount,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    links: &'a [Link],
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<LabelsContext<'a>>,
}

#[derive(Serialize)]
struct ErrorTransactionView<'a> {
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    sampled: bool,
}

#[derive(Serialize)]
struct Frame<'a> {
    filename: &'a str,
    lineno: u32,
    colno: u32,
    module: &'a str,
    library_frame: bool,
}

#[derive(Serialize)]
struct Cause<'a> {
    message: Long<'a>,
}

#[derive(Serialize)]
struct ExceptionView<'a> {
    message: Long<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<Kw<'a>>,
    handled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cause: Vec<Cause<'a>>,
    stacktrace: [Frame<'a>; 1],
}

#[derive(Serialize)]
struct ErrorView<'a> {
    id: Hex128,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<Hex128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<Hex64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<Hex64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<ErrorTransactionView<'a>>,
    culprit: Kw<'a>,
    exception: ExceptionView<'a>,
}

/// Splits a Rust type path into module and type name: `std::num::ParseIntError` →
/// (`std::num`, `ParseIntError`); generic arguments stay with the type.
pub(crate) fn split_type_name(full: &str) -> (Option<&str>, &str) {
    // A reference to an error names the error.
    let full = full.trim_start_matches('&');
    let head_end = full.find('<').unwrap_or(full.len());
    match full[..head_end].rfind("::") {
        Some(i) => (Some(&full[..i]), &full[i + 2..]),
        None => (None, full),
    }
}

fn write_line<W: Write>(out: &mut W, key: &str, value: &impl Serialize) -> io::Result<()> {
    out.write_all(b"{\"")?;
    out.write_all(key.as_bytes())?;
    out.write_all(b"\":")?;
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"}\n")
}

pub(crate) fn write_span<W: Write>(out: &mut W, s: &SpanRecord) -> io::Result<()> {
    let view = SpanView {
        id: Hex64(s.id),
        transaction_id: Hex64(s.transaction_id),
        parent_id: Hex64(s.parent_id),
        trace_id: Hex128(s.trace_id),
        name: Kw(s.name.name()),
        kind: Kw(s.name.kind()),
        subtype: s.name.subtype().map(Kw),
        action: s.name.action().map(Kw),
        timestamp: clock::epoch_micros(s.start),
        duration: clock::millis_between(s.start, s.end),
        outcome: s.outcome.as_str(),
        sample_rate: rate(s.sample_rate),
        context: s.labels.as_deref().map(|l| LabelsContext {
            tags: Some(LabelsView(l)),
        }),
    };
    write_line(out, "span", &view)
}

pub(crate) fn write_transaction<W: Write>(out: &mut W, t: &TransactionRecord) -> io::Result<()> {
    let view = TransactionView {
        id: Hex64(t.id),
        trace_id: Hex128(t.trace_id),
        parent_id: t.parent_id.map(Hex64),
        name: Kw(t.name.name()),
        kind: Kw(t.name.kind()),
        timestamp: clock::epoch_micros(t.start),
        duration: clock::millis_between(t.start, t.end),
        result: t.result.as_deref().map(Kw),
        outcome: t.outcome.as_str(),
        sampled: t.sampled,
        sample_rate: rate(t.sample_rate),
        span_count: SpanCount {
            started: t.spans_started,
            dropped: t.spans_dropped,
        },
        links: &t.links,
        context: (!t.labels.is_empty()).then_some(LabelsContext {
            tags: Some(LabelsView(&t.labels)),
        }),
    };
    write_line(out, "transaction", &view)
}

pub(crate) fn write_error<W: Write>(out: &mut W, e: &ErrorRecord) -> io::Result<()> {
    let (module, type_name) = split_type_name(e.type_name);
    let culprit = format!("{} ({}:{})", e.site.module, e.site.file, e.site.line);
    let view = ErrorView {
        id: Hex128(e.id),
        timestamp: clock::epoch_micros(e.timestamp),
        trace_id: e.trace.as_ref().map(|t| Hex128(t.trace_id)),
        transaction_id: e.trace.as_ref().map(|t| Hex64(t.transaction_id)),
        parent_id: e.trace.as_ref().map(|t| Hex64(t.parent_id)),
        transaction: e.trace.as_ref().map(|t| ErrorTransactionView {
            name: Kw(&t.transaction_name),
            kind: Kw(&t.transaction_type),
            sampled: t.sampled,
        }),
        culprit: Kw(&culprit),
        exception: ExceptionView {
            message: Long(&e.message),
            kind: Kw(type_name),
            module: module.map(Kw),
            handled: true,
            cause: e
                .causes
                .iter()
                .map(|m| Cause { message: Long(m) })
                .collect(),
            stacktrace: [Frame {
                filename: e.site.file,
                lineno: e.site.line,
                colno: e.site.column,
                module: e.site.module,
                library_frame: false,
            }],
        },
    };
    write_line(out, "error", &view)
}

#[derive(Serialize)]
struct Sample {
    value: f64,
}

struct SamplesView<'a>(&'a [(Cow<'static, str>, f64)]);
impl Serialize for SamplesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter().filter(|(_, v)| v.is_finite()) {
            m.serialize_entry(&**name, &Sample { value: *value })?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct MetricsetSpanView<'a> {
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtype: Option<Kw<'a>>,
}

struct TagsView<'a>(&'a [(&'static str, &'static str)]);
impl Serialize for TagsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct MetricsetView<'a> {
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<TagsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<TransactionRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<MetricsetSpanView<'a>>,
    samples: SamplesView<'a>,
}

#[derive(Serialize)]
struct TransactionRef<'a> {
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
}

pub(crate) fn write_metricset<W: Write>(out: &mut W, m: &MetricsetRecord) -> io::Result<()> {
    let view = MetricsetView {
        timestamp: m.timestamp,
        tags: (!m.tags.is_empty()).then_some(TagsView(&m.tags)),
        transaction: m.transaction.as_ref().map(|(name, kind)| TransactionRef {
            name: Kw(name),
            kind: Kw(kind),
        }),
        span: m.span.as_ref().map(|(kind, subtype)| MetricsetSpanView {
            kind: Kw(kind),
            subtype: subtype.as_deref().map(Kw),
        }),
        samples: SamplesView(&m.samples),
    };
    write_line(out, "metricset", &view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        let long = "é".repeat(2000);
        let cut = truncate(&long, KEYWORD_LIMIT);
        assert_eq!(cut.chars().count(), KEYWORD_LIMIT);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn type_names_split_into_module_and_type() {
        assert_eq!(
            split_type_name("std::num::error::ParseIntError"),
            (Some("std::num::error"), "ParseIntError")
        );
        assert_eq!(split_type_name("Plain"), (None, "Plain"));
        assert_eq!(split_type_name("&&a::E"), (Some("a"), "E"));
        assert_eq!(split_type_name("a::Wrap<b::C>"), (Some("a"), "Wrap<b::C>"));
    }

    #[test]
    fn label_keys_are_sanitised() {
        assert_eq!(label_key("a.b*c\"d"), "a_b_c_d");
        assert_eq!(label_key("plain"), "plain");
    }
}
