//! The traces kept in memory: events grouped by `trace_id` in order of first arrival, bounded
//! by a number of traces and a number of bytes (the oldest traces go first). A trace is
//! complete once its root transaction has arrived and nothing came for a settling time, or
//! after a longer silence without a root; a late event reopens it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::intake::Accepted;
use crate::trace::Trace;

/// How much the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_traces: usize,
    pub max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    transactions: Vec<Value>,
    spans: Vec<Value>,
    errors: Vec<Value>,
    bytes: usize,
    last_event: Instant,
    /// A transaction without `parent_id` has arrived.
    has_root: bool,
    complete: bool,
    /// Already handed out by `take_completed` once.
    printed: bool,
    /// Bumped on every event, so the UI knows what changed.
    version: u64,
    /// The tree, built on first need after the last event.
    built: Option<Trace>,
}

impl Entry {
    fn trace(&mut self, id: &str) -> &Trace {
        self.built.get_or_insert_with(|| {
            let mut t = Trace::build(&self.transactions, &self.spans, &self.errors);
            match t.pop() {
                Some(t) => t,
                // Events without a usable trace id (errors outside any trace).
                None => Trace::build_untraced(id, &self.errors),
            }
        })
    }
}

/// A completed (or updated) trace and whether it was printed before.
#[derive(Debug)]
pub struct Completed {
    pub trace: Trace,
    pub update: bool,
}

