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
