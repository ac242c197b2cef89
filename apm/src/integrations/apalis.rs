//! [apalis](https://docs.rs/apalis) 1.0 background jobs (feature `apalis`): a `job`
//! transaction for each run of a task, continuing the trace the task was enqueued in.
//!
//! # Workers
//!
//! Add [`ApmLayer`] to the worker, after `.retry(...)` when the worker retries (a layer added
//! later wraps the task closer to the handler, so that each attempt is its own transaction):
//!
//! ```no_run
//! use apalis_core::backend::memory::MemoryStorage;
//! use apalis_core::error::BoxDynError;
//! use apalis_core::worker::builder::WorkerBuilder;
//!
//! #[derive(Clone)]
//! struct SendEmail {
//!     to: String,
//! }
//!
//! async fn send_email(email: SendEmail) -> Result<(), BoxDynError> {
//!     # let _ = email.to;
//!     Ok(())
//! }
//!
//! # async fn f() {
//! let storage = MemoryStorage::<SendEmail>::new();
//! let worker = WorkerBuilder::new("email-worker")
//!     .backend(storage)
//!     // With apalis's `retry` feature, `.retry(RetryPolicy::retries(3))` goes here.
//!     .layer(apm::apalis::ApmLayer::new())
//!     .build(send_email);
//! worker.run().await.expect("the worker");
//! # }
//! ```
//!
//! Each run of a task is a transaction:
//!
//! - type `job`, named after the task's argument type, without its module path
//!   (`SendEmail` for `my_app::jobs::SendEmail`, `Vec<u32>` for `alloc::vec::Vec<u32>`): the
//!   job type, the same for every worker processing it (the worker's name is not used);
//! - outcome `success` when the handler returns `Ok`, `failure` when it returns an error,
//!   which is then captured as an error event of the transaction;
//! - label `attempt` on the runs that are retries: 2 for the first retry, 3 for the next...
//!   (apalis's attempt count, `Attempt`, which counts the first run as 1); a first run has
//!   none;
//! - the handler's spans and errors are the transaction's children (the handler's future runs
//!   inside it).
//!
//! Added before `.retry(...)` instead, the layer makes one transaction of all the attempts of
//! a task: label `attempt` the number of runs, the last run's error only.
//!
//! A run cancelled before it completes (the worker shut down, a timeout layer outside this
//! one), or a handler that panics, ends the transaction then, without an outcome (apalis's
//! `catch_panic` layer, added after this one, turns a panic into an error: outcome
//! `failure`). The handler's result goes back to apalis unchanged; the service's error type
//! is apalis's `BoxDynError`, the one every worker service is converted to.
//!
//! # Enqueueing
//!
//! A task built with [`task`] carries the current trace context (`traceparent`, `tracestate`)
//! in its metadata (apalis's `MetadataStore`, kept with the task by the in-memory backend and
//! by the backends that store a task's metadata), and its transaction continues that trace.
//! Push it with `TaskSink::push_task`:
//!
//! ```no_run
//! use apalis_core::backend::memory::MemoryStorage;
//! use apalis_core::backend::TaskSink as _;
//!
//! # #[derive(Clone)] struct SendEmail { to: String }
//! # async fn f(mut storage: MemoryStorage<SendEmail>, to: String) {
//! let _t = apm::start_transaction("POST /signup", "request");
//! let task = apm::apalis::task(SendEmail { to }).build();
//! storage.push_task(task).await.expect("pushed");
//! # }
//! ```
//!
//! [`inject`] writes the same into a `MetadataStore` of your own. A task enqueued outside any
//! transaction, or with `push` (no metadata), starts a new trace. A backend that does not
//! keep metadata can still carry the context in the task's arguments, a map filled by
//! `apm::inject_headers` and read with `apm::start_transaction_with` (README, "Background
//! jobs and scheduled tasks").

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::attempt::Attempt;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::Task;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Context, HeaderSource, Outcome, Transaction, WithContext};

/// A `tower::Layer` for an apalis worker: a `job` transaction for each task run (see the
/// [module documentation](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApmLayer {
    _private: (),
}

impl ApmLayer {
    /// The layer.
    pub fn new() -> ApmLayer {
        ApmLayer::default()
    }
}

impl<S> Layer<S> for ApmLayer {
    type Service = ApmService<S>;

    fn layer(&self, inner: S) -> ApmService<S> {
        ApmService { inner }
    }
}

/// The worker's service wrapped by [`ApmLayer`].
#[derive(Debug, Clone)]
pub struct ApmService<S> {
    inner: S,
}

impl<S, Args> Service<Task<Args>> for ApmService<S>
where
    S: Service<Task<Args>>,
    S::Error: Into<BoxDynError>,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = ApmFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let transaction = Transaction::start_with(
            short_type_name(std::any::type_name::<Args>()),
            "job",
            &Metadata(task.ctx().metadata()),
        );
        // Shared with the task's clones: apalis counts this run when the handler is first
        // polled (inside this layer), so the count is read at the end.
        let attempt = task.ctx().raw_attempt().clone();
        let future = transaction.context().bind(self.inner.call(task));
        ApmFuture {
            future,
            run: Some(Run {
                transaction,
                attempt,
            }),
        }
    }
}

