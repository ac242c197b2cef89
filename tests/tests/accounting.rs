//! Nothing lost without a count: every event the application records is delivered to the APM
//! Server or counted as dropped, by reason, exactly, whatever the server does (overloaded,
//! down, slow, refusing and backed off from, or the agent stopping meanwhile).

mod common;

use std::time::{Duration, Instant};

use apm_tests::MockServer;
use common::agent::{self, Harness};

/// Records `n` transactions of `spans` spans each on this thread; the events recorded.
fn record(n: usize, spans: usize) -> u64 {
    for i in 0..n {
        let _t = apm::start_transaction(format!("tx{i}"), "custom");
        for _ in 0..spans {
            let _s = apm::start_span("work", "app");
        }
    }
    (n * (1 + spans)) as u64
}

/// Records from `threads` threads at once (enough to outpace the transport); the events
/// recorded.
fn record_from_threads(threads: usize, n: usize, spans: usize) -> u64 {
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || record(n, spans)))
        .collect();
    workers
        .into_iter()
        .map(|w| w.join().expect("recording thread"))
        .sum()
}

/// Events the server accepted, of every kind.
fn delivered(server: &MockServer) -> u64 {
    server.with_recorded(|r| {
        ["transaction", "span", "error", "metricset"]
            .iter()
            .map(|k| r.count(k) as u64)
            .sum()
    })
}

/// recorded = delivered + dropped (by reason), and the server saw exactly what was delivered.
fn assert_accounted(recorded: u64, stats: apm::Stats, server: &MockServer) {
    assert_eq!(stats.events_recorded, recorded, "{stats:#?}");
    assert_eq!(stats.events_sent, delivered(server), "{stats:#?}");
    assert_eq!(
        recorded,
        stats.events_sent
            + stats.events_dropped_queue_full
            + stats.events_dropped_send_failed
            + stats.events_dropped_encode_failed
            + stats.events_dropped_shutdown
            + stats.transactions_unsampled_not_sent,
        "{stats:#?}"
    );
}

/// Metrics off: every event counted is one the test recorded.
fn start(configure: impl FnOnce(apm::ConfigBuilder) -> apm::ConfigBuilder) -> Harness {
    agent::start(|c| configure(c.metrics_interval(Duration::ZERO).central_config(false)))
}

/// A second handle on the running agent: it still reads the counters once the first one has
/// stopped the agent.
fn observer() -> apm::Agent {
    apm::init_with(apm::Config::builder().service_name("apm-tests").build())
}

#[test]
fn overload_drops_at_the_queue_and_the_next_flush_says_so() {
    let h = start(|c| c.max_queue_size(512));
    h.server.set_intake_delay(Duration::from_millis(200));
    let recorded = record_from_threads(2, 2_000, 50);
    let stats = h.agent().stats();
    assert!(stats.events_dropped_queue_full > 0, "{stats:?}");
    // Every request succeeded, but events were lost on the way: the flush does not claim
    // success.
    assert!(!h.agent().flush(Duration::from_secs(30)));
    // Nothing lost since: the next flush succeeds.
    assert!(h.agent().flush(Duration::from_secs(30)));
    assert_accounted(recorded, h.agent().stats(), &h.server);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

#[test]
fn a_server_that_is_down_loses_counted_events() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let mut h = start(|c| {
        c.server_url(url.clone())
            .api_request_size(4 * 1024)
            .max_queue_size(1024)
    });
    let observer = observer();
    let recorded = record_from_threads(2, 500, 20);
    assert!(!h.agent().flush(Duration::from_secs(10)));
    // Backing off, a body waits for the next attempt: it is dropped, and counted, on stop.
    drop(h.agent.take());
    let stats = observer.stats();
    assert!(stats.events_dropped_send_failed > 0, "{stats:?}");
    assert!(stats.requests_failed > 0, "{stats:?}");
    assert_accounted(recorded, stats, &h.server);
    h.finish();
}

