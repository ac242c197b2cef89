//! Breakdown metrics: how much of each transaction group's time was spent where, as the
//! spec's `span.self_time.count` / `span.self_time.sum.us` per transaction name and type and
//! span type and subtype; a transaction's own self time counts as span type `app`.
//!
//! Self times are measured on the application threads (each stack entry tracks when its
//! children run); the grouping happens here, on the transport thread, because only there are
//! a span and its transaction's final name known together. The metrics thread drains the
//! totals every `metrics_interval`. All maps are bounded.

use std::borrow::{Borrow, Cow};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use parking_lot::Mutex;

use crate::types::clock;
use crate::types::meta::TransactionMeta;
use crate::types::record::{
    Event, MetricsetRecord, SpanName, SpanRecord, TransactionName, TransactionRecord,
};
use crate::util::id_hash::IdMap;
use crate::util::recent_ids::RecentIds;

/// Transaction groups × span types kept between two reports.
const MAX_GROUPS: usize = 1_000;
/// Ended transactions remembered, for spans that arrive after them (from other threads).
const MAX_RECENT: usize = 4_096;
/// Spans waiting for their transaction.
const MAX_PENDING: usize = 50_000;
/// Emptied per-transaction vectors of `pending` kept for the next transactions.
const MAX_SPARE_KINDS: usize = 256;

/// A transaction group: name and type, borrowed from the macro's statics for most
/// transactions.
type TxnKey = (Cow<'static, str>, Cow<'static, str>);

fn txn_key(name: &TransactionName) -> TxnKey {
    match name {
        TransactionName::Static(m) => (Cow::Borrowed(m.name), Cow::Borrowed(m.kind)),
        TransactionName::Dynamic(n, k) => (n.clone(), k.clone()),
    }
}

/// A group's name and type, however they are held: lets the map of groups be searched with
/// borrowed strings (a transaction's own), so that finding a group copies nothing.
trait GroupName {
    fn parts(&self) -> (&str, &str);
}
impl GroupName for TxnKey {
    fn parts(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}
impl GroupName for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}
impl Hash for dyn GroupName + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}
impl PartialEq for dyn GroupName + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}
impl Eq for dyn GroupName + '_ {}

/// The map's key: hashed and compared as its [`GroupName`] view is.
#[derive(Debug)]
struct GroupKey(TxnKey);
impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (&self.0 as &dyn GroupName).hash(h);
    }
}
impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for GroupKey {}
impl<'a> Borrow<dyn GroupName + 'a> for GroupKey {
    fn borrow(&self) -> &(dyn GroupName + 'a) {
        &self.0
    }
}

/// A span's type and subtype: borrowed from the macro's statics for most spans.
type SpanKind = (Cow<'static, str>, Option<Cow<'static, str>>);

#[derive(Debug, Default, Clone, Copy)]
struct Total {
    count: u64,
    sum_us: u64,
}

/// Per span kind, the count and the sum of self times (µs). A transaction group has few
/// kinds: searched linearly.
type Kinds = Vec<(SpanKind, Total)>;

/// Where an ended transaction's group is: its slot in the totals of one interval.
#[derive(Debug, Clone, Copy, Default)]
struct GroupRef {
    slot: u32,
    interval: u32,
}

/// The totals of one metrics interval, by transaction group.
#[derive(Debug, Default)]
struct Totals {
    /// Per group slot.
    kinds: Vec<Kinds>,
    names: Vec<TxnKey>,
    /// The slot found last: consecutive transactions are mostly of one group, and comparing
    /// its name costs less than hashing it.
    last: Option<u32>,
    /// Slots by name and type (SipHash: a name may come from outside, a request's path).
    by_name: HashMap<GroupKey, u32>,
    /// Slots by the address of a macro's static name: most transactions find their group
    /// without hashing a string.
    by_meta: IdMap<usize, u32>,
    /// Entries of `kinds` (transaction group × span kind), bounded by `MAX_GROUPS`.
    entries: usize,
}

#[derive(Debug)]
struct State {
    totals: Totals,
    /// Counts the intervals drained, so that a reference into an earlier one is told apart.
    interval: u32,
    /// The groups of the interval before this one, by slot: for spans that reach this thread
    /// after their transaction and after the drain between them.
    previous: Vec<TxnKey>,
    /// The groups of the transactions ended lately, for their spans that come after them
    /// (from other threads).
    recent: RecentIds<GroupRef, 4>,
    /// Spans waiting for their transaction, by transaction id.
    pending: IdMap<u64, Kinds>,
    pending_len: usize,
    /// Transaction ids of `pending` by age (with ids already gone, cleared out now and then):
    /// when `pending` is full the oldest make room, so that spans whose transaction never
    /// comes (dropped on a full queue) cannot take the room for good.
    pending_order: VecDeque<u64>,
    /// Emptied vectors of `pending`, reused: a transaction's spans allocate nothing.
    spare_kinds: Vec<Kinds>,
    overflowed: bool,
}

