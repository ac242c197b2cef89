//! The `apm-config` thread (placeholder until it lands).

use std::sync::Arc;

use crate::tracer::Tracer;
use crate::worker::{Stop, Worker};

/// Starts the central configuration thread; `None` when `central_config` is off.
pub(crate) fn start(_tracer: &'static Tracer, _stop: Arc<Stop>) -> Option<Worker> {
    None
}
