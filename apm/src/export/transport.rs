//! The `apm-transport` thread: turns event records into intake v2 NDJSON, compresses it and
//! sends it to the APM Server in batches.
//!
//! A request is sent when its compressed body reaches `api_request_size`, when it has been open
//! for `api_request_time`, or on flush. A failed request (connection error, timeout, non-2xx)
//! is dropped whole and the next one waits `min(n, 6)² ± 10%` seconds (n = failures before it,
//! from 0), as the transport spec says; while waiting, new events fill at most one request's
//! worth of memory, the rest is dropped and counted.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::encode::body::Body;
use super::encode::breakdown::Breakdown;
use super::encode::{self, Policy};
use super::http::client::{Request, Server};
use crate::queue::batch;
use crate::queue::channel::{Command, Consumer};
use crate::queue::staging;
use crate::queue::tracer::{Counters, Tracer};
use crate::types::ids;
use crate::types::record::Event;
use crate::util::diag::warn_limited;
use crate::config::CaptureBody;
use crate::util::text::truncate;
use crate::util::wildcard::WildcardList;

/// How often idle threads' buffers are collected.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// Longest sleep between two looks at the queue.
const POLL: Duration = Duration::from_millis(10);
/// Batches taken from the queue before commands and timers are looked at again.
const DRAIN_PER_ROUND: usize = 16;

/// The grace period after `failures` consecutive failed requests (before this one).
pub(crate) fn backoff(failures: u32, jitter_unit: f64) -> Duration {
    let base = f64::from(failures.min(6).pow(2));
    // jitter_unit in [0, 1) → ±10 %.
    Duration::from_secs_f64(base * (0.9 + 0.2 * jitter_unit))
}

pub(crate) struct Transport {
    tracer: &'static Tracer,
    queue: Consumer,
    /// Breakdown metrics totals: this thread adds, the metrics thread drains.
    breakdown_totals: Arc<Breakdown>,
    metadata_line: Vec<u8>,
    server: Server,
    intake_url: String,
    compress: bool,
    /// Breakdown metrics on (`breakdown_metrics` and metrics not off).
    breakdown: bool,
    /// Sanitisation and header capture, from the live configuration.
    policy: Policy,
    /// The configuration generation `policy` was compiled from.
    policy_generation: Option<u64>,
    body: Option<Body>,
    body_events: u64,
    body_opened: Instant,
    failures: u32,
    retry_at: Option<Instant>,
    /// Major version of the APM Server, once known (`GET /`).
    server_major: Option<u64>,
    server_checked: Option<Instant>,
    /// Events dropped anywhere (`Counters::dropped`) as of the last flush: a flush after a
    /// loss does not report success.
    dropped_at_flush: u64,
}

impl Transport {
    pub(crate) fn new(
        tracer: &'static Tracer,
        queue: Consumer,
        breakdown_totals: Arc<Breakdown>,
        metadata: &serde_json::Value,
    ) -> Transport {
        let config = &tracer.config;
        let mut metadata_line = b"{\"metadata\":".to_vec();
        let _ = serde_json::to_writer(&mut metadata_line, metadata);
        metadata_line.extend_from_slice(b"}\n");
        let server = Server::new(config);
        Transport {
            tracer,
            queue,
            breakdown_totals,
            metadata_line,
            intake_url: format!("{}/intake/v2/events", config.server_url),
            // The spec: no compression for a server on this machine.
            compress: !server.is_loopback(),
            server,
            breakdown: config.breakdown_metrics && !config.metrics_interval.is_zero(),
            policy: Policy::default(),
            policy_generation: None,
            body: None,
            body_events: 0,
            body_opened: Instant::now(),
            failures: 0,
            retry_at: None,
            server_major: None,
            server_checked: None,
            dropped_at_flush: 0,
        }
    }

