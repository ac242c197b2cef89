//! The web page at `/ui` and the JSON it polls: `/ui/api/traces` (recent traces, filtered by
//! `service`, `name`, `outcome` and `min_ms`), `/ui/api/trace?id=` (one trace, flattened
//! depth first) and `/ui/api/violations`. The page is plain HTML and JavaScript compiled into
//! the binary.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::http::{query_param, Request, Response};
use crate::server::Shared;
use crate::trace::{NodeKind, Trace, TraceError};
use crate::waterfall;

const PAGE: &str = include_str!("ui/index.html");

pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::new(405).header("Allow", "GET");
    }
    let q = |name: &str| {
        req.query
            .as_deref()
            .and_then(|query| query_param(query, name))
            .filter(|v| !v.is_empty())
    };
    match req.path.as_str() {
        "/ui" | "/ui/" => Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", "no-store")
            .body(PAGE),
        "/ui/api/traces" => {
            let filter = Filter {
                service: q("service"),
                name: q("name"),
                outcome: q("outcome"),
                min_ms: q("min_ms").and_then(|m| m.parse().ok()),
            };
            let limit = q("limit").and_then(|l| l.parse().ok()).unwrap_or(200usize);
            let mut traces = Vec::new();
            let mut services = Vec::new();
            let mut store = shared.store.lock();
            store.each_newest_first(|t, complete| {
                for (_, n) in t.walk() {
                    if let Some(s) = &n.service {
                        if !services.contains(s) {
                            services.push(s.clone());
                        }
                    }
                }
                if traces.len() < limit && filter.matches(t) {
                    traces.push(summary(t, complete));
                }
            });
            let body = json!({
                "version": store.version(),
                "kept": store.trace_count(),
                "bytes": store.bytes(),
                "evicted": store.evicted,
                "services": services,
                "violations": shared.violations.lock().len(),
                "events_accepted": shared.stats.events_accepted.load(Ordering::Relaxed),
                "traces": traces,
            });
            drop(store);
            api(body)
        }
        "/ui/api/trace" => {
            let found = q("id").and_then(|id| shared.store.lock().trace(&id));
            match found {
                Some((t, complete)) => api(detail(&t, complete)),
                None => Response::json(404, r#"{"error":"no such trace"}"#),
            }
        }
        "/ui/api/violations" => {
            let list: Vec<Value> = shared.violations.lock().iter().cloned().collect();
            api(Value::Array(list))
        }
        _ => Response::new(404)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("404 page not found\n"),
    }
}

fn api(body: Value) -> Response {
    Response::json(200, body.to_string()).header("Cache-Control", "no-store")
}

struct Filter {
    service: Option<String>,
    name: Option<String>,
    outcome: Option<String>,
    min_ms: Option<f64>,
}

impl Filter {
    fn matches(&self, t: &Trace) -> bool {
        let Some(root) = t.root() else {
            // Loose errors: shown unless a filter asks for something they lack.
            return self.service.is_none()
                && self.name.is_none()
                && self.outcome.is_none()
                && self.min_ms.is_none();
        };
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|n| root.name.to_lowercase().contains(&n.to_lowercase()));
        let service_ok = self
            .service
            .as_ref()
            .is_none_or(|s| t.walk().iter().any(|(_, n)| n.service.as_ref() == Some(s)));
        let outcome_ok = self
            .outcome
            .as_ref()
            .is_none_or(|o| root.outcome.as_ref() == Some(o));
        let min_ok = self.min_ms.is_none_or(|m| root.duration_ms >= m);
        name_ok && service_ok && outcome_ok && min_ok
    }
}

fn error_count(t: &Trace) -> usize {
    t.errors.len() + t.walk().iter().map(|(_, n)| n.errors.len()).sum::<usize>()
}

fn summary(t: &Trace, complete: bool) -> Value {
    let root = t.root();
    json!({
        "trace_id": t.trace_id,
        "name": root.map_or("(errors outside a transaction)", |r| r.name.as_str()),
        "service": root.and_then(|r| r.service.clone()),
        "outcome": root.and_then(|r| r.outcome.clone()),
        "duration_ms": root.map(|r| r.duration_ms),
        "timestamp_us": t.base_timestamp_us,
        "nodes": t.node_count(),
        "errors": error_count(t),
        "complete": complete,
    })
}

fn detail(t: &Trace, complete: bool) -> Value {
    let nodes: Vec<Value> = t
        .walk()
        .into_iter()
        .map(|(depth, n)| {
            let e = &n.event;
            json!({
                "depth": depth,
                "kind": if n.kind == NodeKind::Transaction { "transaction" } else { "span" },
                "id": n.id,
                "label": waterfall::describe(n),
                "name": n.name,
                "service": n.service,
                "start_ms": n.start_offset_us as f64 / 1000.0,
                "duration_ms": n.duration_ms,
                "outcome": n.outcome,
                "result": e.get("result"),
                "db_statement": e.pointer("/context/db/statement"),
                "http_url": e.pointer("/context/http/url")
                    .or_else(|| e.pointer("/context/request/url/full")),
                "http_status": e.pointer("/context/http/status_code")
                    .or_else(|| e.pointer("/context/response/status_code")),
                "labels": e.pointer("/context/tags"),
                "errors": n.errors.iter().map(error).collect::<Vec<_>>(),
                "event": e,
            })
        })
        .collect();
    json!({
        "summary": summary(t, complete),
        "nodes": nodes,
        "errors": t.errors.iter().map(error).collect::<Vec<_>>(),
    })
}

fn error(e: &TraceError) -> Value {
    let frames: Vec<String> = e
        .event
        .pointer("/exception/stacktrace")
        .or_else(|| e.event.pointer("/log/stacktrace"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(waterfall::frame)
        .collect();
    json!({
        "id": e.id,
        "type": e.exception_type,
        "message": e.message,
        "culprit": e.culprit,
        "causes": e.event.pointer("/exception/cause"),
        "frames": frames,
    })
}