impl Default for State {
    fn default() -> State {
        State {
            totals: Totals::default(),
            interval: 0,
            previous: Vec::new(),
            recent: RecentIds::new(MAX_RECENT),
            pending: IdMap::default(),
            pending_len: 0,
            pending_order: VecDeque::new(),
            spare_kinds: Vec::new(),
            overflowed: false,
        }
    }
}

/// Shared by the transport thread (adds) and the metrics thread (drains).
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    state: Mutex<State>,
}

fn self_time_us(start: clock::Tick, end: clock::Tick, child_ns: u64) -> u64 {
    let total = clock::nanos_between(start, end);
    total.saturating_sub(child_ns) / 1_000
}

impl Breakdown {
    /// Accounts for the spans and transactions of a batch (transport thread).
    pub(crate) fn record(&self, batch: &[Event]) {
        let mut st = self.state.lock();
        // Each transaction's line of `recent` is asked for first: fetched meanwhile, it is in
        // the cache when the transaction is recorded.
        for event in batch {
            if let Event::Transaction(t) = event {
                if t.sampled {
                    st.recent.prefetch(t.id);
                }
            }
        }
        // Backwards: a thread's events come in the order they ended, each transaction after
        // its spans. Read from the end, a transaction is recorded first and its spans find its
        // group in `last`, not in `recent`, whose line for an id is mostly out of the cache
        // (a miss for each span).
        let mut last = None;
        for event in batch.iter().rev() {
            match event {
                Event::Span(s) => st.span(s, last),
                Event::Transaction(t) if t.sampled => last = st.transaction(t),
                _ => {}
            }
        }
    }

    /// The totals since the last call, as metricsets stamped `timestamp_us` (metrics thread).
    pub(crate) fn drain(&self, timestamp_us: u64) -> Vec<MetricsetRecord> {
        let mut st = self.state.lock();
        st.interval = st.interval.wrapping_add(1);
        let Totals { kinds, names, .. } = std::mem::take(&mut st.totals);
        let metricsets = names
            .iter()
            .zip(kinds)
            .flat_map(|((name, ty), kinds)| {
                kinds
                    .into_iter()
                    .map(move |((kind, subtype), t)| MetricsetRecord {
                        timestamp: timestamp_us,
                        transaction: Some((name.to_string(), ty.to_string())),
                        span: Some((kind.into_owned(), subtype.map(Cow::into_owned))),
                        tags: Vec::new(),
                        samples: vec![
                            ("span.self_time.count".into(), t.count as f64),
                            ("span.self_time.sum.us".into(), t.sum_us as f64),
                        ],
                    })
            })
            .collect();
        st.previous = names;
        metricsets
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

fn meta_address(m: &'static TransactionMeta) -> usize {
    std::ptr::from_ref(m) as usize
}

/// The same text, found by its address first: most names and types are a macro's statics or
/// literals, the same `&'static str` each time, and comparing their bytes was a library call
/// per span.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn same_kind(a: &SpanKind, b: &SpanKind) -> bool {
    same_text(&a.0, &b.0)
        && match (&a.1, &b.1) {
            (Some(x), Some(y)) => same_text(x, y),
            (x, y) => x.is_none() && y.is_none(),
        }
}

/// Adds `total` to `kind`'s entry of a waiting transaction; false when the entry is new.
fn add_kind(kinds: &mut Kinds, kind: SpanKind, total: Total) -> bool {
    if let Some((_, t)) = kinds.iter_mut().find(|(k, _)| same_kind(k, &kind)) {
        t.count += total.count;
        t.sum_us += total.sum_us;
        true
    } else {
        kinds.push((kind, total));
        false
    }
}

impl Totals {
    /// The slot of `name`'s group, made if there is room.
    fn slot(&mut self, name: &TransactionName) -> Option<u32> {
        if let TransactionName::Static(m) = name {
            if let Some(&slot) = self.by_meta.get(&meta_address(m)) {
                return Some(slot);
            }
        }
        let parts = (name.name(), name.kind());
        if let Some(last) = self.last {
            let (name, kind) = self.names[last as usize].parts();
            if same_text(name, parts.0) && same_text(kind, parts.1) {
                return Some(last);
            }
        }
        let slot = match self.by_name.get(&parts as &dyn GroupName) {
            Some(&slot) => slot,
            None => self.make_slot(txn_key(name))?,
        };
        if let TransactionName::Static(m) = name {
            self.by_meta.insert(meta_address(m), slot);
        }
        self.last = Some(slot);
        Some(slot)
    }

