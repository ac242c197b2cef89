//! A traced statement allocates nothing on the application thread once its text has been
//! seen (a `&'static str`, as most statements are): the span holds two shared pointers, the
//! connection's endpoint and the statement's text and signature, which each thread
//! remembers. Counted against the same statements run on the bare driver, whose own
//! allocations are the same in both.

mod common;

use apm_tests::alloc::{count_allocations, Counting};
use common::agent;

#[global_allocator]
static GLOBAL: Counting = Counting;

const QUERIES: usize = 5_000;

#[test]
fn a_static_statement_allocates_nothing_beyond_what_the_driver_does() {
    let h = agent::start(|c| c.transaction_max_spans(100_000).max_queue_size(100_000));
    let bare = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    let traced = apm::rusqlite::Connection::open_in_memory().expect("an in-memory database");
    let run_bare = || {
        for _ in 0..QUERIES {
            let one: i64 = bare.query_row("SELECT 1", [], |r| r.get(0)).expect("a row");
            assert_eq!(one, 1);
        }
    };
    let run_traced = || {
        for _ in 0..QUERIES {
            let one: i64 = traced
                .query_row("SELECT 1", [], |r| r.get(0))
                .expect("a row");
            assert_eq!(one, 1);
        }
    };
    let t = apm::start_transaction("queries", "custom");
    // Warm up: the statement is seen once, the staging buffers are in place.
    run_traced();
    let driver = count_allocations(run_bare);
    let with_spans = count_allocations(run_traced);
    drop(t);
    h.flush();
    let spans = h.spans();
    assert!(!spans.is_empty(), "the statements were recorded");
    assert!(
        spans.iter().all(|s| s["name"] == "SELECT"),
        "{:?}",
        spans.first()
    );
    // A full buffer (256 events) is handed over to the transport thread and replaced from
    // the recycled pool, or, when none is recycled yet (a loaded machine), by a new one: at
    // most one allocation per hand-over, none per statement.
    let hand_overs = (QUERIES / 256 + 1) as u64;
    assert!(
        with_spans <= driver + hand_overs,
        "{QUERIES} traced statements allocated {with_spans} times, the driver alone {driver} \
         ({hand_overs} buffer hand-overs)"
    );
    h.finish();
}