#[test]
fn a_slow_server_loses_nothing_uncounted() {
    let h = start(|c| {
        c.server_timeout(Duration::from_secs(10))
            .api_request_size(16 * 1024)
            .max_queue_size(1024)
    });
    h.server.set_intake_delay(Duration::from_millis(300));
    let mut recorded = 0;
    for _ in 0..5 {
        recorded += record_from_threads(2, 200, 20);
    }
    h.agent().flush(Duration::from_secs(60));
    assert_accounted(recorded, h.agent().stats(), &h.server);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

/// Fails twice, so that the next attempt waits ~1 s; what arrives meanwhile fills one request's
/// worth, the rest is dropped and counted; after the grace period the rest goes out.
fn back_off(h: &Harness) -> u64 {
    h.server.set_intake_status(503);
    let mut recorded = 0;
    for _ in 0..2 {
        recorded += record(1, 0);
        assert!(!h.agent().flush(Duration::from_secs(5)));
    }
    recorded
}

#[test]
fn backoff_keeps_one_request_and_counts_the_rest() {
    let h = start(|c| c.api_request_size(2 * 1024));
    let mut recorded = back_off(&h);
    let backing_off = Instant::now();
    recorded += record(200, 3);
    assert!(!h.agent().flush(Duration::from_secs(5)));
    h.server.set_intake_status(202);
    // After the grace period (1 s ± 10 %) the waiting request goes out.
    assert!(h.server.wait_for(
        |_| backing_off.elapsed() >= Duration::from_millis(1200),
        Duration::from_secs(5)
    ));
    h.agent().flush(Duration::from_secs(10));
    let stats = h.agent().stats();
    assert!(stats.events_dropped_send_failed > 2, "{stats:?}");
    assert!(stats.events_sent > 0, "{stats:?}");
    assert_accounted(recorded, stats, &h.server);
    h.finish();
}

#[test]
fn stopping_while_backing_off_counts_what_waited() {
    let mut h = start(|c| c);
    let observer = observer();
    let mut recorded = back_off(&h);
    recorded += record(10, 2);
    // Within the ~1 s grace period: the body waits, then the agent stops.
    drop(h.agent.take());
    let stats = observer.stats();
    assert_eq!(stats.events_dropped_shutdown, 30, "{stats:?}");
    assert_accounted(recorded, stats, &h.server);
    h.finish();
}

#[test]
fn a_thread_that_exits_inside_a_transaction_hands_its_events_over() {
    let h = start(|c| c);
    std::thread::spawn(|| {
        let t = apm::start_transaction("never ended", "custom");
        for _ in 0..10 {
            let _s = apm::start_span("work", "app");
        }
        // The thread ends inside its transaction.
        std::mem::forget(t);
    })
    .join()
    .expect("recording thread");
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.spans().len(), 10);
    let stats = h.agent().stats();
    assert_accounted(stats.events_recorded, stats, &h.server);
    assert!(stats.events_recorded >= 10, "{stats:?}");
    h.finish();
}

/// The sum of the increases the server received for counter `name`.
fn reported(server: &MockServer, name: &str) -> u64 {
    server.with_recorded(|r| {
        r.events_of("metricset")
            .filter_map(|m| m["samples"][name]["value"].as_f64())
            .sum::<f64>() as u64
    })
}

#[test]
fn health_metrics_report_every_drop_while_the_queue_overflows() {
    let mut h = agent::start(|c| {
        c.metrics_interval(Duration::from_millis(100))
            .max_queue_size(512)
            .server_timeout(Duration::from_secs(10))
            .central_config(false)
    });
    let observer = observer();
    // Each answer takes 300 ms: the queue overflows for most of the time the flood lasts, and
    // several reports are due meanwhile.
    h.server.set_intake_delay(Duration::from_millis(300));
    let until = Instant::now() + Duration::from_millis(1500);
    let floods: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                while Instant::now() < until {
                    record(10, 50);
                }
            })
        })
        .collect();
    for flood in floods {
        flood.join().expect("flood thread");
    }
    // The last report goes when the agent stops.
    drop(h.agent.take());
    let stats = observer.stats();
    assert!(stats.events_dropped_queue_full > 0, "{stats:?}");
    assert_eq!(stats.events_dropped_send_failed, 0, "{stats:?}");
    assert_eq!(
        reported(&h.server, "agent.events.dropped.queue"),
        stats.events_dropped_queue_full,
        "{stats:#?}"
    );
    assert_eq!(reported(&h.server, "agent.events.dropped.error"), 0);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

#[test]
fn a_flush_covers_what_its_own_thread_staged_inside_a_transaction() {
    let h = start(|c| c);
    let t = apm::start_transaction("open", "custom");
    for _ in 0..5 {
        let _s = apm::start_span("work", "app");
    }
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(
        h.spans().len(),
        5,
        "a successful flush sent what was recorded"
    );
    drop(t);
    h.finish();
}

#[test]
fn a_flush_does_not_claim_what_another_thread_still_holds() {
    use std::sync::mpsc;
    let h = start(|c| c);
    let (recorded_tx, recorded) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let t = apm::start_transaction("open", "custom");
        for _ in 0..5 {
            let _s = apm::start_span("work", "app");
        }
        recorded_tx.send(()).expect("signal");
        // Still inside the transaction until told to leave.
        leave_rx.recv().expect("leave");
        drop(t);
    });
    recorded.recv().expect("recorded");
    // Five spans were recorded and the transport cannot reach them yet.
    assert!(!h.agent().flush(Duration::from_secs(10)));
    leave.send(()).expect("leave");
    worker.join().expect("worker");
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.spans().len(), 5);
    assert_eq!(h.transactions().len(), 1);
    h.finish();
}

