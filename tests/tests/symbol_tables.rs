//! The first stack trace of a process needs the symbol tables, whose loading can take a
//! second in a large binary: the transport thread holds it and asks the metrics thread to load
//! them, and goes on draining the queue meanwhile. Alone in its process: the tables load once.

mod common;

use std::time::{Duration, Instant};

use common::agent;
use common::log_capture::{capture, lines_containing, LINES};

#[inline(never)]
fn fails() {
    apm::capture_error!(std::io::Error::other("disk full"));
}

#[test]
fn the_first_stack_trace_waits_for_tables_loaded_on_the_metrics_thread() {
    capture();
    let h = agent::start(|c| c.log_level(apm::config::LogLevel::Debug));
    fails();
    // Loaded without a flush, which would resolve the trace on the transport thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        if let Some((_, line)) = lines_containing("symbol tables loaded on").pop() {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the tables were never loaded: {:?}",
            LINES.lock()
        );
        std::thread::park_timeout(Duration::from_millis(10));
    };
    assert!(line.contains("apm-metrics"), "{line}");
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 1);
    let frame = &errors[0]["exception"]["stacktrace"][0];
    assert_eq!(frame["function"], "symbol_tables::fails", "{frame}");
    h.finish();
}
