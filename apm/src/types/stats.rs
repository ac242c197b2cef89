//! What `Agent::stats` reports of the agent's own health.

/// Counters of the agent's own health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events (transactions, spans, errors, metricsets) accepted by the APM Server.
    pub events_sent: u64,
    /// Events dropped because the queue to the transport thread was full.
    pub events_dropped_queue_full: u64,
    /// Events dropped because a request to the APM Server failed.
    pub events_dropped_send_failed: u64,
    /// Requests to the intake endpoint that failed.
    pub requests_failed: u64,
}
