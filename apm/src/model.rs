//! The intake v2 wire format: records turned into NDJSON lines, on the transport thread only.
//!
//! Serialisation goes straight from the records through borrowed views (no intermediate
//! `serde_json::Value`). Keyword fields are cut to 1024 characters and long text fields to
//! 10 000, ending in `…`, as the agent spec says.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::ids::hex;
use crate::record::{ErrorRecord, Labels, MetricsetRecord, SpanRecord, TransactionRecord};
use crate::span_context::{self, SpanExtra};
use crate::web;
use crate::wildcard::WildcardList;
use crate::LabelValue;
use crate::{clock, json};

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

/// How request and response details are written: live configuration, compiled on the
/// transport thread.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub(crate) sanitize: WildcardList,
    pub(crate) capture_headers: bool,
    /// `capture_body` allows bodies on transactions (`transactions`, `all`) / on errors
    /// (`errors`, `all`).
    pub(crate) body_on_transactions: bool,
    pub(crate) body_on_errors: bool,
}

const REDACTED: &str = "[REDACTED]";

impl Policy {
    fn value<'v>(&self, name: &str, value: &'v str) -> &'v str {
        if self.sanitize.any_match(name) {
            REDACTED
        } else {
            value
        }
    }
}

/// Headers as an object (repeated names as arrays), sanitised; `Cookie` is sent as `cookies`.
struct HeadersView<'a> {
    headers: &'a [(String, String)],
    policy: &'a Policy,
}

impl Serialize for HeadersView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut names: Vec<&str> = Vec::new();
        for (k, _) in self.headers {
            if !k.eq_ignore_ascii_case("cookie") && !names.iter().any(|n| n.eq_ignore_ascii_case(k))
            {
                names.push(k);
            }
        }
        let mut m = s.serialize_map(Some(names.len()))?;
        for name in names {
            let values: Vec<&str> = self
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| self.policy.value(name, v))
                .collect();
            match values.as_slice() {
                [one] => m.serialize_entry(name, &Kw(one))?,
                many => m.serialize_entry(name, &many.iter().map(|v| Kw(v)).collect::<Vec<_>>())?,
            }
        }
        m.end()
    }
}

/// `name=value; …` pairs of every `Cookie` header, sanitised.
struct CookiesView<'a> {
    headers: &'a [(String, String)],
    policy: &'a Policy,
}

impl CookiesView<'_> {
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim(), v.trim()))
            })
    }
}

impl Serialize for CookiesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.pairs() {
            m.serialize_entry(k, &Kw(self.policy.value(k, v)))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct UrlView<'a> {
    full: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    pathname: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Kw<'a>>,
}

fn url_view(full: &str) -> UrlView<'_> {
    let (scheme, rest) = full.split_once("://").unwrap_or(("", full));
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (path_query, _fragment) = rest[path_start..]
        .split_once('#')
        .unwrap_or((&rest[path_start..], ""));
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let host_port = span_context::host_port(full);
    let explicit_port = rest[..path_start]
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    UrlView {
        full: Kw(full),
        protocol: (!scheme.is_empty()).then(|| format!("{scheme}:")),
        hostname: host_port.as_ref().and_then(|(h, _)| {
            let start = full.find(h.as_str())?;
            Some(Kw(&full[start..start + h.len()]))
        }),
        port: explicit_port.or(host_port.map(|(_, p)| p)),
        pathname: Kw(if path.is_empty() { "/" } else { path }),
        search: query.map(Kw),
    }
}

#[derive(Serialize)]
struct SocketView<'a> {
    remote_address: Kw<'a>,
}

#[derive(Serialize)]
struct RequestView<'a> {
    method: Kw<'a>,
    url: UrlView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_version: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<CookiesView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<SocketView<'a>>,
    body: Cow<'a, str>,
}

#[derive(Serialize)]
struct ResponseView<'a> {
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersView<'a>>,
}

#[derive(Serialize)]
struct TransactionContextView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<LabelsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseView<'a>>,
}

/// A form body with the values of sensitive fields replaced; `[REDACTED]` when not captured
/// or not allowed on this kind of event.
fn sanitized_body<'a>(req: &'a web::Request, policy: &Policy, allowed: bool) -> Cow<'a, str> {
    let Some(body) = req.body.as_ref().filter(|_| allowed) else {
        return Cow::Borrowed(REDACTED);
    };
    let form = req.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.starts_with("application/x-www-form-urlencoded")
    });
    if !form {
        return truncate(body, LONG_LIMIT);
    }
    let fields: Vec<String> = body
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => format!("{k}={}", policy.value(k, v)),
            None => pair.to_owned(),
        })
        .collect();
    Cow::Owned(truncate(&fields.join("&"), LONG_LIMIT).into_owned())
}

