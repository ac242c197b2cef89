//! Received events regrouped as traces: transaction → spans (by `parent_id`), errors attached
//! to the node they were captured in. The demo's waterfall printer walks this tree.

use std::collections::HashMap;

use serde_json::Value;

/// Whether a node is a transaction or a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Transaction,
    Span,
}

/// A transaction or span with its children.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceNode {
    pub kind: NodeKind,
    pub id: String,
    pub parent_id: Option<String>,
    /// `context.service.name` (the local server fills it in from the request's metadata).
    pub service: Option<String>,
    pub name: String,
    /// The event's `type`.
    pub type_: String,
    pub subtype: Option<String>,
    pub action: Option<String>,
    /// Absolute start, µs since the Unix epoch (`None` when the event had no usable time).
    pub timestamp_us: Option<i64>,
    /// Start relative to the trace's first root ([`Trace::base_timestamp_us`]), in µs.
    pub start_offset_us: i64,
    pub duration_ms: f64,
    pub outcome: Option<String>,
    /// Errors whose `parent_id` is this node.
    pub errors: Vec<TraceError>,
    /// Ordered by start offset, then arrival.
    pub children: Vec<TraceNode>,
    /// The event as received.
    pub event: Value,
}

/// An error event inside a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceError {
    pub id: String,
    pub parent_id: Option<String>,
    /// `exception.message`, else `log.message`.
    pub message: Option<String>,
    /// `exception.type`.
    pub exception_type: Option<String>,
    pub culprit: Option<String>,
    pub start_offset_us: Option<i64>,
    pub event: Value,
}

/// All received events sharing one `trace_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub trace_id: String,
    /// Nodes whose parent was not received: normally the one local root transaction.
    pub roots: Vec<TraceNode>,
    /// Errors whose parent was not received.
    pub errors: Vec<TraceError>,
    /// Earliest root start, the origin of every `start_offset_us`.
    pub base_timestamp_us: i64,
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn i64_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(|t| t.as_i64().or_else(|| t.as_f64().map(|f| f as i64)))
}

struct Flat {
    kind: NodeKind,
    event: Value,
    timestamp_us: Option<i64>,
}

impl Trace {
    /// Groups events into traces, in order of each trace's first arrival. Events without a
    /// `trace_id` belong to no trace and are left out.
    pub fn build(transactions: &[Value], spans: &[Value], errors: &[Value]) -> Vec<Trace> {
        // Transaction start times, for legacy spans that only carry `start` (ms, relative).
        let tx_start: HashMap<String, i64> = transactions
            .iter()
            .filter_map(|t| Some((str_at(t, "id")?, i64_at(t, "timestamp")?)))
            .collect();

        let mut order: Vec<String> = Vec::new();
        let mut nodes: HashMap<String, Vec<Flat>> = HashMap::new();
        let mut errs: HashMap<String, Vec<Value>> = HashMap::new();
        let mut note = |trace_id: &str| {
            if !order.iter().any(|t| t == trace_id) {
                order.push(trace_id.to_owned());
            }
        };
        for (kind, events) in [
            (NodeKind::Transaction, transactions),
            (NodeKind::Span, spans),
        ] {
            for e in events {
                let Some(trace_id) = e.get("trace_id").and_then(Value::as_str) else {
                    continue;
                };
                note(trace_id);
                let timestamp_us = i64_at(e, "timestamp").or_else(|| {
                    let tx = tx_start.get(e.get("transaction_id")?.as_str()?)?;
                    let start_ms = e.get("start")?.as_f64()?;
                    Some(tx + (start_ms * 1000.0) as i64)
                });
                nodes.entry(trace_id.to_owned()).or_default().push(Flat {
                    kind,
                    event: e.clone(),
                    timestamp_us,
                });
            }
        }
        for e in errors {
            let Some(trace_id) = e.get("trace_id").and_then(Value::as_str) else {
                continue;
            };
            note(trace_id);
            errs.entry(trace_id.to_owned()).or_default().push(e.clone());
        }
        order
            .into_iter()
            .map(|id| {
                let n = nodes.remove(&id).unwrap_or_default();
                let e = errs.remove(&id).unwrap_or_default();
                build_one(id, n, e)
            })
            .collect()
    }

