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
use super::http::client::{Request, Server, Writes};
use super::huge_traces::{HugeTraces, Settings};
use super::symbolize;
use crate::config::CaptureBody;
use crate::queue::batch;
use crate::queue::channel::{Command, Consumer};
use crate::queue::tracer::{Counters, Tracer};
use crate::queue::{spare, staging};
use crate::types::record::{DynamicSpanName, Event, SpanName, SpanRecord, TransactionRecord};
use crate::types::span_context::SpanExtra;
use crate::types::{clock, ids};
use crate::util::diag::warn_limited;
use crate::util::prefetch;
use crate::util::text::truncate;
use crate::util::wildcard::WildcardList;

/// How often idle threads' buffers are collected.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// Longest sleep between two looks at the queue.
const POLL: Duration = Duration::from_millis(10);
/// Batches taken from the queue before commands and timers are looked at again.
const DRAIN_PER_ROUND: usize = 16;
/// How many requests' worth (`api_request_size`) the next body may hold at most while a
/// request is on its way: 36 MiB of compressed events with the default `api_request_size`. A
/// server answering in 2 s at 500 000 spans/s means about 27 MB to hold meanwhile (27 bytes
/// per span compressed, `benches/intake.rs`), and the answer comes after the body is written.
const WHILE_SENDING: u64 = 48;
/// The room grows with the wait: one more request's worth for every such slice of it (37 MiB/s
/// with the default `api_request_size`, about 1.4 M spans/s compressed), so that a server
/// that hangs does not make the agent take the whole room at once.
const ROOM_GROWS_EVERY: Duration = Duration::from_millis(20);
/// NDJSON the next body may hold at most while a request is on its way, whatever its
/// compressed size: a server may decompress a request whole before reading it (the
/// stand-in server of the tests takes 256 MiB, and the batch added last may pass the mark by
/// up to a megabyte). About a million spans: 2 s at 500 000 spans/s.
const WHILE_SENDING_DECODED: usize = 254 * 1024 * 1024;

/// How long stack traces wait for the symbol tables to be loaded on another thread before
/// this thread resolves them itself (and so loads the tables).
const TABLES_PATIENCE: Duration = Duration::from_secs(5);
/// Stack traces held while the tables load, at most; beyond, they are resolved here.
const MAX_AWAITING_TABLES: usize = 4096;
/// A sent body's buffer is kept for the next body when it holds at most this many request
/// sizes (3 MiB by default).
const MAX_KEPT_BODY_REQUESTS: usize = 4;

/// `{"metadata":…}` and its line end: the first line of every request.
fn metadata_line(metadata: &serde_json::Value) -> Vec<u8> {
    let mut line = b"{\"metadata\":".to_vec();
    let _ = serde_json::to_writer(&mut line, metadata);
    line.extend_from_slice(b"}\n");
    line
}

/// The grace period after `failures` consecutive failed requests (before this one).
pub(crate) fn backoff(failures: u32, jitter_unit: f64) -> Duration {
    let base = f64::from(failures.min(6).pow(2));
    // jitter_unit in [0, 1) → ±10 %.
    Duration::from_secs_f64(base * (0.9 + 0.2 * jitter_unit))
}

/// What makes the metadata object on the transport thread.
pub(crate) type MakeMetadata = Box<dyn FnOnce() -> serde_json::Value + Send>;

