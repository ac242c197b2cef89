//! What the benchmarks measure of the transport thread's work, built the way it does it.

use std::time::{Duration, Instant};

use super::encode::{self, body::Body};
use crate::types::meta::SpanMeta;
use crate::types::record::{DynamicSpanName, SpanName, SpanRecord};
use crate::types::{clock, ids};

/// Serialises `count` span events into intake NDJSON the way the transport does (gzip when
/// `compress`) and returns the time it took and the bytes produced. For the throughput
/// benchmark; the records are built before the clock starts. Their names are a call site's
/// static one, or with `dynamic` names made at run time (as a database span's, from its
/// statement), which are checked for characters to escape as they are written.
pub fn encode_spans(count: usize, compress: bool, dynamic: bool) -> (Duration, usize) {
    static META: SpanMeta = SpanMeta::new("orders::load_order", "app", None, None);
    let name = || {
        if dynamic {
            SpanName::Dynamic(Box::new(DynamicSpanName {
                name: "SELECT FROM orders".into(),
                kind: "db".into(),
                subtype: Some("postgresql".into()),
                action: Some("query".into()),
            }))
        } else {
            SpanName::Static(&META)
        }
    };
    let start = clock::now();
    let trace_id = u128::from(ids::next_u64()) << 64 | u128::from(ids::next_u64());
    let transaction_id = ids::next_u64();
    let records: Vec<SpanRecord> = (0..count)
        .map(|_| SpanRecord {
            trace_id,
            transaction_id,
            parent_id: transaction_id,
            id: ids::next_u64(),
            name: name(),
            start,
            end: clock::now(),
            sample_rate: 10_000,
            outcome: crate::types::outcome::Outcome::Success,
            extra: None,
            child_ns: 0,
        })
        .collect();
    let began = Instant::now();
    let mut body = Body::new(compress, 768 * 1024);
    let mut bytes = 0;
    let policy = encode::Policy::default();
    for r in &records {
        let _ = encode::write_span(body.out(), r, &policy);
        let _ = body.written();
        if body.len() >= 768 * 1024 {
            let full = std::mem::replace(&mut body, Body::new(compress, 768 * 1024));
            bytes += full.finish().map_or(0, |b| b.len());
        }
    }
    bytes += body.finish().map_or(0, |b| b.len());
    (began.elapsed(), bytes)
}

/// Matches `rounds` times the header names a browser's request carries against the default
/// `sanitize_field_names`: through the answers the transport remembers per name (`remembered`,
/// what it does for each header of a request it writes), or against the list each time.
/// Returns the time it took and how many names matched (for the benchmark to print, so that
/// the work is not optimised away).
pub fn sanitize_header_names(rounds: usize, remembered: bool) -> (Duration, usize) {
    const NAMES: &[&str] = &[
        "host",
        "user-agent",
        "accept",
        "accept-language",
        "accept-encoding",
        "referer",
        "connection",
        "cookie",
        "upgrade-insecure-requests",
        "sec-fetch-mode",
        "traceparent",
        "authorization",
    ];
    let defaults = crate::config::Config::default().sanitize_field_names;
    let list = crate::util::wildcard::WildcardList::parse(&defaults);
    let mut policy = encode::Policy::default();
    policy.set_sanitize(list.clone());
    let began = Instant::now();
    let mut matched = 0;
    for _ in 0..rounds {
        for name in NAMES {
            let name = std::hint::black_box(name);
            matched += usize::from(if remembered {
                policy.redacts(name)
            } else {
                list.any_match(name)
            });
        }
    }
    (began.elapsed(), matched)
}

/// Serialises `count` transactions of a web request into intake NDJSON, uncompressed (as to
/// a server on the same host), the way the transport does with the default configuration:
/// the request's method, URL, version and headers, its response's status and headers, each
/// header name matched against `sanitize_field_names`. Returns the time it took and the bytes
/// produced; the records are built before the clock starts.
pub fn encode_web_transactions(count: usize) -> (Duration, usize) {
    use crate::types::record::{TransactionName, TransactionRecord};
    use crate::types::web;

    let start = clock::now();
    let records: Vec<TransactionRecord> = (0..count)
        .map(|_| {
            let mut t = TransactionRecord::empty();
            t.trace_id = u128::from(ids::next_u64()) << 64 | u128::from(ids::next_u64());
            t.id = ids::next_u64();
            t.name = TransactionName::Dynamic("GET /".into(), "request".into());
            t.start = start;
            t.end = clock::now();
            t.sampled = true;
            t.sample_rate = 10_000;
            t.result = Some("HTTP 2xx".into());
            t.spans_started = 3;
            t.request = Some(Box::new(
                web::Request::new("GET", "http://127.0.0.1:3000/?page=2")
                    .http_version("1.1")
                    .header("host", "127.0.0.1:3000")
                    .header("user-agent", "wrk"),
            ));
            t.response = Some(Box::new(
                web::Response::new(200)
                    .header("content-type", "text/plain; charset=utf-8")
                    .header("content-length", "12"),
            ));
            t
        })
        .collect();
    let defaults = crate::config::Config::default();
    let mut policy = encode::Policy::default();
    policy.set_sanitize(crate::util::wildcard::WildcardList::parse(
        &defaults.sanitize_field_names,
    ));
    policy.capture_headers = defaults.capture_headers;
    let began = Instant::now();
    let mut out = Vec::with_capacity(768 * 1024);
    let mut bytes = 0;
    for t in &records {
        let _ = encode::write_transaction(&mut out, t, &policy);
        if out.len() >= 768 * 1024 {
            bytes += out.len();
            out.clear();
        }
    }
    bytes += out.len();
    (began.elapsed(), bytes)
}