#[derive(Debug)]
pub struct Store {
    limits: Limits,
    entries: HashMap<String, Entry>,
    /// Trace ids in order of first arrival (oldest first).
    order: VecDeque<String>,
    bytes: usize,
    next_untraced: u64,
    /// Traces evicted to stay within the limits.
    pub evicted: u64,
    version: u64,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store {
            limits,
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next_untraced: 0,
            evicted: 0,
            version: 0,
        }
    }

    /// Adds an event of kind transaction, span or error; other kinds are not kept.
    pub fn add(&mut self, event: Accepted, now: Instant) {
        let list = match event.kind.as_str() {
            "transaction" | "span" | "error" => event.kind.as_str(),
            _ => return,
        };
        let id = match event.value.get("trace_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                self.next_untraced += 1;
                format!("untraced-{}", self.next_untraced)
            }
        };
        self.version += 1;
        let version = self.version;
        let entry = self.entries.entry(id.clone()).or_insert_with(|| {
            self.order.push_back(id);
            Entry {
                transactions: Vec::new(),
                spans: Vec::new(),
                errors: Vec::new(),
                bytes: 0,
                last_event: now,
                has_root: false,
                complete: false,
                printed: false,
                version,
                built: None,
            }
        });
        if list == "transaction" && event.value.get("parent_id").is_none_or(Value::is_null) {
            entry.has_root = true;
        }
        entry.bytes += event.bytes;
        entry.last_event = now;
        entry.complete = false;
        entry.version = version;
        entry.built = None;
        match list {
            "transaction" => entry.transactions.push(event.value),
            "span" => entry.spans.push(event.value),
            _ => entry.errors.push(event.value),
        }
        self.bytes += event.bytes;
        self.evict();
    }

    fn evict(&mut self) {
        while self.order.len() > self.limits.max_traces || self.bytes > self.limits.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
                self.evicted += 1;
            }
        }
    }

    /// Traces that have settled since the last call: complete with a root after `settle`
    /// of silence, or without one after ten times that.
    pub fn take_completed(&mut self, now: Instant, settle: Duration) -> Vec<Completed> {
        let mut done = Vec::new();
        for id in &self.order {
            let Some(e) = self.entries.get_mut(id) else {
                continue;
            };
            if e.complete {
                continue;
            }
            let quiet = now.saturating_duration_since(e.last_event);
            if quiet >= settle && (e.has_root || quiet >= settle * 10) {
                let update = e.printed;
                e.complete = true;
                e.printed = true;
                done.push(Completed {
                    trace: e.trace(id).clone(),
                    update,
                });
            }
        }
        done
    }

    /// Marks every open trace complete now and returns them (in arrival order).
    pub fn complete_all(&mut self) -> Vec<Completed> {
        let far = Instant::now() + Duration::from_secs(1 << 20);
        self.take_completed(far, Duration::ZERO)
    }

    /// Every kept trace, oldest first.
    pub fn traces(&mut self) -> Vec<Trace> {
        let mut out = Vec::with_capacity(self.order.len());
        for id in &self.order {
            if let Some(e) = self.entries.get_mut(id) {
                out.push(e.trace(id).clone());
            }
        }
        out
    }

    /// The trace `id` and whether it is complete.
    pub fn trace(&mut self, id: &str) -> Option<(Trace, bool)> {
        let e = self.entries.get_mut(id)?;
        let complete = e.complete;
        Some((e.trace(id).clone(), complete))
    }

    /// Runs `f` on each kept trace, newest first, with whether it is complete.
    pub fn each_newest_first(&mut self, mut f: impl FnMut(&Trace, bool)) {
        for id in self.order.iter().rev() {
            if let Some(e) = self.entries.get_mut(id) {
                let complete = e.complete;
                f(e.trace(id), complete);
            }
        }
    }

    /// Traces kept.
    pub fn trace_count(&self) -> usize {
        self.order.len()
    }

    /// Bytes of event lines kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Changes with every event added.
    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, value: Value) -> Accepted {
        let bytes = value.to_string().len();
        Accepted {
            kind: kind.into(),
            value,
            bytes,
        }
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let now = Instant::now();
        let mut s = Store::new(Limits {
            max_traces: 3,
            max_bytes: usize::MAX,
        });
        for i in 0..10 {
            s.add(
                event(
                    "transaction",
                    json!({"id": "t", "trace_id": format!("{i}")}),
                ),
                now,
            );
        }
        assert_eq!(s.trace_count(), 3);
        assert_eq!(s.traces()[0].trace_id, "7");
        assert_eq!(s.evicted, 7);

        let mut s = Store::new(Limits {
            max_traces: usize::MAX,
            max_bytes: 1000,
        });
        for i in 0..100 {
            s.add(
                event(
                    "span",
                    json!({"id": "s", "trace_id": format!("{i}"), "pad": "x".repeat(90)}),
                ),
                now,
            );
        }
        assert!(s.bytes() <= 1000, "{}", s.bytes());
        assert!(s.trace_count() < 10 && s.trace_count() > 0);
    }

    #[test]
    fn completes_after_the_root_settles_and_reopens_on_late_events() {
        let t0 = Instant::now();
        let settle = Duration::from_millis(100);
        let mut s = Store::new(Limits {
            max_traces: 10,
            max_bytes: usize::MAX,
        });
        s.add(
            event(
                "span",
                json!({"id": "s", "trace_id": "A", "parent_id": "t"}),
            ),
            t0,
        );
        assert!(s.take_completed(t0 + settle * 2, settle).is_empty());
        s.add(
            event("transaction", json!({"id": "t", "trace_id": "A"})),
            t0,
        );
        let done = s.take_completed(t0 + settle, settle);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].trace.node_count(), 2);
        assert!(s.take_completed(t0 + settle * 3, settle).is_empty());
        s.add(
            event(
                "error",
                json!({"id": "e", "trace_id": "A", "parent_id": "s"}),
            ),
            t0 + settle * 3,
        );
        assert_eq!(s.take_completed(t0 + settle * 4, settle).len(), 1);
        // No root: complete after ten times the settling time.
        s.add(
            event(
                "span",
                json!({"id": "x", "trace_id": "B", "parent_id": "gone"}),
            ),
            t0,
        );
        assert!(s.take_completed(t0 + settle * 5, settle).is_empty());
        assert_eq!(s.take_completed(t0 + settle * 10, settle).len(), 1);
    }
}