/// The transaction of a run; ended when dropped (a run cancelled before its end).
#[derive(Debug)]
struct Run {
    transaction: Transaction,
    attempt: Attempt,
}

impl Run {
    fn finish<T>(self, result: &Result<T, BoxDynError>) {
        let transaction = &self.transaction;
        let attempt = self.attempt.current();
        // Retries only: a first run does not know whether it will be retried.
        if attempt > 1 {
            transaction.set_label("attempt", attempt);
        }
        match result {
            Ok(_) => transaction.set_outcome(Outcome::Success),
            Err(err) => {
                transaction.set_outcome(Outcome::Failure);
                let _in = transaction.context().attach();
                let err: &(dyn std::error::Error + 'static) = &**err;
                crate::capture_error!(err);
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.transaction.end();
    }
}

pin_project_lite::pin_project! {
    /// The future of a task run inside its transaction.
    #[derive(Debug)]
    pub struct ApmFuture<F> {
        #[pin]
        future: WithContext<F>,
        run: Option<Run>,
    }
}

impl<F, T, E> Future for ApmFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxDynError>,
{
    type Output = Result<T, BoxDynError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.future.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result.map_err(Into::into),
        };
        if let Some(run) = this.run.take() {
            run.finish(&result);
        }
        Poll::Ready(result)
    }
}

/// A task builder whose metadata carries the current trace context, so that the task's
/// transaction continues it (see the [module documentation](self)).
pub fn task<Args>(args: Args) -> TaskBuilder<Args> {
    let mut metadata = MetadataStore::new();
    inject(&mut metadata);
    TaskBuilder::new(args).with_metadata(metadata)
}

/// Writes the current trace context (`traceparent`, `tracestate`) into a task's metadata,
/// replacing what it had under those names; outside any transaction it writes nothing.
pub fn inject(metadata: &mut MetadataStore) {
    let context = Context::current();
    if context.is_empty() {
        return;
    }
    context.inject(&mut |name: &'static str, value: &str| {
        metadata.remove(name);
        // Cannot fail: the name was just removed.
        let _ = metadata.insert(name, value);
    });
}

/// A task's metadata as a [`HeaderSource`] (names compared case-insensitively).
struct Metadata<'a>(&'a MetadataStore);

impl HeaderSource for Metadata<'_> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        if let Some(value) = self.0.get(name) {
            each(value);
            return;
        }
        for (key, value) in self.0.iter() {
            if key.eq_ignore_ascii_case(name) {
                each(value);
            }
        }
    }
}

/// A type's name without module paths: `my_app::jobs::SendEmail` is `SendEmail`,
/// `alloc::vec::Vec<my_app::Id>` is `Vec<Id>`.
fn short_type_name(full: &'static str) -> Cow<'static, str> {
    // A plain path (the usual task type): its last segment, borrowed, so a run allocates no
    // name.
    if !full.contains(['<', '(', '[', '&', ' ']) {
        return Cow::Borrowed(full.rsplit("::").next().unwrap_or(full));
    }
    let mut short = String::with_capacity(full.len());
    // Where the path being read starts in `short`: a `::` drops what came since.
    let mut path_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            short.truncate(path_start);
        } else {
            short.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                path_start = short.len();
            }
        }
    }
    Cow::Owned(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_type_without_its_paths() {
        assert_eq!(short_type_name("u32"), "u32");
        assert_eq!(short_type_name("my_app::jobs::SendEmail"), "SendEmail");
        assert!(matches!(
            short_type_name("my_app::jobs::SendEmail"),
            Cow::Borrowed("SendEmail")
        ));
        assert_eq!(short_type_name("alloc::vec::Vec<my_app::Id>"), "Vec<Id>");
        assert_eq!(
            short_type_name("(a::B, &c::D<e::F>, [g::H; 2])"),
            "(B, &D<F>, [H; 2])"
        );
    }

    #[test]
    fn metadata_is_read_case_insensitively() {
        let mut store = MetadataStore::new();
        store.insert("TraceParent", "a").expect("new key");
        store.insert("other", "b").expect("new key");
        let mut seen = Vec::new();
        Metadata(&store).header_values("traceparent", &mut |v| seen.push(v.to_owned()));
        assert_eq!(seen, ["a"]);
        Metadata(&MetadataStore::new()).header_values("traceparent", &mut |_| panic!("none"));
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>() {}
        send::<ApmFuture<std::future::Ready<Result<(), BoxDynError>>>>();
        send::<ApmService<()>>();
    }

    #[test]
    fn outside_any_transaction_nothing_is_injected() {
        let mut store = MetadataStore::new();
        inject(&mut store);
        assert_eq!(store.iter().count(), 0);
    }
}