fn headers_view<'a>(h: &'a [(String, String)], policy: &'a Policy) -> Option<HeadersView<'a>> {
    (policy.capture_headers && !h.is_empty()).then_some(HeadersView { headers: h, policy })
}

fn request_view<'a>(
    r: &'a web::Request,
    policy: &'a Policy,
    body_allowed: bool,
) -> RequestView<'a> {
    RequestView {
        method: Kw(&r.method),
        url: url_view(&r.url),
        http_version: r.http_version.as_deref().map(Kw),
        headers: headers_view(&r.headers, policy),
        cookies: (policy.capture_headers
            && r.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("cookie")))
        .then_some(CookiesView {
            headers: &r.headers,
            policy,
        }),
        socket: r.remote_address.as_deref().map(|a| SocketView {
            remote_address: Kw(a),
        }),
        body: sanitized_body(r, policy, body_allowed),
    }
}

fn transaction_context<'a>(
    t: &'a TransactionRecord,
    policy: &'a Policy,
) -> Option<TransactionContextView<'a>> {
    if t.labels.is_empty() && t.request.is_none() && t.response.is_none() {
        return None;
    }
    Some(TransactionContextView {
        tags: (!t.labels.is_empty()).then_some(LabelsView(&t.labels)),
        request: t
            .request
            .as_deref()
            .map(|r| request_view(r, policy, policy.body_on_transactions)),
        response: t.response.as_deref().map(|r| ResponseView {
            status_code: r.status_code,
            headers: headers_view(&r.headers, policy),
        }),
    })
}

#[derive(Serialize)]
struct SpanContextView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<LabelsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<DbView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<MessageView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<ServiceView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<DestinationView>,
}

#[derive(Serialize)]
struct HttpView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
}

#[derive(Serialize)]
struct DbView<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement: Option<Long<'a>>,
}

#[derive(Serialize)]
struct QueueView<'a> {
    name: Kw<'a>,
}

#[derive(Serialize)]
struct MessageView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueView<'a>>,
}

#[derive(Serialize)]
struct TargetView {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize)]
struct ServiceView {
    target: TargetView,
}

#[derive(Serialize)]
struct DestinationServiceView {
    resource: String,
}

#[derive(Serialize)]
struct DestinationView {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    service: DestinationServiceView,
}

fn span_context<'a>(
    kind: &str,
    subtype: Option<&str>,
    extra: &'a SpanExtra,
    url: Option<&'a str>,
) -> SpanContextView<'a> {
    let target = span_context::infer(kind, subtype, extra);
    let address = url.and_then(span_context::host_port);
    SpanContextView {
        tags: (!extra.labels.is_empty()).then_some(LabelsView(&extra.labels)),
        http: extra.http.as_ref().map(|h| HttpView {
            method: h.method.as_deref().map(Kw),
            url: url.map(Kw),
            status_code: h.status_code,
        }),
        db: extra.db.as_ref().map(|d| DbView {
            kind: d.kind.as_deref().map(Kw),
            instance: d.instance.as_deref().map(Kw),
            statement: d.statement.as_deref().map(Long),
        }),
        message: extra.message.as_ref().map(|m| MessageView {
            queue: m.queue.as_deref().map(|name| QueueView { name: Kw(name) }),
        }),
        destination: target.as_ref().map(|t| DestinationView {
            address: address
                .as_ref()
                .map(|(h, _)| h.trim_matches(['[', ']']).to_owned()),
            port: address.as_ref().map(|(_, p)| *p),
            service: DestinationServiceView {
                resource: truncate(&t.resource, KEYWORD_LIMIT).into_owned(),
            },
        }),
        service: target.map(|t| ServiceView {
            target: TargetView {
                kind: truncate(&t.kind, KEYWORD_LIMIT).into_owned(),
                name: t.name.map(|n| truncate(&n, KEYWORD_LIMIT).into_owned()),
            },
        }),
    }
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

#[cfg(test)]
#[derive(Serialize)]
struct SpanCount {
    started: u32,
    dropped: u32,
}

