//! The `apm-metrics` thread (placeholder until it lands).

use std::sync::Arc;

use crate::tracer::Tracer;
use crate::worker::{Stop, Worker};

/// Starts the metrics thread; `None` when metrics are off (`metrics_interval` 0).
pub(crate) fn start(_tracer: &'static Tracer, _stop: Arc<Stop>) -> Option<Worker> {
    None
}
