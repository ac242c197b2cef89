//! Breakdown metrics: how much of each transaction group's time was spent where, as the
//! spec's `span.self_time.count` / `span.self_time.sum.us` per transaction name and type and
//! span type and subtype; a transaction's own self time counts as span type `app`.
//!
//! Self times are measured on the application threads (each stack entry tracks when its
//! children run); the grouping happens here, on the transport thread, because only there are
//! a span and its transaction's final name known together. The metrics thread drains the
//! totals every `metrics_interval`. All maps are bounded.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::Mutex;

use crate::clock;
use crate::record::{Event, MetricsetRecord, SpanName, SpanRecord, TransactionRecord};

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
    span_type: Cow<'static, str>,
    span_subtype: Option<Cow<'static, str>>,
}

/// A span's type and subtype: borrowed from the macro's statics for most spans.
type SpanKind = (Cow<'static, str>, Option<Cow<'static, str>>);

/// Span and transaction ids are random: their low bits are a hash already (SipHash over
/// them was a tenth of the transport thread's time).
#[derive(Default)]
struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
type ById<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default, Clone, Copy)]
struct Total {
    count: u64,
    sum_us: u64,
}

#[derive(Debug, Default)]
struct State {
    totals: HashMap<Group, Total>,
    recent: ById<(String, String)>,
    recent_order: VecDeque<u64>,
    /// Spans waiting for their transaction, by transaction id: per span kind, the count and
    /// the sum of self times (µs).
    pending: ById<Vec<(SpanKind, Total)>>,
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
                span: Some((
                    g.span_type.into_owned(),
                    g.span_subtype.map(Cow::into_owned),
                )),
                tags: Vec::new(),
                samples: vec![
                    ("span.self_time.count".into(), t.count as f64),
                    ("span.self_time.sum.us".into(), t.sum_us as f64),
                ],
            })
            .collect()
    }
}

fn span_kind(s: &SpanRecord) -> SpanKind {
    match &s.name {
        SpanName::Static(m) => (Cow::Borrowed(m.kind), m.subtype.map(Cow::Borrowed)),
        SpanName::Dynamic(d) => (d.kind.clone(), d.subtype.clone()),
    }
}

impl State {
    fn add(&mut self, group: Group, total: Total) {
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
        t.count += total.count;
        t.sum_us += total.sum_us;
    }

    fn span(&mut self, s: &SpanRecord) {
        let one = Total {
            count: 1,
            sum_us: self_time_us(s.start, s.end, s.child_ns),
        };
        let kind = span_kind(s);
        match self.recent.get(&s.transaction_id) {
            Some((name, ty)) => {
                let group = Group {
                    transaction_name: name.clone(),
                    transaction_type: ty.clone(),
                    span_type: kind.0,
                    span_subtype: kind.1,
                };
                self.add(group, one);
            }
            None => {
                let full = self.pending_len >= MAX_PENDING;
                let kinds = match self.pending.get_mut(&s.transaction_id) {
                    Some(kinds) => kinds,
                    None if full => return,
                    None => self.pending.entry(s.transaction_id).or_default(),
                };
                // A transaction has few span kinds: a linear search beats hashing them.
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, t)) => {
                        t.count += 1;
                        t.sum_us += one.sum_us;
                    }
                    None if full => {}
                    None => {
                        kinds.push((kind, one));
                        self.pending_len += 1;
                    }
                }
            }
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
                span_type: Cow::Borrowed("app"),
                span_subtype: None,
            },
            Total {
                count: 1,
                sum_us: own,
            },
        );
        if let Some(kinds) = self.pending.remove(&t.id) {
            self.pending_len -= kinds.len();
            for ((span_type, span_subtype), total) in kinds {
                let group = Group {
                    transaction_name: name.clone(),
                    transaction_type: ty.clone(),
                    span_type,
                    span_subtype,
                };
                self.add(group, total);
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
