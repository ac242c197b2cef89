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

use crate::types::clock;
use crate::types::record::{
    Event, MetricsetRecord, SpanName, SpanRecord, TransactionName, TransactionRecord,
};

/// Transaction groups × span types kept between two reports.
const MAX_GROUPS: usize = 1_000;
/// Ended transactions remembered, for spans that arrive after them (from other threads).
const MAX_RECENT: usize = 4_096;
/// Spans waiting for their transaction.
const MAX_PENDING: usize = 50_000;

/// A transaction group: name and type, borrowed from the macro's statics for most
/// transactions (finding its totals then allocates nothing).
type TxnKey = (Cow<'static, str>, Cow<'static, str>);

fn txn_key(name: &TransactionName) -> TxnKey {
    match name {
        TransactionName::Static(m) => (Cow::Borrowed(m.name), Cow::Borrowed(m.kind)),
        TransactionName::Dynamic(n, k) => (n.clone(), k.clone()),
    }
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
    /// Per transaction group, per span kind (a group has few: searched linearly).
    totals: HashMap<TxnKey, Vec<(SpanKind, Total)>>,
    /// Entries of `totals` (transaction group × span kind), bounded by `MAX_GROUPS`.
    groups: usize,
    recent: ById<TxnKey>,
    recent_order: VecDeque<u64>,
    /// Spans waiting for their transaction, by transaction id: per span kind, the count and
    /// the sum of self times (µs).
    pending: ById<Vec<(SpanKind, Total)>>,
    pending_len: usize,
    /// Transaction ids of `pending` by age (with ids already gone, cleared out now and then):
    /// when `pending` is full the oldest make room, so that spans whose transaction never
    /// comes (dropped on a full queue) cannot take the room for good.
    pending_order: VecDeque<u64>,
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
        let totals = {
            let mut st = self.state.lock();
            st.groups = 0;
            std::mem::take(&mut st.totals)
        };
        totals
            .into_iter()
            .flat_map(|((name, ty), kinds)| {
                kinds
                    .into_iter()
                    .map(move |((kind, subtype), t)| MetricsetRecord {
                        timestamp: timestamp_us,
                        transaction: Some((name.clone().into_owned(), ty.clone().into_owned())),
                        span: Some((kind.into_owned(), subtype.map(Cow::into_owned))),
                        tags: Vec::new(),
                        samples: vec![
                            ("span.self_time.count".into(), t.count as f64),
                            ("span.self_time.sum.us".into(), t.sum_us as f64),
                        ],
                    })
            })
            .collect()
    }
}

fn span_kind(s: &SpanRecord) -> SpanKind {
    match &s.name {
        SpanName::Static(m) => (Cow::Borrowed(m.kind), m.subtype.map(Cow::Borrowed)),
        SpanName::Dynamic(d) => (d.kind.clone(), d.subtype.clone()),
        #[cfg(apm_sql)]
        SpanName::Db(c) => (Cow::Borrowed("db"), Some(Cow::Borrowed(c.endpoint.subtype))),
    }
}

impl State {
    /// Adds to the totals of the group `txn`, found once for all of `items`.
    fn add(&mut self, txn: &TxnKey, items: impl IntoIterator<Item = (SpanKind, Total)>) {
        let State {
            totals,
            groups,
            overflowed,
            ..
        } = self;
        let kinds = match totals.get_mut(txn) {
            Some(kinds) => kinds,
            None if *groups < MAX_GROUPS => totals.entry(txn.clone()).or_default(),
            None => return Self::overflow(overflowed),
        };
        for (kind, total) in items {
            if let Some((_, t)) = kinds.iter_mut().find(|(k, _)| *k == kind) {
                t.count += total.count;
                t.sum_us += total.sum_us;
            } else if *groups < MAX_GROUPS {
                *groups += 1;
                kinds.push((kind, total));
            } else {
                Self::overflow(overflowed);
            }
        }
    }

    fn overflow(overflowed: &mut bool) {
        if !*overflowed {
            *overflowed = true;
            crate::util::diag::warn_limited!(
                "breakdown",
                "more than {MAX_GROUPS} breakdown groups in one metrics interval; the rest are not reported"
            );
        }
    }