    fn make_slot(&mut self, key: TxnKey) -> Option<u32> {
        if self.entries >= MAX_GROUPS {
            return None;
        }
        let slot = u32::try_from(self.kinds.len()).ok()?;
        self.kinds.push(Kinds::new());
        self.names.push(key.clone());
        self.by_name.insert(GroupKey(key), slot);
        Some(slot)
    }

    /// The slot of the group named `key`, made if there is room.
    fn slot_by_key(&mut self, key: &TxnKey) -> Option<u32> {
        match self.by_name.get(key as &dyn GroupName) {
            Some(&slot) => Some(slot),
            None => self.make_slot(key.clone()),
        }
    }

    /// Adds to the totals of the group in `slot`; false when an entry had no room.
    fn add(&mut self, slot: u32, items: impl IntoIterator<Item = (SpanKind, Total)>) -> bool {
        let Totals { kinds, entries, .. } = self;
        let kinds = &mut kinds[slot as usize];
        let mut fit = true;
        for (kind, total) in items {
            if let Some((_, t)) = kinds.iter_mut().find(|(k, _)| same_kind(k, &kind)) {
                t.count += total.count;
                t.sum_us += total.sum_us;
            } else if *entries < MAX_GROUPS {
                *entries += 1;
                kinds.push((kind, total));
            } else {
                fit = false;
            }
        }
        fit
    }
}

impl State {
    fn overflow(&mut self) {
        if !self.overflowed {
            self.overflowed = true;
            crate::util::diag::warn_limited!(
                "breakdown",
                "more than {MAX_GROUPS} breakdown groups in one metrics interval; the rest are not reported"
            );
        }
    }

    /// The slot in this interval's totals of the group `group` refers to, if it is still
    /// known.
    fn slot_now(&mut self, group: GroupRef) -> Option<u32> {
        if group.interval == self.interval {
            return Some(group.slot);
        }
        if group.interval.wrapping_add(1) != self.interval {
            return None;
        }
        let key = self.previous.get(group.slot as usize)?.clone();
        self.totals.slot_by_key(&key)
    }

    /// Counts `s` in its transaction's group: `last` the transaction recorded last and its
    /// group, else as `recent` remembers it, else pending until its transaction comes.
    fn span(&mut self, s: &SpanRecord, last: Option<(u64, GroupRef)>) {
        let one = Total {
            count: 1,
            sum_us: self_time_us(s.start, s.end, s.child_ns),
        };
        let kind = span_kind(s);
        let group = match last {
            Some((id, group)) if id == s.transaction_id => Some(group),
            _ => self.recent.get(s.transaction_id),
        };
        if let Some(group) = group {
            // Its transaction came first.
            match self.slot_now(group) {
                Some(slot) if !self.totals.add(slot, [(kind, one)]) => self.overflow(),
                Some(_) => {}
                // Its group has no room in this interval.
                None if group.interval.wrapping_add(1) == self.interval => self.overflow(),
                // More than an interval late: not counted.
                None => {}
            }
            return;
        }
        let kinds = match self.pending.entry(s.transaction_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.pending_order.push_back(s.transaction_id);
                e.insert(self.spare_kinds.pop().unwrap_or_default())
            }
        };
        if !add_kind(kinds, kind, one) {
            self.pending_len += 1;
            if self.pending_len > MAX_PENDING {
                self.make_pending_room(s.transaction_id);
            }
        }
        // Ids whose transaction came stay in the order until evicted: keep them few.
        if self.pending_order.len() > 2 * self.pending.len() + 1_024 {
            let pending = &self.pending;
            self.pending_order.retain(|id| pending.contains_key(id));
        }
    }

    /// Evicts the oldest waiting transactions' spans (but `keep`'s) while `pending` is over
    /// its bound.
    fn make_pending_room(&mut self, keep: u64) {
        let mut turns = self.pending_order.len();
        while self.pending_len > MAX_PENDING && turns > 0 {
            turns -= 1;
            let Some(old) = self.pending_order.pop_front() else {
                break;
            };
            if old == keep {
                self.pending_order.push_back(old);
                continue;
            }
            if let Some(kinds) = self.pending.remove(&old) {
                self.pending_len -= kinds.len();
                self.give_back(kinds);
            }
        }
    }