    /// A trace of errors that carry no `trace_id`, under the name `id`.
    pub fn build_untraced(id: &str, errors: &[Value]) -> Trace {
        build_one(id.to_owned(), Vec::new(), errors.to_vec())
    }

    /// Depth-first walk: `(depth, node)` with roots at depth 0, children in start order.
    pub fn walk(&self) -> Vec<(usize, &TraceNode)> {
        fn go<'a>(n: &'a TraceNode, depth: usize, out: &mut Vec<(usize, &'a TraceNode)>) {
            out.push((depth, n));
            for c in &n.children {
                go(c, depth + 1, out);
            }
        }
        let mut out = Vec::new();
        for r in &self.roots {
            go(r, 0, &mut out);
        }
        out
    }

    /// The first root, normally the trace's transaction.
    pub fn root(&self) -> Option<&TraceNode> {
        self.roots.first()
    }

    /// Transactions and spans in the trace.
    pub fn node_count(&self) -> usize {
        self.walk().len()
    }

    /// First node (depth-first) named `name`.
    pub fn find(&self, name: &str) -> Option<&TraceNode> {
        self.walk()
            .into_iter()
            .map(|(_, n)| n)
            .find(|n| n.name == name)
    }
}

fn build_one(trace_id: String, flat: Vec<Flat>, errors: Vec<Value>) -> Trace {
    let index: HashMap<String, usize> = flat
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((str_at(&f.event, "id")?, i)))
        .collect();
    let parent_of = |i: usize| -> Option<usize> {
        let e = &flat[i].event;
        // A span without parent_id (old agents) hangs under its transaction.
        let p = str_at(e, "parent_id").or_else(|| str_at(e, "transaction_id"))?;
        index.get(&p).copied().filter(|&p| p != i)
    };
    // A node is a root when its parent is missing, or when following parents loops
    // (malformed input must not hang or drop nodes).
    let is_root = |i: usize| {
        let mut cur = i;
        for _ in 0..=flat.len() {
            match parent_of(cur) {
                None => return cur == i,
                Some(p) => cur = p,
            }
        }
        true
    };
    let roots: Vec<usize> = (0..flat.len()).filter(|&i| is_root(i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); flat.len()];
    for i in 0..flat.len() {
        if !roots.contains(&i) {
            if let Some(p) = parent_of(i) {
                children[p].push(i);
            }
        }
    }
    let base = roots
        .iter()
        .filter_map(|&i| flat[i].timestamp_us)
        .min()
        .or_else(|| flat.iter().filter_map(|f| f.timestamp_us).min())
        .or_else(|| errors.iter().filter_map(|e| i64_at(e, "timestamp")).min())
        .unwrap_or(0);

    // Errors by the node they belong to; unknown parents stay at trace level.
    let mut node_errors: Vec<Vec<TraceError>> = vec![Vec::new(); flat.len()];
    let mut loose = Vec::new();
    for e in errors {
        let err = TraceError {
            id: str_at(&e, "id").unwrap_or_default(),
            parent_id: str_at(&e, "parent_id"),
            message: e
                .pointer("/exception/message")
                .or_else(|| e.pointer("/log/message"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            exception_type: e
                .pointer("/exception/type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            culprit: str_at(&e, "culprit"),
            start_offset_us: i64_at(&e, "timestamp").map(|t| t - base),
            event: e.clone(),
        };
        let owner = str_at(&e, "parent_id")
            .or_else(|| str_at(&e, "transaction_id"))
            .and_then(|p| index.get(&p).copied());
        match owner {
            Some(i) => node_errors[i].push(err),
            None => loose.push(err),
        }
    }

    fn assemble(
        i: usize,
        flat: &[Flat],
        children: &[Vec<usize>],
        errors: &mut [Vec<TraceError>],
        base: i64,
    ) -> TraceNode {
        let f = &flat[i];
        let e = &f.event;
        let mut kids: Vec<TraceNode> = children[i]
            .iter()
            .map(|&c| assemble(c, flat, children, errors, base))
            .collect();
        // Stable: equal offsets keep arrival order.
        kids.sort_by_key(|k| k.start_offset_us);
        TraceNode {
            kind: f.kind,
            id: str_at(e, "id").unwrap_or_default(),
            parent_id: str_at(e, "parent_id"),
            service: e
                .pointer("/context/service/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: str_at(e, "name").unwrap_or_default(),
            type_: str_at(e, "type").unwrap_or_default(),
            subtype: str_at(e, "subtype"),
            action: str_at(e, "action"),
            timestamp_us: f.timestamp_us,
            start_offset_us: f.timestamp_us.map_or(0, |t| t - base),
            duration_ms: e.get("duration").and_then(Value::as_f64).unwrap_or(0.0),
            outcome: str_at(e, "outcome"),
            errors: std::mem::take(&mut errors[i]),
            children: kids,
            event: e.clone(),
        }
    }

    let mut root_nodes: Vec<TraceNode> = roots
        .iter()
        .map(|&r| assemble(r, &flat, &children, &mut node_errors, base))
        .collect();
    root_nodes.sort_by_key(|n| n.start_offset_us);
    Trace {
        trace_id,
        roots: root_nodes,
        errors: loose,
        base_timestamp_us: base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_700_000_000_000_000;

    #[test]
    fn builds_tree_with_offsets_and_errors() {
        let txs = [
            json!({"id": "t1", "trace_id": "A", "name": "GET /", "type": "request",
                          "timestamp": T0, "duration": 10.5, "outcome": "success"}),
        ];
        let spans = [
            // Arrives before its sibling but starts later.
            json!({"id": "s2", "trace_id": "A", "parent_id": "t1", "transaction_id": "t1",
                   "name": "second", "type": "db", "subtype": "postgresql", "action": "query",
                   "timestamp": T0 + 5_000, "duration": 2.0, "outcome": "failure"}),
            json!({"id": "s1", "trace_id": "A", "parent_id": "t1", "transaction_id": "t1",
                   "name": "first", "type": "app", "timestamp": T0 + 1_000, "duration": 3.0}),
            json!({"id": "s3", "trace_id": "A", "parent_id": "s1", "transaction_id": "t1",
                   "name": "nested", "type": "app", "start": 1.5, "duration": 1.0}),
            json!({"id": "x1", "trace_id": "B", "parent_id": "gone", "name": "orphan",
                   "type": "app", "timestamp": T0, "duration": 1.0}),
        ];
        let errors = [
            json!({"id": "e1", "trace_id": "A", "parent_id": "s2", "transaction_id": "t1",
                   "timestamp": T0 + 6_000, "exception": {"message": "boom", "type": "Io"}}),
            json!({"id": "e2", "trace_id": "A", "parent_id": "nope", "log": {"message": "lost"}}),
            json!({"id": "e3", "log": {"message": "no trace"}}),
        ];
        let traces = Trace::build(&txs, &spans, &errors);
        assert_eq!(traces.len(), 2);
        let a = &traces[0];
        assert_eq!(a.trace_id, "A");
        let root = a.root().expect("root");
        assert_eq!(
            (root.kind, root.name.as_str(), root.type_.as_str()),
            (NodeKind::Transaction, "GET /", "request")
        );
        assert_eq!(root.duration_ms, 10.5);
        let names: Vec<_> = a
            .walk()
            .iter()
            .map(|(d, n)| (*d, n.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [(0, "GET /"), (1, "first"), (2, "nested"), (1, "second")]
        );
        assert_eq!(a.find("nested").expect("nested").start_offset_us, 1_500);
        let second = a.find("second").expect("second");
        assert_eq!(second.start_offset_us, 5_000);
        assert_eq!(second.subtype.as_deref(), Some("postgresql"));
        assert_eq!(second.outcome.as_deref(), Some("failure"));
        assert_eq!(second.errors.len(), 1);
        assert_eq!(second.errors[0].message.as_deref(), Some("boom"));
        assert_eq!(second.errors[0].start_offset_us, Some(6_000));
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].message.as_deref(), Some("lost"));
        assert_eq!(traces[1].roots[0].name, "orphan");
        assert_eq!(a.node_count(), 4);
    }

    #[test]
    fn parent_cycles_do_not_hang_or_drop_nodes() {
        let spans = [
            json!({"id": "a", "trace_id": "C", "parent_id": "b", "name": "a", "timestamp": T0}),
            json!({"id": "b", "trace_id": "C", "parent_id": "a", "name": "b", "timestamp": T0}),
            json!({"id": "c", "trace_id": "C", "parent_id": "c", "name": "c", "timestamp": T0}),
        ];
        let t = &Trace::build(&[], &spans, &[])[0];
        assert_eq!(t.node_count(), 3);
    }
}