pub(crate) struct Transport {
    tracer: &'static Tracer,
    queue: Consumer,
    /// Breakdown metrics totals: this thread adds, the metrics thread drains.
    breakdown_totals: Arc<Breakdown>,
    /// Makes the metadata object, once, when this thread starts (it may ask the network:
    /// cloud metadata), before the first request opens.
    make_metadata: Option<MakeMetadata>,
    metadata_line: Vec<u8>,
    /// Shared with the request in progress, whose waits drain the queue through `self`.
    server: Arc<Server>,
    intake_url: String,
    compress: bool,
    /// Breakdown metrics on (`breakdown_metrics` and metrics not off).
    breakdown: bool,
    /// Sanitisation and header capture, from the live configuration.
    policy: Policy,
    /// The configuration generation `policy` was compiled from.
    policy_generation: Option<u64>,
    /// Span compression and fast exit span dropping, and the generation of their settings.
    huge_traces: HugeTraces,
    huge_traces_generation: Option<u64>,
    /// Events ready to be written, in order (reused).
    ready: Vec<Event>,
    /// Errors and spans whose stack traces wait for the symbol tables (see
    /// `symbolize::ask_for_tables`), and when they were asked for.
    awaiting_tables: Vec<Event>,
    tables_asked_at: Option<Instant>,
    /// Boxes of the transaction records just written, given back for reuse (the boxes are
    /// what is kept).
    #[allow(clippy::vec_box)]
    spare_records: Vec<Box<TransactionRecord>>,
    /// Spans' optional parts written, given back with the boxes (the boxes themselves are
    /// what is reused).
    #[allow(clippy::vec_box)]
    spare_extras: Vec<Box<SpanExtra>>,
    /// Spans' names made at run time, written: their boxes, to be given back (the boxes are
    /// what is reused).
    #[allow(clippy::vec_box)]
    spare_names: Vec<Box<DynamicSpanName>>,
    body: Option<Body>,
    /// The buffer of the last body sent, emptied, for the next one (see `Body::reusing`).
    spare_body: Vec<u8>,
    body_events: u64,
    body_opened: Instant,
    /// The open body holds an error: it goes out at the end of this round.
    urgent: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// Major version of the APM Server, once known (`GET /`).
    server_major: Option<u64>,
    server_checked: Option<Instant>,
    /// Events dropped anywhere (`Counters::dropped`) as of the last flush: a flush after a
    /// loss does not report success.
    dropped_at_flush: u64,
    /// A request is on its way: the queue is drained into the next body meanwhile.
    sending: bool,
    /// When the request on its way started.
    sending_since: Instant,
    /// A command that arrived while a request was on its way: it is served next, and the
    /// next body stops growing meanwhile (a flush has to send all of it).
    pending: Option<Command>,
    /// A flush is in progress: its requests' waits leave the queue alone, so that it ends with
    /// no body open.
    flushing: bool,
    /// The request being sent ends a flush.
    ending_flush: bool,
    last_sweep: Instant,
}

impl Transport {
    pub(crate) fn new(
        tracer: &'static Tracer,
        queue: Consumer,
        breakdown_totals: Arc<Breakdown>,
        make_metadata: MakeMetadata,
    ) -> Transport {
        let config = &tracer.config;
        let server = Server::new(config, Writes::Bodies);
        Transport {
            tracer,
            queue,
            breakdown_totals,
            make_metadata: Some(make_metadata),
            metadata_line: Vec::new(),
            intake_url: format!("{}/intake/v2/events", config.server_url),
            // The spec: no compression for a server on this machine.
            compress: !server.is_loopback(),
            server: Arc::new(server),
            breakdown: config.breakdown_metrics && !config.metrics_interval.is_zero(),
            policy: Policy::default(),
            policy_generation: None,
            huge_traces: HugeTraces::new(&tracer.counters),
            huge_traces_generation: None,
            ready: Vec::new(),
            awaiting_tables: Vec::new(),
            tables_asked_at: None,
            spare_records: Vec::new(),
            spare_extras: Vec::new(),
            spare_names: Vec::new(),
            spare_body: Vec::new(),
            body: None,
            body_events: 0,
            body_opened: Instant::now(),
            urgent: false,
            failures: 0,
            retry_at: None,
            server_major: None,
            server_checked: None,
            dropped_at_flush: 0,
            sending: false,
            sending_since: Instant::now(),
            pending: None,
            flushing: false,
            ending_flush: false,
            last_sweep: Instant::now(),
        }
    }

