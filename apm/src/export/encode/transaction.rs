//! Transaction lines, written by hand like span lines: serde writes only the optional `links`
//! and `context`.

use std::borrow::Cow;
use std::io;

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use super::fields::{Hex128, Hex64};
use super::json;
use super::request::{transaction_context, Policy};
use crate::types::clock;
use crate::types::record::{DroppedSpanStats, TransactionRecord};
use crate::types::sample_rate::UNKNOWN_RATE;
use crate::types::span_context::Link;
use crate::util::text::{truncate, KEYWORD_LIMIT};

/// `dropped_spans_stats` as the intake protocol writes them (service target fields are keywords
/// of at most 512 characters there).
struct DroppedView<'a>(&'a [DroppedSpanStats]);

impl Serialize for DroppedView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Sum {
            us: u64,
        }
        #[derive(Serialize)]
        struct Duration {
            count: u32,
            sum: Sum,
        }
        #[derive(Serialize)]
        struct One<'a> {
            destination_service_resource: Cow<'a, str>,
            service_target_type: Cow<'a, str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            service_target_name: Option<Cow<'a, str>>,
            outcome: &'static str,
            duration: Duration,
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for d in self.0 {
            seq.serialize_element(&One {
                destination_service_resource: truncate(
                    &d.destination_service_resource,
                    KEYWORD_LIMIT,
                ),
                service_target_type: truncate(&d.service_target_type, TARGET_LIMIT),
                service_target_name: d
                    .service_target_name
                    .as_deref()
                    .map(|n| truncate(n, TARGET_LIMIT)),
                outcome: d.outcome.as_str(),
                duration: Duration {
                    count: d.count,
                    sum: Sum { us: d.sum_us },
                },
            })?;
        }
        seq.end()
    }
}

/// The longest `service_target_type` and `service_target_name` the schema accepts.
const TARGET_LIMIT: usize = 512;

/// Span links as the intake protocol writes them.
pub(super) struct LinksView<'a>(pub(super) &'a [Link]);

#[cfg(test)]
impl LinksView<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for LinksView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct One {
            trace_id: Hex128,
            span_id: Hex64,
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            seq.serialize_element(&One {
                trace_id: Hex128(l.trace_id),
                span_id: Hex64(l.span_id),
            })?;
        }
        seq.end()
    }
}

/// A transaction line's start, up to its trace id: its ids are written at their places in a
/// copy.
const HEAD: [u8; HEAD_LEN] =
    *br#"{"transaction":{"id":"0000000000000000","trace_id":"00000000000000000000000000000000""#;
