//! Handling huge traces, as the spec's `handling-huge-traces/` documents describe it: on the
//! transport thread, before encoding, consecutive exit spans of one kind under one parent are
//! compressed into a composite span (`span_compression_*`), exit spans faster than
//! `exit_span_min_duration` are dropped, and their transaction learns of both: its
//! `span_count` and `dropped_spans_stats`.
//!
//! A parent (span or transaction) holds at most one buffered, compressible child. The child is
//! sent when a sibling that cannot join it ends, or when the parent ends; a compressible
//! sibling of the same kind joins it (`exact_match`: same name, both faster than the exact
//! match limit; `same_kind`: both faster than the same kind limit). Siblings are consecutive
//! in the order they reach this thread, which is their end order on each application thread.
//!
//! A transaction already sent cannot learn anything more: the spans that reach this thread
//! after it go out as they are.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::encode::service_target::{self, Target};
use crate::config::Config;
use crate::queue::tracer::Counters;
use crate::types::clock;
use crate::types::outcome::Outcome;
use crate::types::record::{DroppedSpanStats, Event, SpanRecord};
use crate::types::span_context::Composite;
use crate::util::id_hash::IdMap;
use crate::util::recent_ids::RecentIds;

/// Buffered spans kept at most (parents that never end, or end on a thread that is gone, must
/// not hold memory for good): beyond this, the oldest are sent.
const MAX_BUFFERED: usize = 4_096;
/// Transactions with pending changes, and transactions recently sent, remembered at most.
const MAX_TRANSACTIONS: usize = 4_096;
/// `dropped_spans_stats` entries per transaction, as the spec limits them.
const MAX_DROPPED_STATS: usize = 128;

/// What the options say, read once per configuration in effect.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    pub(crate) compression: bool,
    pub(crate) exact_match_max_ns: u64,
    pub(crate) same_kind_max_ns: u64,
    pub(crate) exit_span_min_ns: u64,
}

impl Settings {
    pub(crate) fn from_config(c: &Config) -> Settings {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Settings {
            compression: c.span_compression_enabled,
            exact_match_max_ns: ns(c.span_compression_exact_match_max_duration),
            same_kind_max_ns: ns(c.span_compression_same_kind_max_duration),
            exit_span_min_ns: ns(c.exit_span_min_duration),
        }
    }

    /// Nothing to do: every span goes out as it is.
    fn inactive(&self) -> bool {
        !self.compression && self.exit_span_min_ns == 0
    }
}

/// A compressible span waiting for its next sibling.
#[derive(Debug)]
struct Buffered {
    span: SpanRecord,
    target: Target,
}

/// What compression and dropping changed of one transaction's counts.
#[derive(Debug, Default)]
struct Changes {
    /// Spans that went into a composite, or were dropped: no longer started.
    not_started: u32,
    dropped: u32,
    stats: Vec<DroppedSpanStats>,
}

/// The state of this stage on the transport thread.
#[derive(Debug)]
pub(crate) struct HugeTraces {
    counters: &'static Counters,
    settings: Settings,
    /// The buffered child of each parent (by the parent's id), and the order they came in.
    buffered: IdMap<u64, Buffered>,
    order: VecDeque<u64>,
    /// Per transaction id, until its record passes.
    changes: IdMap<u64, Changes>,
    changes_order: VecDeque<u64>,
    /// Transactions recently sent.
    sent: RecentIds<(), 8>,
}

impl HugeTraces {
    /// Counts what it compresses and drops in `counters` (`Agent::stats`).
    pub(crate) fn new(counters: &'static Counters) -> HugeTraces {
        HugeTraces {
            counters,
            settings: Settings::default(),
            buffered: IdMap::default(),
            order: VecDeque::new(),
            changes: IdMap::default(),
            changes_order: VecDeque::new(),
            sent: RecentIds::new(MAX_TRANSACTIONS),
        }
    }

    /// Applies new settings (the configuration in effect changed).
    pub(crate) fn configure(&mut self, settings: Settings, out: &mut Vec<Event>) {
        self.settings = settings;
        if !settings.compression {
            self.flush(out);
        }
    }

    /// Asks for the lines of `sent` that the transactions of `batch` will be written to, before
    /// its events are taken one by one (see `RecentIds::prefetch`).
    pub(crate) fn prefetch(&self, batch: &[Event]) {
        if self.settings.inactive() {
            return;
        }
        for event in batch {
            if let Event::Transaction(t) = event {
                self.sent.prefetch(t.id);
            }
        }
    }

