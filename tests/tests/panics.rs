//! The panic hook: panics become unhandled errors linked to what was current, and the hook
//! installed before still runs. A file of its own: the hook is process-wide.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::agent;

static PREVIOUS_HOOK_RUNS: AtomicUsize = AtomicUsize::new(0);

fn install_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PREVIOUS_HOOK_RUNS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
        assert!(apm::install_panic_hook());
    });
}

const PANICS_AT: u32 = line!() + 3;
#[apm::span]
fn reserve_stock(items: &[u32]) -> u32 {
    items[3]
}

#[test]
fn a_panic_in_a_span_on_a_thread_is_an_unhandled_error_of_that_span() {
    install_once();
    let h = agent::start(|c| c);
    let before = PREVIOUS_HOOK_RUNS.load(Ordering::SeqCst);
    let joined = std::thread::spawn(|| {
        let _t = apm::start_transaction("order", "job");
        reserve_stock(&[1, 2])
    })
    .join();
    assert!(joined.is_err(), "the thread panicked");
    assert_eq!(PREVIOUS_HOOK_RUNS.load(Ordering::SeqCst), before + 1);
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    let span = &h.spans()[0];
    let tx = &h.transactions()[0];
    assert_eq!(e["parent_id"], span["id"]);
    assert_eq!(e["transaction_id"], tx["id"]);
    assert_eq!(e["transaction"]["name"], "order");
    assert_eq!(span["outcome"], "failure");
    assert_eq!(tx["outcome"], "failure");
    let ex = &e["exception"];
    assert_eq!(ex["handled"], false);
    assert_eq!(ex["type"], "panic");
    assert!(
        ex["message"]
            .as_str()
            .unwrap()
            .contains("index out of bounds"),
        "{}",
        ex["message"]
    );
    let frames = ex["stacktrace"].as_array().expect("a stack trace");
    let first_app = frames
        .iter()
        .find(|f| f["library_frame"] == false)
        .expect("an application frame");
    assert!(
        first_app["function"]
            .as_str()
            .unwrap()
            .starts_with("panics::reserve_stock"),
        "{frames:?}"
    );
    assert_eq!(first_app["lineno"], PANICS_AT);
    assert!(frames.iter().all(|f| !f["function"]
        .as_str()
        .unwrap()
        .starts_with("std::panicking")));
    assert!(e["culprit"]
        .as_str()
        .unwrap()
        .starts_with("panics::reserve_stock"));
    h.finish();
}

#[test]
fn a_panic_in_a_tokio_task_is_linked_to_the_task_s_transaction() {
    install_once();
    let h = agent::start(|c| c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a runtime");
    let joined = rt.block_on(async {
        let tx = apm::Transaction::start("task", "job");
        tokio::spawn(tx.bind(async {
            tokio::task::yield_now().await;
            let empty: Option<u32> = std::hint::black_box(None);
            empty.expect("stock level")
        }))
        .await
    });
    assert!(joined.expect_err("the task panicked").is_panic());
    drop(rt);
    h.flush();
    let e = &h.errors()[0];
    let tx = &h.transactions()[0];
    assert_eq!(e["transaction_id"], tx["id"]);
    assert_eq!(tx["outcome"], "failure");
    assert_eq!(e["exception"]["handled"], false);
    assert_eq!(e["exception"]["message"], "stock level");
    h.finish();
}