    pub(crate) fn run(mut self) {
        // Learn the server's version before the first events need it (bounded by
        // `server_timeout`; events wait in the bounded queue meanwhile).
        self.queue.register();
        let _ = self.server_major();
        let mut last_sweep = Instant::now();
        loop {
            // Polls: a thread blocked on the channel would make every hand-over a futex
            // wake-up on the application's side. The doorbell rings for commands and when
            // the queue is half full.
            let mut took = false;
            // A bounded number per round: under a flood, commands and timers still get a turn.
            for _ in 0..DRAIN_PER_ROUND {
                match self.queue.try_recv_events() {
                    Ok(Some(batch)) => {
                        self.add(batch);
                        took = true;
                    }
                    Ok(None) => break,
                    Err(()) => return,
                }
            }
            if let Some(report) = self.queue.try_recv_metrics() {
                self.add(report);
            }
            while let Some(cmd) = self.queue.try_recv_command() {
                match cmd {
                    Command::Flush(ack) => {
                        let ok = self.flush();
                        let _ = ack.send(ok);
                    }
                    Command::Shutdown(ack) => {
                        let mut ok = self.flush();
                        // Backing off: what waits for the next attempt will never go.
                        if self.body.is_some() {
                            self.discard_at_shutdown();
                            ok = false;
                        }
                        let _ = ack.send(ok);
                        return;
                    }
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                staging::sweep(|batch| self.add(batch));
                last_sweep = Instant::now();
            }
            if self.due() && !self.in_backoff() {
                self.send();
            }
            if !took {
                let wait = self
                    .next_deadline(last_sweep)
                    .saturating_duration_since(Instant::now());
                std::thread::park_timeout(wait.min(POLL));
            }
        }
    }

    fn next_deadline(&self, last_sweep: Instant) -> Instant {
        let sweep = last_sweep + SWEEP_EVERY;
        match &self.body {
            Some(_) => {
                let due = self.body_opened + self.tracer.live.api_request_time();
                // While backing off, a body already due waits for the end of the grace period.
                let due = self.retry_at.map_or(due, |retry| due.max(retry));
                sweep.min(due)
            }
            None => sweep,
        }
    }

    fn due(&self) -> bool {
        self.body.as_ref().is_some_and(|b| {
            b.len() as u64 >= self.tracer.live.api_request_size()
                || self.body_opened.elapsed() >= self.tracer.live.api_request_time()
        })
    }

    fn in_backoff(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// Everything queued and buffered goes out now. `true` when the server took it all and
    /// nothing was dropped since the last flush (on submit, on the way, or on a failed request).
    fn flush(&mut self) -> bool {
        let sent = self.flush_all();
        let dropped = self.tracer.counters.dropped();
        let lossless = dropped == self.dropped_at_flush;
        self.dropped_at_flush = dropped;
        sent && lossless
    }

    fn flush_all(&mut self) -> bool {
        // What is queued now, not what keeps arriving: a flood must not hold the flush up.
        for _ in 0..self.queue.len() {
            let Ok(Some(batch)) = self.queue.try_recv_events() else {
                break;
            };
            self.add(batch);
        }
        if let Some(report) = self.queue.try_recv_metrics() {
            self.add(report);
        }
        staging::sweep(|batch| self.add(batch));
        if self.body.is_none() {
            return true;
        }
        if self.in_backoff() {
            return false;
        }
        self.send()
    }

    fn add(&mut self, batch: Vec<Event>) {
        self.tracer
            .counters
            .events_queued
            .fetch_add(batch.len() as u64, Relaxed);
        if self.breakdown {
            // Before serialising: a send below may block on the network, and the metrics
            // thread must not wait on it.
            self.breakdown_totals.record(&batch);
        }
        // By reference: moving each event out of the vector would copy it.
        for event in &batch {
            self.write_event(event);
            if self
                .body
                .as_ref()
                .is_some_and(|b| b.len() as u64 >= self.tracer.live.api_request_size())
            {
                if self.in_backoff() {
                    self.discard("the APM Server is unavailable (backing off)");
                } else {
                    self.send();
                }
            }
        }
        batch::recycle(batch);
    }

    fn write_event(&mut self, event: &Event) {
        if let Event::Transaction(t) = event {
            // Servers from 8.0 on do not want unsampled transactions.
            if !t.sampled && self.server_major().is_some_and(|m| m >= 8) {
                self.tracer
                    .counters
                    .unsampled_not_sent
                    .fetch_add(1, Relaxed);
                return;
            }
        }
        let body = match &mut self.body {
            Some(b) => b,
            None => {
                let mut b = Body::new(self.compress, self.tracer.live.api_request_size() as usize);
                b.out().extend_from_slice(&self.metadata_line);
                self.body_opened = Instant::now();
                self.body_events = 0;
                self.body.insert(b)
            }
        };
        let counters = &self.tracer.counters;
        let policy = &mut self.policy;
        let policy_generation = &mut self.policy_generation;
        let tracer = self.tracer;
        let written = write_or_count(body.out(), counters, |out| match event {
            Event::Span(s) => encode::write_span(out, s),
            Event::Transaction(t) => {
                // The policy shapes the request and response only (and looks at the clock).
                if t.request.is_some() || t.response.is_some() {
                    refresh_policy(tracer, policy, policy_generation);
                }
                encode::write_transaction(out, t, policy)
            }
            Event::Error(e) => {
                refresh_policy(tracer, policy, policy_generation);
                encode::write_error(out, e, policy)
            }
            Event::Metricset(m) => encode::write_metricset(out, m),
        });
        if written {
            self.body_events += 1;
        }
        if let Err(e) = body.written() {
            // Compressing failed: what the body held cannot be sent.
            warn_limited!("compress", "could not compress events: {e}");
            let n = std::mem::take(&mut self.body_events);
            self.body = None;
            self.tracer
                .counters
                .dropped_encode_failed
                .fetch_add(n, Relaxed);
        }
    }

    /// The agent stops while backing off: the body waiting for the next attempt is dropped,
    /// and counted.
    fn discard_at_shutdown(&mut self) {
        if self.body.take().is_some() {
            let n = std::mem::take(&mut self.body_events);
            self.tracer.counters.dropped_shutdown.fetch_add(n, Relaxed);
            warn_limited!(
                "discard",
                "dropped {n} events: the agent stopped while the APM Server was unavailable"
            );
        }
    }

    fn discard(&mut self, why: &str) {
        if self.body.take().is_some() {
            let n = std::mem::take(&mut self.body_events);
            self.tracer
                .counters
                .dropped_send_failed
                .fetch_add(n, Relaxed);
            warn_limited!("discard", "dropped {n} events: {why}");
        }
    }

    /// The server's major version, asked once (and again every minute while unknown).
    fn server_major(&mut self) -> Option<u64> {
        if self.server_major.is_none()
            && self
                .server_checked
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.server_checked = Some(Instant::now());
            self.server_major = self.fetch_server_major();
            let wants_unsampled = self.server_major.is_none_or(|m| m < 8);
            self.tracer
                .live
                .send_unsampled
                .store(wants_unsampled, Relaxed);
        }
        self.server_major
    }

    fn fetch_server_major(&self) -> Option<u64> {
        let resp = self
            .server
            .send(&Request {
                method: "GET",
                path: "/",
                headers: &[],
                body: &[],
                timeout: self.tracer.live.server_timeout(),
            })
            .ok()?;
        if !resp.is_success() {
            return None;
        }
        let info: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        let version = info.get("version")?.as_str()?;
        version.split('.').next()?.parse().ok()
    }

    /// Sends the open request. `true` when the server accepted it.
    fn send(&mut self) -> bool {
        let Some(body) = self.body.take() else {
            return true;
        };
        let n = std::mem::take(&mut self.body_events);
        let payload = match body.finish() {
            Ok(p) => p,
            Err(e) => {
                self.tracer
                    .counters
                    .dropped_encode_failed
                    .fetch_add(n, Relaxed);
                warn_limited!("compress", "could not compress events: {e}");
                return false;
            }
        };
        let encoding: &[(&str, &str)] = if self.compress {
            &[
                ("Content-Type", "application/x-ndjson"),
                ("Content-Encoding", "gzip"),
            ]
        } else {
            &[("Content-Type", "application/x-ndjson")]
        };
        let answer = self.server.send(&Request {
            method: "POST",
            path: "/intake/v2/events",
            headers: encoding,
            body: &payload,
            timeout: self.tracer.live.server_timeout(),
        });
        let failure = match answer {
            Ok(resp) if resp.is_success() => None,
            Ok(resp) => Some(format!(
                "HTTP {} {}",
                resp.status,
                truncate(&String::from_utf8_lossy(&resp.body), 200)
            )),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                self.failures = 0;
                self.retry_at = None;
                self.tracer.counters.events_sent.fetch_add(n, Relaxed);
                true
            }
            Some(why) => {
                let wait = backoff(
                    self.failures,
                    (ids::next_u64() % 1000) as f64 / 1000.0,
                );
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(Instant::now() + wait);
                self.tracer.counters.requests_failed.fetch_add(1, Relaxed);
                self.tracer
                    .counters
                    .dropped_send_failed
                    .fetch_add(n, Relaxed);
                warn_limited!(
                    "send",
                    "could not send {n} events to {}: {why}; next attempt in {:.1}s",
                    self.intake_url,
                    wait.as_secs_f64()
                );
                false
            }
        }
    }
}