/// The transaction line as serde would write it: the oracle the hand-written one is tested
/// against.
#[cfg(test)]
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
    context: Option<TransactionContextView<'a>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ErrorContextView<'a>>,
}

#[derive(Serialize)]
struct ErrorContextView<'a> {
    request: RequestView<'a>,
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

/// One span line. Written by hand (see `json`); only the optional `context` of exit spans
/// and labelled spans goes through serde.
pub(crate) fn write_span(out: &mut Vec<u8>, s: &SpanRecord) -> io::Result<()> {
    out.extend_from_slice(b"{\"span\":{\"id\":");
    json::hex::<16>(out, u128::from(s.id));
    out.extend_from_slice(b",\"transaction_id\":");
    json::hex::<16>(out, u128::from(s.transaction_id));
    out.extend_from_slice(b",\"parent_id\":");
    json::hex::<16>(out, u128::from(s.parent_id));
    out.extend_from_slice(b",\"trace_id\":");
    json::hex::<32>(out, s.trace_id);
    out.extend_from_slice(b",\"name\":");
    json::string(out, s.name.name(), KEYWORD_LIMIT);
    out.extend_from_slice(b",\"type\":");
    json::string(out, s.name.kind(), KEYWORD_LIMIT);
    if let Some(subtype) = s.name.subtype() {
        out.extend_from_slice(b",\"subtype\":");
        json::string(out, subtype, KEYWORD_LIMIT);
    }
    if let Some(action) = s.name.action() {
        out.extend_from_slice(b",\"action\":");
        json::string(out, action, KEYWORD_LIMIT);
    }
    out.extend_from_slice(b",\"timestamp\":");
    json::uint(out, clock::epoch_micros(s.start));
    out.extend_from_slice(b",\"duration\":");
    json::millis(out, clock::nanos_between(s.start, s.end));
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(s.outcome.as_str().as_bytes());
    out.push(b'"');
    if s.sample_rate != crate::record::UNKNOWN_RATE {
        out.extend_from_slice(b",\"sample_rate\":");
        json::fixed4(out, s.sample_rate);
    }
    if let Some(extra) = s.extra.as_deref() {
        let url = extra
            .http
            .as_ref()
            .and_then(|h| h.url.as_deref())
            .map(span_context::redact_userinfo);
        let context = span_context(s.name.kind(), s.name.subtype(), extra, url.as_deref());
        out.extend_from_slice(b",\"context\":");
        serde_json::to_writer(&mut *out, &context).map_err(io::Error::other)?;
    }
    out.extend_from_slice(b"}}\n");
    Ok(())
}

/// One transaction line, written by hand like span lines: serde serialises only the optional
/// `links` and `context`.
pub(crate) fn write_transaction(
    out: &mut Vec<u8>,
    t: &TransactionRecord,
    policy: &Policy,
) -> io::Result<()> {
    out.extend_from_slice(b"{\"transaction\":{\"id\":");
    json::hex::<16>(out, u128::from(t.id));
    out.extend_from_slice(b",\"trace_id\":");
    json::hex::<32>(out, t.trace_id);
    if let Some(parent_id) = t.parent_id {
        out.extend_from_slice(b",\"parent_id\":");
        json::hex::<16>(out, u128::from(parent_id));
    }
    out.extend_from_slice(b",\"name\":");
    json::string(out, t.name.name(), KEYWORD_LIMIT);
    out.extend_from_slice(b",\"type\":");
    json::string(out, t.name.kind(), KEYWORD_LIMIT);
    out.extend_from_slice(b",\"timestamp\":");
    json::uint(out, clock::epoch_micros(t.start));
    out.extend_from_slice(b",\"duration\":");
    json::millis(out, clock::nanos_between(t.start, t.end));
    if let Some(result) = t.result.as_deref() {
        out.extend_from_slice(b",\"result\":");
        json::string(out, result, KEYWORD_LIMIT);
    }
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(t.outcome.as_str().as_bytes());
    out.extend_from_slice(if t.sampled {
        b"\",\"sampled\":true"
    } else {
        b"\",\"sampled\":false"
    });
    if t.sample_rate != crate::record::UNKNOWN_RATE {
        out.extend_from_slice(b",\"sample_rate\":");
        json::fixed4(out, t.sample_rate);
    }
    out.extend_from_slice(b",\"span_count\":{\"started\":");
    json::uint(out, u64::from(t.spans_started));
    out.extend_from_slice(b",\"dropped\":");
    json::uint(out, u64::from(t.spans_dropped));
    out.push(b'}');
    if !t.links.is_empty() {
        out.extend_from_slice(b",\"links\":");
        serde_json::to_writer(&mut *out, &t.links).map_err(io::Error::other)?;
    }
    if let Some(context) = transaction_context(t, policy) {
        out.extend_from_slice(b",\"context\":");
        serde_json::to_writer(&mut *out, &context).map_err(io::Error::other)?;
    }
    out.extend_from_slice(b"}}\n");
    Ok(())
}

