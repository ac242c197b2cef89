//! `apm::apalis` on an apalis 1.0 worker fed by apalis's in-memory backend, with the mock APM
//! Server behind the agent: each task run is a `job` transaction named after the task's type,
//! a failing run has outcome `failure` and its error captured, retries are labelled
//! `attempt`, and a task built with `apm::apalis::task` inside a transaction continues that
//! trace. Every event is checked against the intake schemas.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use apalis::prelude::RetryPolicy;
use apalis::prelude::WorkerBuilderExt as _;
use apalis_core::backend::memory::MemoryStorage;
use apalis_core::backend::TaskSink as _;
use apalis_core::error::BoxDynError;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use common::agent::{self, named};
use serde_json::Value;

/// The task's arguments (the transactions' name is this type's).
#[derive(Debug, Clone)]
struct SendInvoice {
    invoice: u32,
    declined: bool,
}

#[derive(Debug)]
struct PaymentDeclined(u32);

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment for invoice {} declined", self.0)
    }
}

impl std::error::Error for PaymentDeclined {}

/// Runs of tasks expected: invoice 1 once, invoice 2 three times (two retries), invoice 3 once.
const RUNS: usize = 5;

async fn send_invoice(
    job: SendInvoice,
    worker: WorkerContext,
    runs: apalis_core::task::data::Data<Arc<AtomicUsize>>,
) -> Result<(), BoxDynError> {
    {
        let _s = apm::start_span("render pdf", "app");
        apm::set_label("invoice", job.invoice);
    }
    if runs.fetch_add(1, Ordering::SeqCst) + 1 == RUNS {
        // Every run has started: the worker finishes those in flight, then `run` returns.
        worker.stop().expect("the worker is running");
    }
    if job.declined {
        return Err(Box::new(PaymentDeclined(job.invoice)));
    }
    Ok(())
}

fn invoice(t: &Value) -> f64 {
    t["context"]["tags"]["invoice"]
        .as_f64()
        .unwrap_or_else(|| panic!("no invoice label: {t:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_run_is_a_job_transaction_with_its_outcome_errors_and_attempts() {
    let h = agent::start(|c| c.span_compression_enabled(false));
    let mut storage = MemoryStorage::new();
    storage
        .push(SendInvoice {
            invoice: 1,
            declined: false,
        })
        .await
        .expect("pushed");
    storage
        .push(SendInvoice {
            invoice: 2,
            declined: true,
        })
        .await
        .expect("pushed");
    let task = {
        let _t = apm::start_transaction("POST /orders", "request");
        let _s = apm::start_span("enqueue invoice", "app");
        apm::apalis::task(SendInvoice {
            invoice: 3,
            declined: false,
        })
        .build()
    };
    storage.push_task(task).await.expect("pushed");

    let worker = WorkerBuilder::new("invoices")
        .backend(storage)
        .data(Arc::new(AtomicUsize::new(0)))
        .retry(RetryPolicy::retries(2))
        .layer(apm::apalis::ApmLayer::new())
        .build(send_invoice);
    worker.run().await.expect("the worker ran");
    h.flush();

    let transactions = h.transactions();
    let jobs: Vec<&Value> = transactions.iter().filter(|t| t["type"] == "job").collect();
    assert_eq!(jobs.len(), RUNS, "{transactions:#?}");
    for job in &jobs {
        assert_eq!(job["name"], "SendInvoice");
    }
    let of = |n: f64| -> Vec<&Value> { jobs.iter().copied().filter(|t| invoice(t) == n).collect() };

    let done = of(1.0);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["outcome"], "success");
    assert!(
        done[0]["context"]["tags"].get("attempt").is_none(),
        "{:#}",
        done[0]
    );

    // Three runs of the declined invoice: the first unlabelled, the retries 2 and 3.
    let declined = of(2.0);
    assert_eq!(declined.len(), 3, "{declined:#?}");
    let mut attempts: Vec<Option<f64>> = declined
        .iter()
        .map(|t| t["context"]["tags"]["attempt"].as_f64())
        .collect();
    attempts.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(attempts, [None, Some(2.0), Some(3.0)]);
    let errors = h.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for run in &declined {
        assert_eq!(run["outcome"], "failure");
        let error = errors
            .iter()
            .find(|e| e["transaction_id"] == run["id"])
            .unwrap_or_else(|| panic!("no error of {run:#}"));
        assert_eq!(error["parent_id"], run["id"]);
        assert_eq!(error["trace_id"], run["trace_id"]);
        assert_eq!(
            error["exception"]["message"],
            "payment for invoice 2 declined"
        );
    }

    // Enqueued inside a transaction: the trace continues, the enqueueing span as the parent.
    let request = named(&transactions, "POST /orders");
    let spans = h.spans();
    let enqueued = named(&spans, "enqueue invoice");
    for fresh in done.iter().chain(&declined) {
        assert_ne!(fresh["trace_id"], request["trace_id"], "{fresh:#}");
        assert!(fresh.get("parent_id").is_none(), "{fresh:#}");
    }
    let continued = of(3.0);
    assert_eq!(continued.len(), 1);
    assert_eq!(continued[0]["outcome"], "success");
    assert_eq!(continued[0]["trace_id"], request["trace_id"]);
    assert_eq!(continued[0]["parent_id"], enqueued["id"]);

    // The handler's span is a child of its run's transaction.
    for job in &jobs {
        let rendered = spans
            .iter()
            .filter(|s| s["name"] == "render pdf" && s["transaction_id"] == job["id"])
            .count();
        assert_eq!(rendered, 1, "{job:#}");
    }
    h.finish();
}