    pub(crate) fn run(mut self) {
        self.queue.register();
        // The metadata (bounded: cloud metadata has a budget of its own), then the server's
        // version (bounded by `server_timeout`), before the first events need them; events
        // wait in the bounded queue meanwhile.
        if let Some(make) = self.make_metadata.take() {
            self.metadata_line = metadata_line(&make());
        }
        let _ = self.server_major();
        loop {
            clock::reanchor_if_due();
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
            self.take_beside_the_queue();
            self.write_when_tables_loaded();
            while let Some(cmd) = self
                .pending
                .take()
                .or_else(|| self.queue.try_recv_command())
            {
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
            if self.last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
            }
            if self.due() && !self.in_backoff() {
                self.send();
            }
            if !took {
                let wait = self
                    .next_deadline(self.last_sweep)
                    .saturating_duration_since(Instant::now());
                std::thread::park_timeout(wait.min(POLL));
            }
        }
    }

    /// Metrics reports, and transactions and errors held while the queue was full.
    fn take_beside_the_queue(&mut self) {
        if let Some(report) = self.queue.try_recv_metrics() {
            self.add(report);
        }
        if let Some(held) = self.queue.try_recv_held() {
            self.add(held);
        }
    }

    fn sweep(&mut self) {
        staging::sweep(|batch| self.add(batch));
        self.last_sweep = Instant::now();
    }

    /// While a request is on its way (writing its body, waiting for the answer): what is
    /// queued goes into the next body, so that the application's events are not dropped for
    /// want of room while the server takes its time. The next body may grow to
    /// one more request's worth per [`ROOM_GROWS_EVERY`] of waiting, up to [`WHILE_SENDING`];
    /// beyond that the queue holds the rest, and drops what does not fit.
    fn drain_while_sending(&mut self) {
        if self.pending.is_none() {
            self.pending = self.queue.try_recv_command();
        }
        if self.flushing || self.pending.is_some() {
            return;
        }
        let waited = self.sending_since.elapsed().as_millis() / ROOM_GROWS_EVERY.as_millis();
        let requests = u64::try_from(waited)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(WHILE_SENDING);
        let cap = self.tracer.live.api_request_size().saturating_mul(requests);
        let room = |t: &Self| {
            t.body
                .as_ref()
                .is_none_or(|b| (b.len() as u64) < cap && b.decoded_len() < WHILE_SENDING_DECODED)
        };
        // All that is queued now, and no more (a flood must not keep the socket waiting):
        // the socket's waits give way only every kernel tick or so (10 ms here, however short
        // the timeout asked), and a fixed number of batches per call would cap what this
        // thread carries while a request waits (16 batches per 10 ms: 400 000 events/s).
        for _ in 0..self.queue.len().max(DRAIN_PER_ROUND) {
            if !room(self) {
                break;
            }
            match self.queue.try_recv_events() {
                Ok(Some(batch)) => self.add(batch),
                _ => break,
            }
        }
        if room(self) {
            self.take_beside_the_queue();
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY && room(self) {
            self.sweep();
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
            self.urgent
                || b.len() as u64 >= self.tracer.live.api_request_size()
                || self.body_opened.elapsed() >= self.tracer.live.api_request_time()
        })
    }

