//! Span lines: the fields every span has, written by hand (millions a second), and the
//! optional `context` (labels, HTTP, database, message, service target and destination)
//! through serde, unless it holds labels alone (by hand too).

use std::io;

use serde::Serialize;

use super::fields::{write_labels, Kw, LabelsView, Long};
use super::frame::FrameView;
use super::json;
use super::request::Policy;
use super::service_target;
use crate::export::symbolize;
use crate::types::clock;
use crate::types::record::SpanRecord;
use crate::types::sample_rate::UNKNOWN_RATE;
use crate::types::span_context::SpanExtra;
use crate::util::text::{truncate, KEYWORD_LIMIT};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_affected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Kw<'a>>,
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
    extra: &'a SpanExtra,
    target: Option<service_target::Target>,
    url: Option<&'a str>,
    long_limit: usize,
) -> SpanContextView<'a> {
    // Set explicitly (a database's host), else an HTTP span's URL's.
    let address = match &extra.destination {
        Some(d) => d.address.clone().map(|a| (a, d.port)),
        None => url
            .and_then(service_target::host_port)
            .map(|(host, port)| (host, Some(port))),
    };
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
            statement: d.statement.as_deref().map(|text| Long {
                text,
                limit: long_limit,
            }),
            user: d.user.as_deref().map(Kw),
            rows_affected: d.rows_affected,
            link: d.link.as_deref().map(Kw),
        }),
        message: extra.message.as_ref().map(|m| MessageView {
            queue: m.queue.as_deref().map(|name| QueueView { name: Kw(name) }),
        }),
        destination: target.as_ref().map(|t| DestinationView {
            address: address
                .as_ref()
                .map(|(h, _)| h.trim_matches(['[', ']']).to_owned()),
            port: address.as_ref().and_then(|(_, p)| *p),
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

/// A span line's start, up to its trace id: its ids are written at their places in a copy.
const HEAD: [u8; HEAD_LEN] = *br#"{"span":{"id":"0000000000000000","transaction_id":"0000000000000000","parent_id":"0000000000000000","trace_id":"00000000000000000000000000000000""#;
const HEAD_LEN: usize = 145;
const ID_AT: usize = json::after(&HEAD, br#""id":""#);
const TRANSACTION_ID_AT: usize = json::after(&HEAD, br#""transaction_id":""#);
const PARENT_ID_AT: usize = json::after(&HEAD, br#""parent_id":""#);
const TRACE_ID_AT: usize = json::after(&HEAD, br#""trace_id":""#);

/// One span line. Written by hand (see `json`); only the optional `context` of exit spans goes
/// through serde, its database statement cut as `policy` says.
pub(crate) fn write_span(out: &mut Vec<u8>, s: &SpanRecord, policy: &Policy) -> io::Result<()> {
    let mut head = HEAD;
    json::hex_at::<16, HEAD_LEN>(&mut head, ID_AT, u128::from(s.id));
    json::hex_at::<16, HEAD_LEN>(&mut head, TRANSACTION_ID_AT, u128::from(s.transaction_id));
    json::hex_at::<16, HEAD_LEN>(&mut head, PARENT_ID_AT, u128::from(s.parent_id));
    json::hex_at::<32, HEAD_LEN>(&mut head, TRACE_ID_AT, s.trace_id);
    out.extend_from_slice(&head);
    let plain = s.name.plain();
    out.extend_from_slice(b",\"name\":");
    json::keyword(out, s.name.name(), plain);
    out.extend_from_slice(b",\"type\":");
    json::keyword(out, s.name.kind(), plain);
    if let Some(subtype) = s.name.subtype() {
        out.extend_from_slice(b",\"subtype\":");
        json::keyword(out, subtype, plain);
    }
    if let Some(action) = s.name.action() {
        out.extend_from_slice(b",\"action\":");
        json::keyword(out, action, plain);
    }
    out.extend_from_slice(b",\"timestamp\":");
    json::uint(out, clock::epoch_micros(s.start));
    out.extend_from_slice(b",\"duration\":");
    json::millis(out, clock::nanos_between(s.start, s.end));
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(s.outcome.as_str().as_bytes());
    out.push(b'"');
    if s.sample_rate != UNKNOWN_RATE {
        out.extend_from_slice(b",\"sample_rate\":");
        json::fixed4(out, s.sample_rate);
    }
    if let Some(composite) = s.extra.as_deref().and_then(|e| e.composite) {
        out.extend_from_slice(b",\"composite\":{\"compression_strategy\":");
        out.extend_from_slice(if composite.exact_match {
            b"\"exact_match\""
        } else {
            b"\"same_kind\""
        });
        out.extend_from_slice(b",\"count\":");
        json::uint(out, u64::from(composite.count));
        out.extend_from_slice(b",\"sum\":");
        json::millis(out, composite.sum_ns);
        out.push(b'}');
    }
    if let Some(stack) = s.extra.as_deref().and_then(|e| e.stack.as_ref()) {
        let frames = symbolize::frames(stack);
        if !frames.is_empty() {
            out.extend_from_slice(b",\"stacktrace\":");
            let frames: Vec<FrameView<'_>> = frames.iter().map(FrameView::resolved).collect();
            serde_json::to_writer(&mut *out, &frames).map_err(io::Error::other)?;
        }
    }
    if let Some(extra) = s.extra.as_deref() {
        if !extra.links.is_empty() {
            out.extend_from_slice(b",\"links\":");
            serde_json::to_writer(&mut *out, &super::transaction::LinksView(&extra.links))
                .map_err(io::Error::other)?;
        }
        #[cfg(feature = "opentelemetry")]
        if let Some(otel) = &extra.otel {
            super::otel::write(out, otel, policy.long_field_max_length)?;
        }
    }
    if let Some(extra) = s.extra.as_deref() {
        let target = service_target::infer(s.name.kind(), s.name.subtype(), extra);
        out.extend_from_slice(b",\"context\":");
        if target.is_none() && extra.http.is_none() && extra.db.is_none() && extra.message.is_none()
        {
            // Labels alone (a bridged span's fields): by hand, as the rest of the line.
            out.push(b'{');
            if !extra.labels.is_empty() {
                out.extend_from_slice(b"\"tags\":");
                write_labels(out, &extra.labels)?;
            }
            out.push(b'}');
        } else {
            let url = extra
                .http
                .as_ref()
                .and_then(|h| h.url.as_deref())
                .map(service_target::redact_userinfo);
            let context = span_context(extra, target, url.as_deref(), policy.long_field_max_length);
            serde_json::to_writer(&mut *out, &context).map_err(io::Error::other)?;
        }
    }
    out.extend_from_slice(b"}}\n");
    Ok(())
}
