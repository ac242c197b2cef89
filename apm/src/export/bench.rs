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
