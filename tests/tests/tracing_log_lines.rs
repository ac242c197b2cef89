//! Log correlation through `tracing_subscriber::fmt`: `apm::tracing::WithTraceIds` puts the ids
//! current where an event happened into its log line, and they are the ids of the events the
//! APM Server receives. A file of its own: a process has one global subscriber.

mod common;

use std::io::Write;
use std::sync::Once;

use common::agent::{self, named};
use parking_lot::Mutex;
use tracing_subscriber::prelude::*;

/// What the fmt layer wrote, line by line.
static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Lines;

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::registry()
            .with(apm::tracing::ApmLayer::new())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(|| Lines)
                    .event_format(apm::tracing::WithTraceIds::new(
                        tracing_subscriber::fmt::format().without_time(),
                    )),
            )
            .init();
    });
}

fn line_with(lines: &str, message: &str) -> String {
    lines
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no line with {message:?} in:\n{lines}"))
        .to_owned()
}

/// The value of `key=` in a text line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[tracing::instrument]
fn charge(order: u32) {
    tracing::info!("charging card");
}

#[apm::span]
fn reserve() {
    tracing::info!("reserving stock");
}

#[test]
fn log_lines_carry_the_ids_of_the_events() {
    install();
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("checkout", "request");
        tracing::info!("checkout started");
        charge(7);
        reserve();
    }
    tracing::info!("outside any transaction");
    h.flush();

    let lines = String::from_utf8(LINES.lock().clone()).expect("text lines");
    let transaction = named(&h.transactions(), "checkout").clone();
    let spans = h.spans();
    for (message, span) in [
        ("checkout started", None),
        ("charging card", Some(named(&spans, "charge"))),
        ("reserving stock", Some(named(&spans, "reserve"))),
    ] {
        let line = line_with(&lines, message);
        assert_eq!(
            field(&line, "trace.id"),
            transaction["trace_id"].as_str(),
            "{line}"
        );
        assert_eq!(
            field(&line, "transaction.id"),
            transaction["id"].as_str(),
            "{line}"
        );
        assert_eq!(
            field(&line, "span.id"),
            span.and_then(|s| s["id"].as_str()),
            "{line}"
        );
        assert!(
            line.contains(message),
            "the formatter's own line is kept: {line}"
        );
    }
    // `#[instrument]`'s fields are still formatted by fmt.
    assert!(line_with(&lines, "charging card").contains("order=7"));
    let outside = line_with(&lines, "outside any transaction");
    assert!(!outside.contains("trace.id"), "{outside}");
    h.finish();
}
