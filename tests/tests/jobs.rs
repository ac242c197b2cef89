//! Background jobs: the trace context goes into the job's payload where it is enqueued
//! (`apm::inject_headers` into a map) and the worker continues the trace from it with a `job`
//! transaction (`apm::start_transaction_with`); a job enqueued outside any trace starts one.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;

use common::agent::{self, named};

/// What a queue carries: the job's own data and the trace context it was enqueued in.
struct Job {
    invoice: u32,
    trace: HashMap<String, String>,
}

fn enqueue(queue: &mpsc::Sender<Job>, invoice: u32) {
    let mut trace = HashMap::new();
    apm::inject_headers(&mut trace);
    queue
        .send(Job { invoice, trace })
        .expect("the worker is there");
}

/// The worker: each job is a `job` transaction continuing the trace it was enqueued in.
fn work(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let t = apm::start_transaction_with("send_invoice", "job", &job.trace);
        t.set_label("invoice", f64::from(job.invoice));
        let _s = apm::start_span("render pdf", "app");
    }
}

#[test]
fn a_job_continues_the_trace_it_was_enqueued_in() {
    let h = agent::start(|c| c);
    let (queue, jobs) = mpsc::channel();
    let worker = std::thread::spawn(move || work(jobs));
    {
        let _t = apm::start_transaction("POST /orders", "request");
        let _s = apm::start_span("enqueue invoice", "app");
        enqueue(&queue, 7);
    }
    enqueue(&queue, 8);
    drop(queue);
    worker.join().expect("the worker");
    h.flush();

    let transactions = h.transactions();
    let request = named(&transactions, "POST /orders");
    let spans = h.spans();
    let enqueued = spans
        .iter()
        .find(|s| s["name"] == "enqueue invoice")
        .expect("the enqueueing span");
    let jobs: Vec<_> = transactions
        .iter()
        .filter(|t| t["name"] == "send_invoice")
        .collect();
    assert_eq!(jobs.len(), 2);
    let continued = jobs
        .iter()
        .find(|t| t["context"]["tags"]["invoice"] == 7.0)
        .expect("job 7");
    assert_eq!(continued["type"], "job");
    assert_eq!(continued["trace_id"], request["trace_id"]);
    assert_eq!(continued["parent_id"], enqueued["id"]);
    let fresh = jobs
        .iter()
        .find(|t| t["context"]["tags"]["invoice"] == 8.0)
        .expect("job 8");
    assert_ne!(fresh["trace_id"], request["trace_id"]);
    assert!(fresh.get("parent_id").is_none(), "{fresh:#}");
    h.finish();
}