const HEAD_LEN: usize = 85;
const ID_AT: usize = json::after(&HEAD, br#""id":""#);
const TRACE_ID_AT: usize = json::after(&HEAD, br#""trace_id":""#);

/// One transaction line, written by hand like span lines: serde serialises only the optional
/// `links` and `context`.
pub(crate) fn write_transaction(
    out: &mut Vec<u8>,
    t: &TransactionRecord,
    policy: &Policy,
) -> io::Result<()> {
    let mut head = HEAD;
    json::hex_at::<16, HEAD_LEN>(&mut head, ID_AT, u128::from(t.id));
    json::hex_at::<32, HEAD_LEN>(&mut head, TRACE_ID_AT, t.trace_id);
    out.extend_from_slice(&head);
    if let Some(parent_id) = t.parent_id {
        out.extend_from_slice(b",\"parent_id\":");
        json::hex::<16>(out, u128::from(parent_id));
    }
    let plain = t.name.plain();
    out.extend_from_slice(b",\"name\":");
    json::keyword(out, t.name.name(), plain);
    out.extend_from_slice(b",\"type\":");
    json::keyword(out, t.name.kind(), plain);
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
    if t.sample_rate != UNKNOWN_RATE {
        out.extend_from_slice(b",\"sample_rate\":");
        json::fixed4(out, t.sample_rate);
    }
    out.extend_from_slice(b",\"span_count\":{\"started\":");
    json::uint(out, u64::from(t.spans_started));
    out.extend_from_slice(b",\"dropped\":");
    json::uint(out, u64::from(t.spans_dropped));
    out.push(b'}');
    if let Some(ex) = t.extras() {
        if !ex.links.is_empty() {
            out.extend_from_slice(b",\"links\":");
            serde_json::to_writer(&mut *out, &LinksView(&ex.links)).map_err(io::Error::other)?;
        }
        if !ex.dropped_spans_stats.is_empty() {
            out.extend_from_slice(b",\"dropped_spans_stats\":");
            serde_json::to_writer(&mut *out, &DroppedView(&ex.dropped_spans_stats))
                .map_err(io::Error::other)?;
        }
        #[cfg(feature = "opentelemetry")]
        if let Some(otel) = &ex.otel {
            super::otel::write(out, otel, policy.long_field_max_length)?;
        }
    }
    if let Some(context) = transaction_context(t, policy) {
        out.extend_from_slice(b",\"context\":");
        context.write(out)?;
    }
    out.extend_from_slice(b"}}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::encode::fields::{write_line, Kw};
    use crate::export::encode::request::TransactionContextView;

    #[derive(Serialize)]
    struct SpanCount {
        started: u32,
        dropped: u32,
    }

    /// The transaction line as serde would write it: the oracle the hand-written one is tested
    /// against.
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
        #[serde(skip_serializing_if = "LinksView::is_empty")]
        links: LinksView<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<TransactionContextView<'a>>,
    }

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
            sample_rate: (t.sample_rate != UNKNOWN_RATE)
                .then(|| f64::from(t.sample_rate) / 10_000.0),
            span_count: SpanCount {
                started: t.spans_started,
                dropped: t.spans_dropped,
            },
            links: LinksView(t.extras().map_or(&[][..], |e| &e.links[..])),
            context: transaction_context(t, policy),
        };
        let mut line = Vec::new();
        write_line(&mut line, "transaction", &view).unwrap();
        numbers_as_floats(serde_json::from_slice(&line).unwrap())
    }

    #[test]
    fn hand_written_transaction_lines_equal_serdes() {
        use crate::types::record::TransactionName;
        let start = clock::now();
        let end = start + std::time::Duration::from_nanos(12_345_678);
        let plain = || TransactionRecord {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            id: 0xb7ad6b7169203331,
            name: TransactionName::Dynamic("GET /orders/{id}".into(), "request".into()),
            start,
            end,
            sampled: true,
            sample_rate: 10_000,
            outcome: crate::types::outcome::Outcome::Success,
            spans_started: 3,
            ..TransactionRecord::empty()
        };
        let mut web = crate::types::web::Request::new("GET", "http://shop/orders/7?x=1");
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
                outcome: crate::types::outcome::Outcome::Failure,
                spans_started: 0,
                spans_dropped: 4_000_000_000,
                request: Some(Box::new(web)),
                response: Some(Box::new(crate::types::web::Response::new(503))),
                ..plain()
            }
            .with_extras(|e| {
                e.labels = vec![(
                    "tier".into(),
                    crate::types::outcome::LabelValue::Number(1.5),
                )];
                e.links = vec![Link {
                    trace_id: 7,
                    span_id: 9,
                }];
                e.message = Some(Box::new(
                    crate::types::messaging::Message::new("orders")
                        .age_ms(1_500)
                        .routing_key("orders.new")
                        .header("traceparent", "x")
                        .header("password", "secret"),
                ));
            }),
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
        // A request and a response with all their parts: repeated names in any case, a
        // cookie, sanitised names, characters to escape, a value past the keyword limit, a
        // form body.
        let long = "v".repeat(1_500);
        let request = crate::types::web::Request::new(
            "POST",
            "https://user:pw@shop.example:8443/cart/items?id=7&q=\"x\"#top",
        )
        .http_version("1.1")
        .header("Accept", "text/html")
        .header("X-Token", "t1")
        .header("Cookie", "session_id=abc; theme=dark")
        .header("accept", "*/*")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Quote\"", "a\\b\u{1}é")
        .header("x-long", long.as_str())
        .header("ACCEPT", "third")
        .remote_address("10.1.2.3")
        .body("item=7&password=hunter2&qty=1");
        let response = crate::types::web::Response::new(201)
            .header("Set-Cookie", "session_id=new")
            .header("Content-Length", "0")
            .header("set-cookie", "theme=light");
        let rich = [
            TransactionRecord {
                request: Some(Box::new(request.clone())),
                response: Some(Box::new(response)),
                ..plain()
            }
            .with_extras(|e| {
                e.user = Some(Box::new(crate::types::user::User {
                    id: Some("42".into()),
                    username: None,
                    email: Some("a@b.c".into()),
                }));
                e.custom = vec![("cart".into(), crate::types::outcome::LabelValue::Bool(true))];
            }),
            TransactionRecord {
                request: Some(Box::new(crate::types::web::Request::new(
                    "GET",
                    "/relative",
                ))),
                ..plain()
            }
            .with_extras(|e| {
                e.labels = vec![(
                    "a.b".into(),
                    crate::types::outcome::LabelValue::Str("x".into()),
                )];
            }),
            TransactionRecord {
                response: Some(Box::new(crate::types::web::Response::new(204))),
                ..plain()
            },
        ];
        let mut capturing = Policy::default();
        capturing.capture_headers = true;
        capturing.body_on_transactions = true;
        capturing.set_sanitize(crate::util::wildcard::WildcardList::parse(&[
            "*token*".to_owned(),
            "password".to_owned(),
            "*session*".to_owned(),
            "set-cookie".to_owned(),
        ]));
        for policy in [Policy::default(), capturing] {
            // Twice: the second time the answers remembered by position are used.
            for t in variants.iter().chain(&rich).chain(&rich) {
                let mut line = Vec::new();
                write_transaction(&mut line, t, &policy).unwrap();
                assert!(line.ends_with(b"}\n"));
                let ours = numbers_as_floats(serde_json::from_slice(&line).unwrap());
                assert_eq!(ours, serde_transaction(t, &policy));
            }
        }
    }
}