#[test]
fn while_backing_off_the_first_request_waits_and_later_events_are_not_encoded() {
    let h = start(|c| c.api_request_size(2 * 1024));
    let mut recorded = back_off(&h);
    let backing_off = Instant::now();
    recorded += record(200, 0);
    assert!(!h.agent().flush(Duration::from_secs(5)));
    h.server.set_intake_status(202);
    assert!(h.server.wait_for(
        |_| backing_off.elapsed() >= Duration::from_millis(1200),
        Duration::from_secs(5)
    ));
    h.agent().flush(Duration::from_secs(10));
    // The request that waited holds the first transactions recorded while backing off: those
    // after it were dropped as they came, never serialised into a body thrown away later.
    let names: Vec<String> = h
        .transactions()
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!names.is_empty() && names.len() < 200, "{names:?}");
    let expected: Vec<String> = (0..names.len()).map(|i| format!("tx{i}")).collect();
    assert_eq!(names, expected);
    assert_accounted(recorded, h.agent().stats(), &h.server);
    h.finish();
}

#[test]
fn an_error_goes_out_without_waiting_for_the_batch() {
    let h = start(|c| c.api_request_time(Duration::from_secs(30)));
    let t = apm::start_transaction("open", "custom");
    let parse = "x".parse::<u32>();
    apm::capture_error!(parse.unwrap_err());
    // No flush, the transaction still open, the request not due for 30 s.
    assert!(h.server.wait_for_errors(1, Duration::from_secs(5)));
    drop(t);
    h.finish();
}

/// One transaction in so many captures an error (in `record_with_errors`).
const ERROR_EVERY: usize = 10;

/// [`record`], with an error captured in every [`ERROR_EVERY`]th transaction, after its
/// spans; the events recorded.
fn record_with_errors(n: usize, spans: usize) -> u64 {
    for i in 0..n {
        let _t = apm::start_transaction(format!("tx{i}"), "custom");
        for _ in 0..spans {
            let _s = apm::start_span("work", "app");
        }
        if i % ERROR_EVERY == 0 {
            apm::capture_error!(std::io::Error::other("under pressure"));
        }
    }
    (n * (1 + spans) + n.div_ceil(ERROR_EVERY)) as u64
}

#[test]
fn under_pressure_spans_go_first() {
    // A slow server and little room for the next request while one waits: the queue
    // overflows.
    let h = start(|c| {
        c.max_queue_size(512)
            .api_request_size(1024)
            .server_timeout(Duration::from_secs(10))
    });
    h.server.set_intake_delay(Duration::from_millis(300));
    let (threads, n, spans) = (2, 1_000, 50);
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || record_with_errors(n, spans)))
        .collect();
    let recorded: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("recording thread"))
        .sum();
    h.agent().flush(Duration::from_secs(60));
    let stats = h.agent().stats();
    assert!(stats.events_dropped_queue_full > 0, "{stats:?}");
    let transactions = h.transactions().len() as f64 / (threads * n) as f64;
    let errors = h.errors().len() as f64 / (threads * n / ERROR_EVERY) as f64;
    let spans = h.spans().len() as f64 / (threads * n * spans) as f64;
    assert!(
        transactions > 2.0 * spans && errors > 2.0 * spans,
        "delivered: {transactions:.3} of the transactions, {errors:.3} of the errors, \
         {spans:.3} of the spans"
    );
    assert_accounted(recorded, stats, &h.server);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

#[test]
fn span_count_leaves_out_the_spans_dropped_at_the_queue() {
    let h = start(|c| {
        c.max_queue_size(512)
            .api_request_size(1024)
            .server_timeout(Duration::from_secs(10))
    });
    h.server.set_intake_delay(Duration::from_millis(300));
    let spans_each = 50;
    record_from_threads(2, 500, spans_each);
    h.agent().flush(Duration::from_secs(60));
    assert!(h.agent().stats().events_dropped_queue_full > 0);
    let mut delivered = std::collections::HashMap::<String, u64>::new();
    for span in h.spans() {
        *delivered
            .entry(
                span["transaction_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    let mut partial = 0;
    for t in h.transactions() {
        let id = t["id"].as_str().unwrap_or_default();
        let sent = delivered.get(id).copied().unwrap_or(0);
        let started = t["span_count"]["started"].as_u64().unwrap_or(0);
        let dropped = t["span_count"]["dropped"].as_u64().unwrap_or(0);
        assert_eq!(started, sent, "{t:#}");
        assert_eq!(started + dropped, spans_each as u64, "{t:#}");
        partial += u64::from(sent < spans_each as u64);
    }
    assert!(
        partial > 0,
        "no transaction lost spans: the test proves nothing"
    );
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

#[test]
fn a_slow_answer_does_not_stall_intake() {
    // A queue of 1 000 events; every answer takes a second. While a request waits for its
    // answer the transport keeps taking events: none is dropped.
    let h = start(|c| {
        c.api_request_time(Duration::from_millis(200))
            .max_queue_size(1000)
    });
    h.server.set_intake_delay(Duration::from_secs(1));
    let mut recorded = 0;
    // About 10 000 events a second for three seconds, as an application would send them:
    // ten times what the queue holds, during each wait.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        recorded += record(10, 9);
        std::thread::sleep(Duration::from_millis(10));
    }
    h.agent().flush(Duration::from_secs(30));
    let stats = h.agent().stats();
    assert_eq!(stats.events_dropped_queue_full, 0, "{stats:?}");
    assert!(stats.events_sent > 0, "{stats:?}");
    assert_accounted(recorded, stats, &h.server);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}
