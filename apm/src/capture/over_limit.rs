//! Exit calls past `transaction_max_spans` (database statements, cache commands, HTTP
//! requests, messages sent): not spans, but timed anyway, so that the transaction's `dropped_spans_stats`
//! counts them with their duration and outcome.

use std::sync::Arc;

use super::shared::TxnShared;
use super::stack;
use crate::types::clock::{self, Tick};
#[cfg(apm_db_client)]
use crate::types::db::DbEndpoint;
use crate::types::dropped_exits::ExitTarget;
use crate::types::outcome::Outcome;

/// A call run past `transaction_max_spans`: counted, with its duration and outcome, in its
/// transaction's `dropped_spans_stats` when dropped.
#[derive(Debug)]
pub(crate) struct OverLimitExit {
    txn: Arc<TxnShared>,
    target: ExitTarget,
    start: Tick,
    outcome: Option<Outcome>,
}

impl OverLimitExit {
    /// Starts timing a call to `target()`, if the current transaction is sampled and past its
    /// span limit (and the current span is not an exit span, under which nothing counts).
    fn start(target: impl FnOnce() -> Option<ExitTarget>) -> Option<Self> {
        let txn = stack::over_span_limit()?;
        Some(OverLimitExit {
            txn,
            target: target()?,
            start: clock::now(),
            outcome: None,
        })
    }

    /// A statement or command on `endpoint`.
    #[cfg(apm_db_client)]
    pub(crate) fn start_db(endpoint: &Arc<DbEndpoint>) -> Option<Self> {
        Self::start(|| Some(ExitTarget::Db(Arc::clone(endpoint))))
    }

    /// A request to `url` (an absolute URL).
    #[cfg(apm_http_client)]
    pub(crate) fn start_http(url: &str) -> Option<Self> {
        Self::start(|| ExitTarget::http(url))
    }

    /// A message sent to `queue` through `system` (`rabbitmq`, `nats`).
    #[cfg(apm_messaging)]
    pub(crate) fn start_message(system: &'static str, queue: &str) -> Option<Self> {
        Self::start(|| {
            Some(ExitTarget::Message {
                system,
                queue: queue.into(),
            })
        })
    }

    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for OverLimitExit {
    fn drop(&mut self) {
        let outcome = match self.outcome {
            _ if std::thread::panicking() => Outcome::Failure,
            Some(outcome) => outcome,
            None => Outcome::Success,
        };
        let ns = clock::nanos_between(self.start, clock::now());
        self.txn.add_dropped_exit(&self.target, outcome, ns);
    }
}