    fn in_backoff(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// Everything queued and buffered goes out now. `true` when the server took it all,
    /// nothing was dropped since the last flush (on submit, on the way, or on a failed
    /// request), and no other thread holds events staged inside a transaction.
    fn flush(&mut self) -> bool {
        self.flushing = true;
        let sent = self.flush_all() && !staging::held_elsewhere();
        self.flushing = false;
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
        self.take_beside_the_queue();
        staging::sweep(|batch| self.add(batch));
        // Resolved here if the tables are not loaded yet: a flush sends everything.
        self.write_awaiting_tables();
        self.release_held_spans();
        if self.body.is_none() {
            return true;
        }
        if self.in_backoff() {
            return false;
        }
        // The request a flush ends says so, for the server to flush its own buffers
        // (`?flushed=true`, as the transport spec asks).
        self.ending_flush = true;
        let sent = self.send();
        self.ending_flush = false;
        sent
    }

    fn add(&mut self, mut batch: Vec<Event>) {
        // Statements' spans are written as every other span from here on.
        #[cfg(apm_sql)]
        for event in &mut batch {
            if let Event::Span(span) = event {
                span.expand_db();
            }
        }
        self.tracer
            .counters
            .events_queued
            .fetch_add(batch.len() as u64, Relaxed);
        // The batch's transaction records were written on other cores, and each pass below
        // reads some of their lines: asked for all at once here, their misses overlap.
        for event in &batch {
            if let Event::Transaction(t) = event {
                prefetch::lines_of::<TransactionRecord>(t);
            }
        }
        self.refresh_huge_traces();
        self.huge_traces.prefetch(&batch);
        if self.breakdown {
            // Before serialising: a send below may block on the network, and the metrics
            // thread must not wait on it. Spans compressed or dropped below count here.
            self.breakdown_totals.record(&batch);
        }
        let backing_off = self.in_backoff();
        let mut sent = false;
        let limit = self.tracer.live.api_request_size();
        let full = |body: &Option<Body>| body.as_ref().is_some_and(|b| b.len() as u64 >= limit);
        let mut ready = std::mem::take(&mut self.ready);
        let mut events = batch.drain(..);
        'events: while let Some(event) = events.next() {
            // Compression may hold the event back, or let buffered spans go before it.
            self.huge_traces.accept(event, &mut ready);
            let mut now = ready.drain(..);
            while let Some(mut event) = now.next() {
                if backing_off && full(&self.body) {
                    // One request's worth waits for the end of the grace period; the rest is
                    // dropped before it costs any serialising or compressing.
                    let n = (1 + now.len() + events.len()) as u64;
                    self.tracer
                        .counters
                        .dropped_send_failed
                        .fetch_add(n, Relaxed);
                    warn_limited!(
                        "discard",
                        "dropped {n} events: the APM Server is unavailable (backing off)"
                    );
                    break 'events;
                }
                if let Event::Transaction(t) = &mut event {
                    // Its spans dropped at the queue were started but never sent.
                    let lost = self.tracer.lost_spans.take(t.id);
                    t.spans_started = t.spans_started.saturating_sub(lost);
                    t.spans_dropped = t.spans_dropped.saturating_add(lost);
                }
                if self.waits_for_tables(&event) {
                    self.awaiting_tables.push(event);
                    continue;
                }
                self.write_and_keep_box(event);
                // At most once per batch outside a flush: a send drains the queue into the
                // next body meanwhile, and sending again from here would chain requests
                // without ever serving a command (the loop sends what is left).
                if !backing_off && !self.sending && (self.flushing || !sent) && full(&self.body) {
                    self.send();
                    sent = true;
                }
            }
        }
        drop(events);
        ready.clear();
        self.ready = ready;
        batch::recycle(batch);
        self.give_back_spares();
    }

    /// Reads the huge-traces options again when the configuration in effect changed.
    fn refresh_huge_traces(&mut self) {
        let generation = self.tracer.generation();
        if self.huge_traces_generation != Some(generation) {
            self.huge_traces_generation = Some(generation);
            let settings = Settings::from_config(&self.tracer.effective());
            let mut ready = std::mem::take(&mut self.ready);
            self.huge_traces.configure(settings, &mut ready);
            self.write_all(&mut ready);
            self.ready = ready;
        }
    }

    /// Writes the spans held for compression into the body: it is about to go.
    fn release_held_spans(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        self.huge_traces.flush(&mut ready);
        self.write_all(&mut ready);
        self.ready = ready;
    }

