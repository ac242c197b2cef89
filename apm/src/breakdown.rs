//! Breakdown metrics: how much of each transaction group's time was spent where, as the
//! spec's `span.self_time.count` / `span.self_time.sum.us` per transaction name and type and
//! span type and subtype; a transaction's own self time counts as span type `app`.
//!
//! Self times are measured on the application threads (each stack entry tracks when its
//! children run); the grouping happens here, on the transport thread, because only there are
//! a span and its transaction's final name known together. The metrics thread drains the
//! totals every `metrics_interval`. All maps are bounded.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use crate::clock;
use crate::record::{Event, MetricsetRecord, SpanRecord, TransactionRecord};

/// Transaction groups × span types kept between two reports.
const MAX_GROUPS: usize = 1_000;
/// Ended transactions remembered, for spans that arrive after them (from other threads).
const MAX_RECENT: usize = 4_096;
/// Spans waiting for their transaction.
const MAX_PENDING: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    transaction_name: String,
    transaction_type: String,
    span_type: String,
    span_subtype: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Total {
    count: u64,
    sum_us: u64,
}

#[derive(Debug, Default)]
struct State {
    totals: HashMap<Group, Total>,
    recent: HashMap<u64, (String, String)>,
    recent_order: VecDeque<u64>,
    /// Spans by transaction id: (type, subtype, self time µs).
    pending: HashMap<u64, Vec<(String, Option<String>, u64)>>,
    pending_len: usize,
    overflowed: bool,
}

/// Shared by the transport thread (adds) and the metrics thread (drains).
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    state: Mutex<State>,
}

fn self_time_us(start: clock::Tick, end: clock::Tick, child_ns: u64) -> u64 {
    let total = u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
    total.saturating_sub(child_ns) / 1_000
}

impl Breakdown {
    /// Accounts for the spans and transactions of a batch (transport thread).
    pub(crate) fn record(&self, batch: &[Event]) {
        let mut st = self.state.lock();
        for event in batch {
            match event {
                Event::Span(s) => st.span(s),
                Event::Transaction(t) if t.sampled => st.transaction(t),
                _ => {}
            }
        }
    }

    /// The totals since the last call, as metricsets stamped `timestamp_us` (metrics thread).
    pub(crate) fn drain(&self, timestamp_us: u64) -> Vec<MetricsetRecord> {
        let totals = std::mem::take(&mut self.state.lock().totals);
        totals
            .into_iter()
            .map(|(g, t)| MetricsetRecord {
                timestamp: timestamp_us,
                transaction: Some((g.transaction_name, g.transaction_type)),
                span: Some((g.span_type, g.span_subtype)),
                tags: Vec::new(),
                samples: vec![
                    ("span.self_time.count".into(), t.count as f64),
                    ("span.self_time.sum.us".into(), t.sum_us as f64),
                ],
            })
            .collect()
    }
}

impl State {
    fn add(&mut self, group: Group, self_us: u64) {
        if !self.totals.contains_key(&group) && self.totals.len() >= MAX_GROUPS {
            if !self.overflowed {
                self.overflowed = true;
                crate::diag::warn_limited!(
                    "breakdown",
                    "more than {MAX_GROUPS} breakdown groups in one metrics interval; the rest are not reported"
                );
            }
            return;
        }
        let t = self.totals.entry(group).or_default();
        t.count += 1;
        t.sum_us += self_us;
    }

    fn span(&mut self, s: &SpanRecord) {
        let self_us = self_time_us(s.start, s.end, s.child_ns);
        let kind = s.name.kind().to_owned();
        let subtype = s.name.subtype().map(str::to_owned);
        match self.recent.get(&s.transaction_id) {
            Some((name, ty)) => {
                let group = Group {
                    transaction_name: name.clone(),
                    transaction_type: ty.clone(),
                    span_type: kind,
                    span_subtype: subtype,
                };
                self.add(group, self_us);
            }
            None if self.pending_len < MAX_PENDING => {
                self.pending
                    .entry(s.transaction_id)
                    .or_default()
                    .push((kind, subtype, self_us));
                self.pending_len += 1;
            }
            None => {}
        }
    }

    fn transaction(&mut self, t: &TransactionRecord) {
        let name = t.name.name().to_owned();
        let ty = t.name.kind().to_owned();
        let own = self_time_us(t.start, t.end, t.child_ns);
        self.add(
            Group {
                transaction_name: name.clone(),
                transaction_type: ty.clone(),
                span_type: "app".into(),
                span_subtype: None,
            },
            own,
        );
        if let Some(spans) = self.pending.remove(&t.id) {
            self.pending_len -= spans.len();
            for (kind, subtype, self_us) in spans {
                let group = Group {
                    transaction_name: name.clone(),
                    transaction_type: ty.clone(),
                    span_type: kind,
                    span_subtype: subtype,
                };
                self.add(group, self_us);
            }
        }
        if self.recent_order.len() >= MAX_RECENT {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
                // Spans of a transaction that never arrived do not wait forever.
                if let Some(spans) = self.pending.remove(&old) {
                    self.pending_len -= spans.len();
                }
            }
        }
        self.recent_order.push_back(t.id);
        self.recent.insert(t.id, (name, ty));
    }
}