pub(crate) fn write_error<W: Write>(
    out: &mut W,
    e: &ErrorRecord,
    policy: &Policy,
) -> io::Result<()> {
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
        context: e.request.as_deref().map(|r| ErrorContextView {
            request: request_view(r, policy, policy.body_on_errors),
        }),
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

    /// Numbers as `f64`: `1` and `1.0` are the same sample rate.
    fn numbers_as_floats(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_floats).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, numbers_as_floats(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// The line serde writes from [`TransactionView`].
    fn serde_transaction(t: &TransactionRecord, policy: &Policy) -> serde_json::Value {
        let view = TransactionView {
            id: Hex64(t.id),
            trace_id: Hex128(t.trace_id),
            parent_id: t.parent_id.map(Hex64),
            name: Kw(t.name.name()),
            kind: Kw(t.name.kind()),
            timestamp: clock::epoch_micros(t.start),
            duration: clock::nanos_between(t.start, t.end) as f64 / 1e6,
            result: t.result.as_deref().map(Kw),
            outcome: t.outcome.as_str(),
            sampled: t.sampled,
            sample_rate: (t.sample_rate != crate::record::UNKNOWN_RATE)
                .then(|| f64::from(t.sample_rate) / 10_000.0),
            span_count: SpanCount {
                started: t.spans_started,
                dropped: t.spans_dropped,
            },
            links: &t.links,
            context: transaction_context(t, policy),
        };
        let mut line = Vec::new();
        write_line(&mut line, "transaction", &view).unwrap();
        numbers_as_floats(serde_json::from_slice(&line).unwrap())
    }

    #[test]
    fn hand_written_transaction_lines_equal_serdes() {
        use crate::record::{TransactionName, UNKNOWN_RATE};
        let start = clock::now();
        let end = start + std::time::Duration::from_nanos(12_345_678);
        let plain = || TransactionRecord {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            id: 0xb7ad6b7169203331,
            parent_id: None,
            name: TransactionName::Dynamic("GET /orders/{id}".into(), "request".into()),
            start,
            end,
            sampled: true,
            sample_rate: 10_000,
            result: None,
            outcome: crate::Outcome::Success,
            labels: Vec::new(),
            spans_started: 3,
            spans_dropped: 0,
            child_ns: 0,
            links: Vec::new(),
            request: None,
            response: None,
        };
        let mut web = crate::web::Request::new("GET", "http://shop/orders/7?x=1");
        web.headers.push(("Authorization".into(), "secret".into()));
        let variants = [
            plain(),
            TransactionRecord {
                parent_id: Some(0x00f067aa0ba902b7),
                name: TransactionName::Dynamic(
                    format!("quote \" back\\slash \u{1} {}", "é".repeat(2_000)).into(),
                    "job\n".into(),
                ),
                sampled: false,
                sample_rate: 0,
                result: Some("HTTP 5xx".into()),
                outcome: crate::Outcome::Failure,
                labels: vec![("tier".into(), crate::LabelValue::Number(1.5))],
                spans_started: 0,
                spans_dropped: 4_000_000_000,
                links: vec![Link::new(7, 9)],
                request: Some(Box::new(web)),
                response: Some(Box::new(crate::web::Response::new(503))),
                ..plain()
            },
            TransactionRecord {
                sample_rate: UNKNOWN_RATE,
                end: start,
                ..plain()
            },
            TransactionRecord {
                sample_rate: 1_235,
                ..plain()
            },
        ];
        let policy = Policy::default();
        for t in &variants {
            let mut line = Vec::new();
            write_transaction(&mut line, t, &policy).unwrap();
            assert!(line.ends_with(b"}\n"));
            let ours = numbers_as_floats(serde_json::from_slice(&line).unwrap());
            assert_eq!(ours, serde_transaction(t, &policy));
        }
    }

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