    /// Whether `event`'s stack trace waits for the symbol tables, loaded on another thread
    /// meanwhile (this thread goes on draining the queue). Not during a flush, not beyond
    /// [`MAX_AWAITING_TABLES`] events, not after [`TABLES_PATIENCE`], nor without a loader.
    fn waits_for_tables(&mut self, event: &Event) -> bool {
        let stack = match event {
            Event::Error(e) => e.stack.as_ref(),
            Event::Span(s) => s.extra.as_deref().and_then(|x| x.stack.as_ref()),
            _ => None,
        };
        if self.flushing
            || !stack.is_some_and(symbolize::needs_tables)
            || symbolize::tables_loaded()
            || self.awaiting_tables.len() >= MAX_AWAITING_TABLES
        {
            return false;
        }
        match self.tables_asked_at {
            Some(asked) => asked.elapsed() < TABLES_PATIENCE,
            None if symbolize::ask_for_tables() => {
                self.tables_asked_at = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Writes the stack traces that waited for the symbol tables once they are loaded (or
    /// once waiting took too long: resolved here).
    fn write_when_tables_loaded(&mut self) {
        if self.awaiting_tables.is_empty() {
            return;
        }
        let waited_enough = self
            .tables_asked_at
            .is_none_or(|asked| asked.elapsed() >= TABLES_PATIENCE);
        if symbolize::tables_loaded() || waited_enough {
            self.write_awaiting_tables();
        }
    }

    fn write_awaiting_tables(&mut self) {
        let mut awaiting = std::mem::take(&mut self.awaiting_tables);
        self.write_all(&mut awaiting);
        self.awaiting_tables = awaiting;
    }

    fn write_all(&mut self, events: &mut Vec<Event>) {
        for event in events.drain(..) {
            self.write_and_keep_box(event);
        }
        self.give_back_spares();
    }

    /// Writes `event`; a transaction's box, or a span's optional parts, are kept to be given
    /// back for reuse.
    fn write_and_keep_box(&mut self, event: Event) {
        self.write_event(&event);
        match event {
            Event::Transaction(mut record) => {
                spare::trim_for_reuse(&mut record);
                self.spare_records.push(record);
            }
            Event::Span(SpanRecord { extra, name, .. }) => {
                if let Some(extra) = extra {
                    self.spare_extras.push(extra);
                }
                if let SpanName::Dynamic(name) = name {
                    self.spare_names.push(name);
                }
            }
            _ => {}
        }
    }

    fn give_back_spares(&mut self) {
        spare::give_back(&mut self.spare_records);
        spare::give_back_extras(&mut self.spare_extras);
        spare::give_back_names(&mut self.spare_names);
    }

    fn write_event(&mut self, event: &Event) {
        if let Event::Transaction(t) = event {
            // Servers from 8.0 on do not want unsampled transactions.
            // Not asked while a request is on its way: this runs inside its waits.
            let major = if self.sending {
                self.server_major
            } else {
                self.server_major()
            };
            if !t.sampled && major.is_some_and(|m| m >= 8) {
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
                let spare = std::mem::take(&mut self.spare_body);
                let size = self.tracer.live.api_request_size() as usize;
                let mut b = Body::reusing(self.compress, size, spare);
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
            Event::Span(s) => {
                // Only a span's context has a long field (its database statement).
                if s.extra.is_some() {
                    refresh_policy(tracer, policy, policy_generation);
                }
                encode::write_span(out, s, policy)
            }
            Event::Transaction(t) => {
                // The policy shapes the request, the response and the message only (and looks
                // at the clock).
                if t.request.is_some() || t.response.is_some() || t.message().is_some() {
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
            // The spec: errors go out promptly, not with the batch.
            self.urgent |= matches!(event, Event::Error(_));
        }
        if let Err(e) = body.written() {
            // Compressing failed: what the body held cannot be sent.
            warn_limited!("compress", "could not compress events: {e}");
            let n = std::mem::take(&mut self.body_events);
            self.body = None;
            self.urgent = false;
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
            self.urgent = false;
            let n = std::mem::take(&mut self.body_events);
            self.tracer.counters.dropped_shutdown.fetch_add(n, Relaxed);
            warn_limited!(
                "discard",
                "dropped {n} events: the agent stopped while the APM Server was unavailable"
            );
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

    fn fetch_server_major(&mut self) -> Option<u64> {
        let server = Arc::clone(&self.server);
        let timeout = self.tracer.live.server_timeout();
        // The queue is drained meanwhile, as during an intake request.
        let was_sending = std::mem::replace(&mut self.sending, true);
        self.sending_since = Instant::now();
        let resp = server.send_while(
            &Request {
                method: "GET",
                path: "/",
                headers: &[],
                body: &[],
                timeout,
            },
            Some(&mut || self.drain_while_sending()),
        );
        self.sending = was_sending;
        let resp = resp.ok()?;
        if !resp.is_success() {
            return None;
        }
        let info: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        let version = info.get("version")?.as_str()?;
        version.split('.').next()?.parse().ok()
    }

    /// Keeps the buffer of a body sent, unless it grew far beyond the request size (a body
    /// that filled while a slow request was on its way): that memory goes back.
    fn keep_body_buffer(&mut self, mut payload: Vec<u8>) {
        let size = self.tracer.live.api_request_size() as usize;
        if payload.capacity() <= MAX_KEPT_BODY_REQUESTS * size.max(64 * 1024) {
            payload.clear();
            self.spare_body = payload;
        }
    }

    /// Sends the open request. `true` when the server accepted it.
    fn send(&mut self) -> bool {
        self.release_held_spans();
        let Some(body) = self.body.take() else {
            return true;
        };
        self.urgent = false;
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
        let server = Arc::clone(&self.server);
        let timeout = self.tracer.live.server_timeout();
        self.sending = true;
        self.sending_since = Instant::now();
        let answer = server.send_while(
            &Request {
                method: "POST",
                path: if self.ending_flush {
                    "/intake/v2/events?flushed=true"
                } else {
                    "/intake/v2/events"
                },
                headers: encoding,
                body: &payload,
                timeout,
            },
            Some(&mut || self.drain_while_sending()),
        );
        self.sending = false;
        self.keep_body_buffer(payload);
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
                let wait = backoff(self.failures, (ids::next_u64() % 1000) as f64 / 1000.0);
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

/// Compiles `sanitize_field_names`, `capture_headers`, `capture_body` and
/// `long_field_max_length` again when the configuration in effect changed (central
/// configuration may change them).
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
    policy.set_sanitize(WildcardList::parse(&config.sanitize_field_names));
    policy.long_field_max_length = config.long_field_max_length;
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
    fn one_turn_of_a_request_s_wait_takes_all_that_is_queued() {
        // The socket's waits give way only every kernel tick or so: a turn that took a fixed
        // number of batches would leave the rest to overflow the queue at high rates.
        let batches = 4 * DRAIN_PER_ROUND;
        let (producer, consumer) = crate::queue::channel::bounded(batches);
        let config = crate::config::Config::builder()
            .api_request_size(64 * 1024 * 1024)
            .metrics_interval(Duration::ZERO)
            .build();
        let tracer: &'static Tracer = Box::leak(Box::new(Tracer::new(config, producer)));
        let mut transport = Transport::new(
            tracer,
            consumer,
            Arc::new(Breakdown::default()),
            Box::new(|| serde_json::json!({})),
        );
        for _ in 0..batches {
            let batch = (0..batch::BATCH)
                .map(|_| Event::Metricset(Box::default()))
                .collect();
            tracer.hand_over(batch);
        }
        assert_eq!(transport.queue.len(), batches, "all queued");
        transport.sending = true;
        transport.sending_since = Instant::now();
        transport.drain_while_sending();
        assert_eq!(transport.queue.len(), 0, "batches left in the queue");
        assert_eq!(
            transport.body_events,
            (batches * batch::BATCH) as u64,
            "all of them in the next body"
        );
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