    /// Takes one event; what is to be sent now, in order, goes to `out`.
    pub(crate) fn accept(&mut self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::Span(span) if !self.settings.inactive() => self.accept_span(span, out),
            Event::Transaction(mut txn) => {
                if let Some(b) = self.buffered.remove(&txn.id) {
                    self.release(b.span, out);
                }
                if let Some(c) = self.changes.remove(&txn.id) {
                    txn.spans_started = txn.spans_started.saturating_sub(c.not_started);
                    txn.spans_dropped = txn.spans_dropped.saturating_add(c.dropped);
                    if !c.stats.is_empty() {
                        txn.extras_mut().dropped_spans_stats = c.stats;
                    }
                }
                #[cfg(apm_exit_stats)]
                if txn.extras().is_some_and(|e| !e.dropped_exits.is_empty()) {
                    let ex = txn.extras_mut();
                    // Drained, not taken: the vector's room stays with the record.
                    for d in ex.dropped_exits.drain(..) {
                        let target = dropped_target(&d.target);
                        count_dropped(
                            &mut ex.dropped_spans_stats,
                            target,
                            d.outcome,
                            d.count,
                            d.sum_ns / 1000,
                        );
                    }
                }
                if !self.settings.inactive() {
                    self.sent.insert(txn.id, ());
                }
                out.push(Event::Transaction(txn));
            }
            other => out.push(other),
        }
    }

    /// Sends every buffered span (the request is about to go, or a flush was asked for).
    pub(crate) fn flush(&mut self, out: &mut Vec<Event>) {
        while let Some(parent) = self.order.pop_front() {
            if let Some(b) = self.buffered.remove(&parent) {
                self.release(b.span, out);
            }
        }
    }

    fn accept_span(&mut self, span: SpanRecord, out: &mut Vec<Event>) {
        // Its buffered child goes before it: children end before their parent.
        if !self.buffered.is_empty() {
            if let Some(child) = self.buffered.remove(&span.id) {
                self.release(child.span, out);
            }
        }
        // Eligibility first: it reads the span only, `sent` a line mostly out of the cache.
        if !eligible(&span) || self.sent.contains(span.transaction_id) {
            if let Some(sibling) = self.buffered.remove(&span.parent_id) {
                self.release(sibling.span, out);
            }
            self.release(span, out);
            return;
        }
        let Some(target) = span
            .extra
            .as_deref()
            .and_then(|e| service_target::infer(span.name.kind(), span.name.subtype(), e))
        else {
            self.release(span, out);
            return;
        };
        if !self.settings.compression {
            self.release(span, out);
            return;
        }
        let span = match self.buffered.remove(&span.parent_id) {
            None => span,
            Some(mut held) => match self.compress(&mut held, span, &target) {
                None => {
                    self.buffered.insert(span_parent(&held.span), held);
                    return;
                }
                Some(span) => {
                    self.release(held.span, out);
                    span
                }
            },
        };
        let parent = span.parent_id;
        self.buffered.insert(parent, Buffered { span, target });
        self.order.push_back(parent);
        if self.buffered.len() > MAX_BUFFERED {
            while let Some(oldest) = self.order.pop_front() {
                if let Some(b) = self.buffered.remove(&oldest) {
                    self.release(b.span, out);
                    break;
                }
            }
        }
    }

    /// Joins `next` to `held` if it can; gives it back if not.
    fn compress(
        &mut self,
        held: &mut Buffered,
        next: SpanRecord,
        target: &Target,
    ) -> Option<SpanRecord> {
        if held.target.resource != target.resource
            || held.target.kind != target.kind
            || held.target.name != target.name
            || held.span.name.kind() != next.name.kind()
            || held.span.name.subtype() != next.name.subtype()
        {
            return Some(next);
        }
        let s = self.settings;
        let next_ns = duration_ns(&next);
        let same_name = held.span.name.name() == next.name.name();
        let composite = held.span.extra.as_deref().and_then(|e| e.composite);
        // The strategy is chosen by the first two spans and kept: `Some(exact_match)` when
        // `next` can join.
        let strategy = match composite {
            Some(c) if c.exact_match => {
                (same_name && next_ns <= s.exact_match_max_ns).then_some(true)
            }
            Some(_) => (next_ns <= s.same_kind_max_ns).then_some(false),
            None => {
                let slowest = duration_ns(&held.span).max(next_ns);
                if same_name {
                    // Same name but too slow: no falling back to `same_kind`.
                    (slowest <= s.exact_match_max_ns).then_some(true)
                } else {
                    (s.same_kind_max_ns > 0 && slowest <= s.same_kind_max_ns).then_some(false)
                }
            }
        };
        let Some(exact_match) = strategy else {
            return Some(next);
        };
        let first_ns = duration_ns(&held.span);
        let extra = held.span.extra.get_or_insert_with(Default::default);
        let c = extra.composite.get_or_insert(Composite {
            count: 1,
            sum_ns: first_ns,
            exact_match,
        });
        c.count += 1;
        c.sum_ns = c.sum_ns.saturating_add(next_ns);
        if !exact_match && composite.is_none() {
            held.span.name.make_dynamic().name = format!("Calls to {}", target.resource).into();
        }
        if next.end > held.span.end {
            held.span.end = next.end;
        }
        let changes = self.changes_of(next.transaction_id);
        changes.not_started = changes.not_started.saturating_add(1);
        self.counters.spans_compressed.fetch_add(1, Relaxed);
        None
    }

    /// Sends `span`, unless it is a fast exit span to drop (counted on its transaction).
    fn release(&mut self, span: SpanRecord, out: &mut Vec<Event>) {
        let min = self.settings.exit_span_min_ns;
        if min > 0
            && eligible(&span)
            && duration_ns(&span) < min
            && !self.sent.contains(span.transaction_id)
        {
            if let Some(target) = span
                .extra
                .as_deref()
                .and_then(|e| service_target::infer(span.name.kind(), span.name.subtype(), e))
            {
                let (count, sum_ns) = match span.extra.as_deref().and_then(|e| e.composite) {
                    Some(c) => (c.count, c.sum_ns),
                    None => (1, duration_ns(&span)),
                };
                let changes = self.changes_of(span.transaction_id);
                changes.not_started = changes.not_started.saturating_add(1);
                changes.dropped = changes.dropped.saturating_add(count);
                count_dropped(
                    &mut changes.stats,
                    target,
                    span.outcome,
                    count,
                    sum_ns / 1000,
                );
                // The composite (or the span) itself counts as sent no more: its spans count
                // here, the ones merged into it in `spans_compressed` already.
                self.counters.spans_dropped_fast.fetch_add(1, Relaxed);
                return;
            }
        }
        out.push(Event::Span(span));
    }

    fn changes_of(&mut self, transaction_id: u64) -> &mut Changes {
        if !self.changes.contains_key(&transaction_id) {
            if self.changes.len() >= MAX_TRANSACTIONS {
                if let Some(oldest) = self.changes_order.pop_front() {
                    self.changes.remove(&oldest);
                }
            }
            self.changes_order.push_back(transaction_id);
        }
        self.changes.entry(transaction_id).or_default()
    }
}

