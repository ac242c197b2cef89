//! Memory stays within the limits under a flood of traces from many connections at once.

mod common;

use std::sync::atomic::Ordering;
use std::thread;

use common::{ndjson, post, META};

const THREADS: usize = 8;
const REQUESTS: usize = 50;
const PER_REQUEST: usize = 25;

#[test]
fn a_flood_is_kept_within_the_trace_and_byte_limits() {
    let server = common::server(|o| {
        o.max_traces = 100;
        o.max_bytes = 256 * 1024;
    });
    let addr = server.addr();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for r in 0..REQUESTS {
                    let mut lines = vec![META.to_owned()];
                    for i in 0..PER_REQUEST {
                        // Distinct traces, with a payload large enough for the byte limit to
                        // matter before the count limit.
                        lines.push(format!(
                            r#"{{"transaction":{{"id":"{:016x}","trace_id":"{:032x}","name":"flood","type":"request","duration":1.0,"span_count":{{"started":0}},"context":{{"tags":{{"pad":"{}"}}}}}}}}"#,
                            i, (t * REQUESTS + r) * PER_REQUEST + i, "x".repeat(1000)
                        ));
                    }
                    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let reply = post(
                        addr,
                        "/intake/v2/events",
                        "Content-Type: application/x-ndjson\r\n",
                        &ndjson(&refs),
                    );
                    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    let total = THREADS * REQUESTS * PER_REQUEST;
    assert_eq!(
        server.stats().events_accepted.load(Ordering::Relaxed),
        total as u64
    );
    let (traces, bytes) = server.memory();
    assert!(traces <= 100, "{traces} traces kept");
    assert!(bytes <= 256 * 1024, "{bytes} bytes kept");
    // Full up to the byte limit: ~1 KiB per trace, so about 250 would fit; 100 are kept.
    assert_eq!(traces, 100);
    let list = common::get(addr, "/ui/api/traces?limit=1000").json();
    assert_eq!(list["traces"].as_array().map(Vec::len), Some(100));
    assert_eq!(list["evicted"], (total - 100) as u64);
}

#[test]
fn the_byte_limit_holds_for_one_huge_trace_too() {
    let server = common::server(|o| o.max_bytes = 64 * 1024);
    let addr = server.addr();
    for r in 0..40 {
        let mut lines = vec![META.to_owned()];
        for i in 0..20 {
            lines.push(format!(
                r#"{{"span":{{"id":"{:016x}","trace_id":"{:032x}","parent_id":"aaaaaaaaaaaaaaaa","name":"s","type":"app","duration":1.0,"timestamp":1700000000000000,"pad":"{}"}}}}"#,
                r * 100 + i, 1, "y".repeat(500)
            ));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let reply = post(addr, "/intake/v2/events", "", &ndjson(&refs));
        assert_eq!(
            reply.status,
            202,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let (_, bytes) = server.memory();
    assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
}