/// Writes one event's line with `write`; when it fails, takes back what it wrote (a partial line
/// would spoil the whole request) and counts the event as dropped. `true` when written.
fn write_or_count(
    out: &mut Vec<u8>,
    counters: &Counters,
    write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> bool {
    let start = out.len();
    match write(out) {
        Ok(()) => true,
        Err(e) => {
            out.truncate(start);
            counters.dropped_encode_failed.fetch_add(1, Relaxed);
            warn_limited!("serialize", "could not serialize an event (dropped): {e}");
            false
        }
    }
}

/// Compiles `sanitize_field_names`, `capture_headers` and `capture_body` again when the
/// configuration in effect changed (central configuration may change them).
fn refresh_policy(tracer: &Tracer, policy: &mut Policy, compiled_from: &mut Option<u64>) {
    let generation = tracer.generation();
    if *compiled_from == Some(generation) {
        return;
    }
    *compiled_from = Some(generation);
    let config = tracer.effective();
    policy.capture_headers = config.capture_headers;
    policy.body_on_transactions = matches!(
        config.capture_body,
        CaptureBody::Transactions | CaptureBody::All
    );
    policy.body_on_errors = matches!(config.capture_body, CaptureBody::Errors | CaptureBody::All);
    policy.sanitize = WildcardList::parse(&config.sanitize_field_names);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_cannot_be_serialised_is_taken_back_and_counted() {
        let counters = Counters::default();
        let mut out = b"{\"metadata\":{}}\n".to_vec();
        let before = out.clone();
        let failed = write_or_count(&mut out, &counters, |out| {
            out.extend_from_slice(b"{\"span\":{\"na");
            Err(std::io::Error::other("not serialisable"))
        });
        assert!(!failed);
        assert_eq!(out, before, "no partial line left in the body");
        assert_eq!(counters.dropped_encode_failed.load(Relaxed), 1);
        assert_eq!(counters.dropped(), 1);
        assert!(write_or_count(&mut out, &counters, |out| {
            out.extend_from_slice(b"{}\n");
            Ok(())
        }));
        assert_eq!(counters.dropped_encode_failed.load(Relaxed), 1);
    }

    #[test]
    fn backoff_follows_the_spec() {
        let secs = |n, j| backoff(n, j).as_secs_f64();
        assert_eq!(secs(0, 0.5), 0.0);
        assert!((secs(1, 0.5) - 1.0).abs() < 1e-9);
        assert!((secs(2, 0.5) - 4.0).abs() < 1e-9);
        assert!((secs(6, 0.5) - 36.0).abs() < 1e-9);
        assert!((secs(60, 0.5) - 36.0).abs() < 1e-9);
        assert!((secs(3, 0.0) - 8.1).abs() < 1e-9);
        assert!(secs(3, 0.999) < 9.9 && secs(3, 0.999) > 9.8);
    }
}