    fn span(&mut self, s: &SpanRecord) {
        let one = Total {
            count: 1,
            sum_us: self_time_us(s.start, s.end, s.child_ns),
        };
        let kind = span_kind(s);
        match self.recent.get(&s.transaction_id) {
            Some(txn) => {
                let txn = txn.clone();
                self.add(&txn, [(kind, one)]);
            }
            None => {
                if !self.pending.contains_key(&s.transaction_id) {
                    self.make_pending_room();
                    self.pending_order.push_back(s.transaction_id);
                }
                let kinds = self.pending.entry(s.transaction_id).or_default();
                // A transaction has few span kinds: a linear search beats hashing them.
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, t)) => {
                        t.count += 1;
                        t.sum_us += one.sum_us;
                    }
                    None => {
                        kinds.push((kind, one));
                        self.pending_len += 1;
                    }
                }
            }
        }
    }

    /// Evicts the oldest waiting transactions' spans while `pending` is full.
    fn make_pending_room(&mut self) {
        while self.pending_len >= MAX_PENDING {
            let Some(old) = self.pending_order.pop_front() else {
                break;
            };
            if let Some(kinds) = self.pending.remove(&old) {
                self.pending_len -= kinds.len();
            }
        }
        // Ids whose transaction came stay in the order until evicted: keep them few.
        if self.pending_order.len() > 2 * self.pending.len() + 1_024 {
            let pending = &self.pending;
            self.pending_order.retain(|id| pending.contains_key(id));
        }
    }

    fn transaction(&mut self, t: &TransactionRecord) {
        let txn = txn_key(&t.name);
        let own = Total {
            count: 1,
            sum_us: self_time_us(t.start, t.end, t.child_ns),
        };
        let spans = self.pending.remove(&t.id).unwrap_or_default();
        self.pending_len -= spans.len();
        self.add(
            &txn,
            std::iter::once(((Cow::Borrowed("app"), None), own)).chain(spans),
        );
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
        self.recent.insert(t.id, txn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::meta::{SpanMeta, TransactionMeta};

    static DB: SpanMeta = SpanMeta {
        name: "query",
        kind: "db",
        subtype: Some("postgresql"),
        action: None,
    };
    static JOB: TransactionMeta = TransactionMeta {
        name: "job",
        kind: "task",
    };

    fn span(transaction_id: u64) -> SpanRecord {
        let now = clock::now();
        SpanRecord {
            trace_id: 1,
            transaction_id,
            parent_id: transaction_id,
            id: transaction_id ^ 0xff,
            name: SpanName::Static(&DB),
            start: now,
            end: now,
            sample_rate: 10_000,
            outcome: crate::types::outcome::Outcome::Success,
            extra: None,
            child_ns: 0,
        }
    }

    fn transaction(id: u64) -> TransactionRecord {
        TransactionRecord {
            spans_started: 1,
            ..TransactionRecord::for_tests(id, TransactionName::Static(&JOB))
        }
    }

    #[test]
    fn spans_whose_transaction_never_comes_do_not_block_later_ones() {
        let b = Breakdown::default();
        // More orphans than `pending` holds (their transactions were dropped).
        let orphans: Vec<Event> = (1..=MAX_PENDING as u64 + 10)
            .map(|id| Event::Span(span(id)))
            .collect();
        b.record(&orphans);
        assert!(b.state.lock().pending_len <= MAX_PENDING);
        let id = u64::MAX;
        b.record(&[
            Event::Span(span(id)),
            Event::Transaction(Box::new(transaction(id))),
        ]);
        let db = b.drain(0).into_iter().find(|m| {
            m.span.as_ref().is_some_and(|(kind, subtype)| {
                kind == "db" && subtype.as_deref() == Some("postgresql")
            })
        });
        let db = db.expect("the later transaction's db span is reported");
        assert_eq!(db.samples[0], ("span.self_time.count".into(), 1.0));
    }

    #[test]
    fn the_order_of_waiting_transactions_stays_bounded() {
        let b = Breakdown::default();
        for id in 1..=20_000u64 {
            b.record(&[
                Event::Span(span(id)),
                Event::Transaction(Box::new(transaction(id))),
            ]);
        }
        let st = b.state.lock();
        assert_eq!(st.pending_len, 0);
        assert!(
            st.pending_order.len() <= 1_024 + 1,
            "{}",
            st.pending_order.len()
        );
    }

    #[test]
    fn groups_are_bounded_per_interval() {
        let b = Breakdown::default();
        for id in 1..=(MAX_GROUPS as u64 + 50) {
            let mut t = transaction(id);
            t.name = TransactionName::Dynamic(format!("job {id}").into(), "task".into());
            b.record(&[Event::Transaction(Box::new(t))]);
        }
        assert_eq!(b.drain(0).len(), MAX_GROUPS);
        // A new interval starts empty.
        b.record(&[Event::Transaction(Box::new(transaction(1)))]);
        assert_eq!(b.drain(0).len(), 1);
    }
}