/// The parent a buffered span waits under.
fn span_parent(span: &SpanRecord) -> u64 {
    span.parent_id
}

/// Compressible, and droppable when fast: an exit span that succeeded, whose context did not
/// go out with a call, and that links to no other trace (a composite carries no links).
fn eligible(span: &SpanRecord) -> bool {
    span.outcome == Outcome::Success
        && span
            .extra
            .as_deref()
            .is_some_and(|e| e.exit && !e.propagated && e.links.is_empty())
}

fn duration_ns(span: &SpanRecord) -> u64 {
    clock::nanos_between(span.start, span.end)
}

fn count_dropped(
    stats: &mut Vec<DroppedSpanStats>,
    target: Target,
    outcome: Outcome,
    count: u32,
    sum_us: u64,
) {
    if let Some(s) = stats.iter_mut().find(|s| {
        s.destination_service_resource == target.resource
            && s.service_target_type == target.kind
            && s.service_target_name == target.name
            && s.outcome == outcome
    }) {
        s.count = s.count.saturating_add(count);
        s.sum_us = s.sum_us.saturating_add(sum_us);
    } else if stats.len() < MAX_DROPPED_STATS {
        stats.push(DroppedSpanStats {
            destination_service_resource: target.resource,
            service_target_type: target.kind,
            service_target_name: target.name,
            outcome,
            count,
            sum_us,
        });
    }
}

/// The service target of calls past the span limit, as their spans' would be.
#[cfg(apm_exit_stats)]
fn dropped_target(target: &crate::types::dropped_exits::ExitTarget) -> Target {
    use crate::types::dropped_exits::ExitTarget;
    match target {
        #[cfg(apm_db_client)]
        ExitTarget::Db(endpoint) => db_target(endpoint),
        #[cfg(apm_http_client)]
        // An HTTP span's target, `host:port` as both name and resource.
        ExitTarget::Http(host_port) => Target {
            kind: "http".to_owned(),
            name: Some(host_port.to_string()),
            resource: host_port.to_string(),
        },
        #[cfg(apm_messaging)]
        ExitTarget::Message { system, queue } => Target {
            kind: (*system).to_owned(),
            name: Some(queue.to_string()),
            resource: format!("{system}/{queue}"),
        },
    }
}

/// The service target of the statements run on `endpoint`, as their spans' would be.
#[cfg(apm_db_client)]
fn db_target(endpoint: &crate::types::db::DbEndpoint) -> Target {
    let extra = crate::types::span_context::SpanExtra {
        exit: true,
        db: Some(crate::types::span_context::Db {
            instance: endpoint.instance.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let target = service_target::infer("db", Some(endpoint.subtype), &extra);
    target.unwrap_or_else(|| Target {
        kind: endpoint.subtype.to_owned(),
        name: None,
        resource: endpoint.subtype.to_owned(),
    })
}