    fn give_back(&mut self, mut kinds: Kinds) {
        if self.spare_kinds.len() < MAX_SPARE_KINDS {
            kinds.clear();
            self.spare_kinds.push(kinds);
        }
    }

    /// Counts `t`'s own time and its pending spans in its group; its id and group, when its
    /// group has a slot.
    fn transaction(&mut self, t: &TransactionRecord) -> Option<(u64, GroupRef)> {
        let own = Total {
            count: 1,
            sum_us: self_time_us(t.start, t.end, t.child_ns),
        };
        let spans = self.pending.remove(&t.id);
        let Some(slot) = self.totals.slot(&t.name) else {
            self.overflow();
            if let Some(spans) = spans {
                self.pending_len -= spans.len();
                self.give_back(spans);
            }
            return None;
        };
        let mut fit = self.totals.add(slot, [((Cow::Borrowed("app"), None), own)]);
        if let Some(mut spans) = spans {
            self.pending_len -= spans.len();
            fit &= self.totals.add(slot, spans.drain(..));
            self.give_back(spans);
        }
        if !fit {
            self.overflow();
        }
        let group = GroupRef {
            slot,
            interval: self.interval,
        };
        self.recent.insert(t.id, group);
        Some((t.id, group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::meta::{SpanMeta, TransactionMeta};

    static DB: SpanMeta = SpanMeta::new("query", "db", Some("postgresql"), None);
    static JOB: TransactionMeta = TransactionMeta::new("job", "task");

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

    fn db_count(metricsets: &[MetricsetRecord]) -> Option<(String, f64)> {
        metricsets.iter().find_map(|m| {
            let (kind, subtype) = m.span.as_ref()?;
            (kind == "db" && subtype.as_deref() == Some("postgresql")).then(|| {
                let (name, _) = m.transaction.clone().expect("a transaction group");
                (name, m.samples[0].1)
            })
        })
    }

    #[test]
    fn a_span_after_its_transaction_counts_in_its_group_even_across_a_drain() {
        let b = Breakdown::default();
        b.record(&[Event::Transaction(Box::new(transaction(7)))]);
        b.record(&[Event::Span(span(7))]);
        assert_eq!(db_count(&b.drain(0)), Some(("job".into(), 1.0)));
        // Its transaction was reported in the interval before.
        b.record(&[Event::Span(span(7))]);
        assert_eq!(db_count(&b.drain(0)), Some(("job".into(), 1.0)));
        // More than an interval late: not counted.
        b.drain(0);
        b.record(&[Event::Span(span(7))]);
        assert_eq!(db_count(&b.drain(0)), None);
    }

    #[test]
    fn static_and_dynamic_names_of_one_group_share_its_totals() {
        let b = Breakdown::default();
        let mut dynamic = transaction(2);
        dynamic.name = TransactionName::Dynamic("job".into(), "task".into());
        b.record(&[
            Event::Span(span(1)),
            Event::Transaction(Box::new(transaction(1))),
            Event::Span(span(2)),
            Event::Transaction(Box::new(dynamic)),
        ]);
        let metricsets = b.drain(0);
        assert_eq!(db_count(&metricsets), Some(("job".into(), 2.0)));
        let app = metricsets
            .iter()
            .find(|m| m.span.as_ref().is_some_and(|(kind, _)| kind == "app"))
            .expect("the transactions' own time");
        assert_eq!(app.samples[0].1, 2.0);
        assert_eq!(metricsets.len(), 2);
    }

    #[test]
    fn spans_of_transactions_interleaved_in_a_batch_count_in_their_groups() {
        let b = Breakdown::default();
        let mut other = transaction(2);
        other.name = TransactionName::Dynamic("other".into(), "task".into());
        // Two threads' events, interleaved; a third transaction's span comes after it.
        b.record(&[
            Event::Span(span(1)),
            Event::Span(span(2)),
            Event::Span(span(1)),
            Event::Transaction(Box::new(transaction(1))),
            Event::Transaction(Box::new(other)),
            Event::Transaction(Box::new(transaction(3))),
            Event::Span(span(3)),
        ]);
        let metricsets = b.drain(0);
        let db = |group: &str| {
            metricsets.iter().find_map(|m| {
                let (kind, _) = m.span.as_ref()?;
                let (name, _) = m.transaction.as_ref()?;
                (kind == "db" && name == group).then_some(m.samples[0].1)
            })
        };
        assert_eq!(db("job"), Some(3.0));
        assert_eq!(db("other"), Some(1.0));
        assert_eq!(b.state.lock().pending_len, 0);
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
