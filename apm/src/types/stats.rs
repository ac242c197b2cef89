//! What `Agent::stats` reports of the agent's own health.

/// Counters of the agent's own health.
///
/// Every event handed to the agent is accounted for: once the agent is idle (after a flush, or
/// after it stopped), `events_recorded` = `events_sent` + `events_dropped_queue_full` +
/// `events_dropped_send_failed` + `events_dropped_encode_failed` + `events_dropped_shutdown` +
/// `transactions_unsampled_not_sent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events (transactions, spans, errors, metricsets) handed to the agent: queued for the
    /// transport thread, or dropped because the queue was full.
    pub events_recorded: u64,
    /// Events (transactions, spans, errors, metricsets) accepted by the APM Server.
    pub events_sent: u64,
    /// Events dropped because the queue to the transport thread was full.
    pub events_dropped_queue_full: u64,
    /// Events dropped because a request to the APM Server failed, or because they arrived
    /// while the agent backed off after failures and one request's worth was already waiting.
    pub events_dropped_send_failed: u64,
    /// Events dropped because they could not be serialised or compressed.
    pub events_dropped_encode_failed: u64,
    /// Events dropped because the agent stopped while backing off after failed requests.
    pub events_dropped_shutdown: u64,
    /// Unsampled transactions not sent because the APM Server (8.0 and later) does not want
    /// them (not a loss: the server would discard them).
    pub transactions_unsampled_not_sent: u64,
    /// Spans merged into composite spans by span compression (each composite is sent, and
    /// counted as sent, in the place of the spans it stands for).
    pub spans_compressed: u64,
    /// Exit spans, or composite spans, not sent because they were faster than
    /// `exit_span_min_duration` (their transaction's `dropped_spans_stats` counts them). Every
    /// event recorded is sent, dropped for one of the reasons above, merged into a composite,
    /// or counted here.
    pub spans_dropped_fast: u64,
    /// Requests to the intake endpoint that failed.
    pub requests_failed: u64,
}
