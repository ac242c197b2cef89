//! `apm::otel`: the OpenTelemetry API bridge. The spec's `otel_bridge.feature`, every scenario
//! and example row, step by step from the file; then parents across the two APIs in both
//! directions (on one thread and across tokio tasks), links, errors and propagation. Every
//! event the server receives is validated against the intake schemas.

mod common;

use std::sync::OnceLock;

use common::agent::{self, named, Harness};
use common::gherkin::{self, Scenario};
use common::spec_dir;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    mark_span_as_active, Link, Span as _, SpanContext, SpanId, SpanKind, Status,
    TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value as OtelValue};
use serde_json::{json, Value};

fn tracer() -> &'static apm::otel::ApmTracer {
    static TRACER: OnceLock<apm::otel::ApmTracer> = OnceLock::new();
    TRACER.get_or_init(|| apm::otel::ApmTracerProvider::new().tracer("apm-tests"))
}

/// A sampled remote span context with these ids (hexadecimal).
fn remote_context(trace_id: &str, span_id: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(trace_id).expect("a trace id"),
        SpanId::from_hex(span_id).expect("a span id"),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// The text between the step's first pair of quotes, single or double.
fn quoted(text: &str) -> &str {
    let start = text.find(['"', '\'']).expect("a quoted value");
    let quote = &text[start..=start];
    let rest = &text[start + 1..];
    &rest[..rest.find(quote).expect("a closing quote")]
}

/// The value after `after` in the step, quoted.
fn quoted_after<'a>(text: &'a str, after: &str) -> &'a str {
    quoted(&text[text.find(after).expect("the step's words") + after.len()..])
}

/// How an attribute of the feature's tables is set: ports as numbers, the rest as text.
fn attribute(key: &str, value: &str) -> KeyValue {
    match value.parse::<i64>() {
        Ok(n) if key.ends_with(".port") => KeyValue::new(key.to_owned(), n),
        _ => KeyValue::new(key.to_owned(), value.to_owned()),
    }
}

fn json_of(v: &OtelValue) -> Value {
    match v {
        OtelValue::I64(n) => json!(n),
        OtelValue::String(s) => json!(s.as_str()),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

const BRIDGED: &str = "otel-span";

/// A scenario's state: the agent, the spans made so far, and once asserted on, the events.
struct World {
    h: Harness,
    active: Option<apm::TransactionGuard>,
    /// The apm id the bridged object's local parent should have.
    local_parent: Option<String>,
    remote: Option<SpanContext>,
    span: Option<apm::otel::ApmSpan>,
    attributes: Vec<KeyValue>,
    sent: Option<(Vec<Value>, Vec<Value>)>,
}

impl World {
    fn span(&mut self) -> &mut apm::otel::ApmSpan {
        self.span.as_mut().expect("an OTel span created before")
    }

    /// Ends what is open, flushes, and keeps the transactions and spans sent.
    fn events(&mut self) -> &(Vec<Value>, Vec<Value>) {
        if self.sent.is_none() {
            drop(self.span.take());
            drop(self.active.take());
            self.h.flush();
            self.sent = Some((self.h.transactions(), self.h.spans()));
        }
        self.sent.as_ref().expect("just set")
    }

    fn bridged(&mut self, kind: &str) -> Value {
        let (transactions, spans) = self.events();
        let events = if kind == "transaction" {
            transactions
        } else {
            spans
        };
        named(events, BRIDGED).clone()
    }

    fn start(&mut self, kind: Option<SpanKind>, parent: Option<&Context>) {
        let mut builder = tracer().span_builder(BRIDGED);
        if let Some(kind) = kind {
            builder = builder.with_kind(kind);
        }
        self.span = Some(match parent {
            Some(cx) => tracer().build_with_context(builder, cx),
            None => tracer().build(builder),
        });
    }
}

fn kind(name: &str) -> SpanKind {
    match name {
        "INTERNAL" => SpanKind::Internal,
        "SERVER" => SpanKind::Server,
        "CLIENT" => SpanKind::Client,
        "PRODUCER" => SpanKind::Producer,
        "CONSUMER" => SpanKind::Consumer,
        other => panic!("no span kind {other:?}"),
    }
}

fn step(w: &mut World, text: &str, table: &[Vec<String>], scenario: &str) {
    if text == "an active transaction" {
        let t = apm::start_transaction("active", "custom");
        w.local_parent = t.id();
        w.active = Some(t);
    } else if text == "OTel span is created with remote context as parent" {
        let remote = remote_context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        let cx = Context::new().with_remote_span_context(remote.clone());
        w.remote = Some(remote);
        w.start(None, Some(&cx));
    } else if text == "OTel span is created without parent" {
        w.start(None, None);
    } else if text == "OTel span is created with local context as parent" {
        let parent = tracer().start("local-parent");
        w.local_parent = Some(format!("{}", parent.span_context().span_id()));
        // The parent goes on living in the context; it ends when its last copy is dropped.
        let cx = Context::new().with_span(parent);
        w.start(None, Some(&cx));
        drop(cx);
    } else if text.starts_with("OTel span is created with kind") {
        w.start(Some(kind(quoted(text))), None);
    } else if text.starts_with("OTel span status set to") {
        let status = match quoted(text) {
            "unset" => Status::Unset,
            "ok" => Status::Ok,
            "error" => Status::error("failed"),
            other => panic!("no status {other:?}"),
        };
        w.span().set_status(status);
    } else if text == "OTel span has following attributes" {
        for row in table {
            if row[1].is_empty() {
                continue;
            }
            let kv = attribute(&row[0], &row[1]);
            w.attributes.push(kv.clone());
            w.span().set_attribute(kv);
        }
    } else if text == "OTel span ends" {
        w.span().end();
    } else if let Some(kind) = text
        .strip_prefix("Elastic bridged object is a ")
        .map(str::to_owned)
    {
        let (transactions, spans) = w.events();
        let (yes, no) = match kind.as_str() {
            "transaction" => (transactions, spans),
            "span" => (spans, transactions),
            other => panic!("no kind {other:?}"),
        };
        named(yes, BRIDGED);
        assert!(
            no.iter().all(|e| e["name"] != BRIDGED),
            "{scenario}: also a {kind}'s opposite"
        );
    } else if let Some(rest) = text.strip_prefix("Elastic bridged ") {
        let kind = rest.split_whitespace().next().expect("span or transaction");
        let rest = &rest[kind.len() + 1..];
        let e = w.bridged(kind);
        if rest == "has remote context as parent" {
            let remote = w.remote.as_ref().expect("a remote parent");
            assert_eq!(e["trace_id"], remote.trace_id().to_string(), "{scenario}");
            assert_eq!(e["parent_id"], remote.span_id().to_string(), "{scenario}");
        } else if rest == "is a root transaction" {
            assert!(e.get("parent_id").is_none(), "{scenario}: {e}");
        } else if rest == "has local context as parent" {
            let parent = w.local_parent.clone().expect("a local parent");
            assert_eq!(e["parent_id"], parent.as_str(), "{scenario}: {e}");
        } else if rest.starts_with("outcome is") {
            assert_eq!(e["outcome"], quoted(rest), "{scenario}");
        } else if rest == "result is not set" {
            assert!(e.get("result").is_none(), "{scenario}: {e}");
        } else if rest.starts_with("OTel kind is") {
            assert_eq!(e["otel"]["span_kind"], quoted(rest), "{scenario}");
        } else if rest.starts_with("type is") {
            assert_eq!(e["type"], quoted(rest), "{scenario}: {e}");
        } else if rest.starts_with("subtype is") {
            match quoted(rest) {
                "" => assert!(e.get("subtype").is_none(), "{scenario}: {e}"),
                subtype => assert_eq!(e["subtype"], subtype, "{scenario}: {e}"),
            }
        } else if rest == "OTel attributes are copied as-is" {
            let expected: serde_json::Map<String, Value> = w
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), json_of(&kv.value)))
                .collect();
            assert_eq!(
                e["otel"]["attributes"],
                Value::Object(expected),
                "{scenario}"
            );
        } else if rest.starts_with("destination resource is set to") {
            assert_eq!(
                e["context"]["destination"]["service"]["resource"],
                quoted(rest),
                "{scenario}: {e}"
            );
        } else if rest.starts_with("service target type is") {
            let target = &e["context"]["service"]["target"];
            assert_eq!(
                target["type"],
                quoted_after(rest, "type is"),
                "{scenario}: {e}"
            );
            match quoted_after(rest, "name is") {
                "" => assert!(target.get("name").is_none(), "{scenario}: {e}"),
                name => assert_eq!(target["name"], name, "{scenario}: {e}"),
            }
        } else {
            panic!("{scenario}: step not understood: {text}");
        }
    } else {
        panic!("{scenario}: step not understood: {text}");
    }
}

fn run(scenario: &Scenario) {
    assert_eq!(scenario.steps[0].text, "an agent", "{}", scenario.name);
    let mut w = World {
        h: agent::start(|c| c),
        active: None,
        local_parent: None,
        remote: None,
        span: None,
        attributes: Vec::new(),
        sent: None,
    };
    for s in &scenario.steps[1..] {
        step(&mut w, &s.text, &s.table, &scenario.name);
    }
    w.h.finish();
}

#[test]
fn otel_bridge_feature() {
    let Some(dir) = spec_dir() else { return };
    let text = std::fs::read_to_string(dir.join("gherkin-specs").join("otel_bridge.feature"))
        .expect("feature file");
    let scenarios = gherkin::parse(&text);
    let mut names: Vec<&str> = scenarios
        .iter()
        .map(|s| s.name.split(" [").next().unwrap_or(&s.name))
        .map(|n| n.split(" {").next().unwrap_or(n))
        .collect();
    names.dedup();
    assert_eq!(names.len(), 14, "{names:#?}");
    for s in &scenarios {
        run(s);
    }
}

/// The id of the one event named `name`, among transactions and spans.
fn id_of(events: &[Value], name: &str) -> Value {
    named(events, name)["id"].clone()
}

fn all_events(h: &Harness) -> Vec<Value> {
    let mut events = h.transactions();
    events.extend(h.spans());
    events
}

#[apm::span]
fn apm_outer() {
    tracer().in_span("otel-middle", |_cx| apm_inner());
}

#[apm::span]
fn apm_inner() {
    tracer().in_span("otel-leaf", |_cx| {
        let _s = apm::start_span("apm-under-leaf", "app");
    });
}

#[test]
fn parents_cross_the_two_apis_in_both_directions_on_one_thread() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("apm-root", "custom");
        apm_outer();
    }
    // An OpenTelemetry root: a transaction, with apm spans under it.
    tracer().in_span("otel-root", |_cx| {
        let _s = apm::start_span("apm-under-otel-root", "app");
        // Made active without `in_span`.
        let span = tracer().start("otel-active");
        let guard = mark_span_as_active(span);
        {
            let _s = apm::start_span("apm-under-active", "app");
        }
        drop(guard);
        // Left: the next span is the root's child again.
        let _after = apm::start_span("apm-after-guard", "app");
    });
    h.flush();
    let events = all_events(&h);
    let parent = |child: &str| named(&events, child)["parent_id"].clone();
    assert_eq!(parent("apm_outer"), id_of(&events, "apm-root"));
    assert_eq!(parent("otel-middle"), id_of(&events, "apm_outer"));
    assert_eq!(parent("apm_inner"), id_of(&events, "otel-middle"));
    assert_eq!(parent("otel-leaf"), id_of(&events, "apm_inner"));
    assert_eq!(parent("apm-under-leaf"), id_of(&events, "otel-leaf"));
    let roots = h.transactions();
    assert!(named(&roots, "otel-root").get("parent_id").is_none());
    assert_eq!(parent("apm-under-otel-root"), id_of(&events, "otel-root"));
    assert_eq!(parent("otel-active"), id_of(&events, "apm-under-otel-root"));
    assert_eq!(parent("apm-under-active"), id_of(&events, "otel-active"));
    assert_eq!(
        parent("apm-after-guard"),
        id_of(&events, "apm-under-otel-root")
    );
    // Same trace throughout each tree.
    let trace = named(&events, "apm-root")["trace_id"].clone();
    for name in ["apm_outer", "otel-middle", "otel-leaf", "apm-under-leaf"] {
        assert_eq!(named(&events, name)["trace_id"], trace, "{name}");
    }
    h.finish();
}

#[apm::span]
async fn apm_task() {
    tokio::task::yield_now().await;
    let span = tracer().start("otel-in-apm-task");
    drop(span);
}

#[test]
fn parents_cross_the_two_apis_across_tokio_tasks() {
    let h = agent::start(|c| c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        // An OpenTelemetry span's context carried into a task: apm spans there are its
        // children, on whichever worker polls them.
        let root = tracer().start("otel-task-root");
        let cx = Context::new().with_span(root);
        let task = tokio::spawn(apm_task().with_context(cx.clone()));
        task.await.expect("the task completes");
        drop(cx);
        // An apm transaction carried into a task: OpenTelemetry spans there are its children.
        let t = apm::Transaction::start("apm-task-root", "custom");
        let task = tokio::spawn(t.bind(async {
            tokio::task::yield_now().await;
            tracer().in_span("otel-in-bound-task", |_cx| {});
        }));
        task.await.expect("the task completes");
    });
    drop(rt);
    h.flush();
    let events = all_events(&h);
    let parent = |child: &str| named(&events, child)["parent_id"].clone();
    assert_eq!(parent("apm_task"), id_of(&events, "otel-task-root"));
    assert_eq!(parent("otel-in-apm-task"), id_of(&events, "apm_task"));
    assert_eq!(
        parent("otel-in-bound-task"),
        id_of(&events, "apm-task-root")
    );
    h.finish();
}

#[apm::span]
fn apm_with_explicit_child() -> String {
    let cx = apm::otel::current_context();
    let span_id = cx.span().span_context().span_id().to_string();
    let _child = tracer().start_with_context("otel-explicit-child", &cx);
    span_id
}

#[test]
fn the_current_context_of_an_apm_span_holds_it_for_explicit_parents() {
    let h = agent::start(|c| c);
    assert!(!apm::otel::current_context().has_active_span());
    let seen = {
        let _t = apm::start_transaction("explicit-root", "custom");
        apm_with_explicit_child()
    };
    h.flush();
    let events = all_events(&h);
    assert_eq!(id_of(&events, "apm_with_explicit_child"), seen.as_str());
    assert_eq!(
        named(&events, "otel-explicit-child")["parent_id"],
        seen.as_str()
    );
    h.finish();
}

#[test]
fn guards_dropped_out_of_order_leave_apm_stack_as_it_was() {
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("stack-root", "custom");
        let a = Context::current_with_span(tracer().start("otel-a")).attach();
        let b = Context::current_with_span(tracer().start("otel-b")).attach();
        drop(a);
        {
            let _s = apm::start_span("under-b", "app");
        }
        drop(b);
        let _s = apm::start_span("under-root", "app");
    }
    h.flush();
    let events = all_events(&h);
    let parent = |child: &str| named(&events, child)["parent_id"].clone();
    assert_eq!(parent("otel-a"), id_of(&events, "stack-root"));
    assert_eq!(parent("otel-b"), id_of(&events, "otel-a"));
    assert_eq!(parent("under-b"), id_of(&events, "otel-b"));
    assert_eq!(parent("under-root"), id_of(&events, "stack-root"));
    h.finish();
}

/// Links given through the OpenTelemetry API go with a transaction sampled or not (a server
/// before 8.0 takes unsampled transactions), as the links of a restarted trace do.
#[test]
fn an_unsampled_transactions_links_are_sent() {
    let server = apm_tests::MockServer::start();
    server.set_server_version("7.17.0");
    let h = agent::start_with(server, |c| c.transaction_sample_rate(0.0));
    let linked = remote_context("33333333333333333333333333333333", "4444444444444444");
    drop(
        tracer()
            .span_builder("otel-unsampled-linked")
            .with_links(vec![Link::with_context(linked)])
            .start(tracer()),
    );
    h.flush();
    let tx = named(&h.transactions(), "otel-unsampled-linked").clone();
    assert_eq!(tx["sampled"], false, "{tx:#}");
    assert_eq!(
        tx["links"],
        json!([{"trace_id": "33333333333333333333333333333333", "span_id": "4444444444444444"}])
    );
    h.finish();
}

#[test]
fn links_errors_names_and_propagation() {
    let h = agent::start(|c| c);
    let linked = remote_context("11111111111111111111111111111111", "2222222222222222");
    let traceparent;
    {
        let mut root = tracer()
            .span_builder("otel-linked-root")
            .with_links(vec![Link::with_context(linked.clone())])
            .start(tracer());
        root.update_name("otel-renamed-root");
        let cx = Context::new().with_span(root);
        let mut child = tracer()
            .span_builder("otel-child")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.url", "https://shop.invalid/cart"),
                KeyValue::new("tags", OtelValue::Array(vec![1_i64, 2].into())),
            ])
            .start_with_context(tracer(), &cx);
        child.add_link(linked.clone(), vec![KeyValue::new("ignored", true)]);
        child.record_error(&std::io::Error::other("disk on fire"));
        child.set_status(Status::error("boom"));
        child.set_status(Status::Unset);
        // Propagation from inside the bridged span: the callee's parent is that span.
        let child_id = child.span_context().span_id().to_string();
        let cx = cx.with_span(child);
        let _g = cx.attach();
        let mut headers = Vec::new();
        apm::inject_headers(&mut headers);
        traceparent = headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.clone());
        assert!(
            traceparent.as_deref().unwrap_or("").contains(&child_id),
            "{headers:?}"
        );
    }
    h.flush();
    let transactions = h.transactions();
    let spans = h.spans();
    let root = named(&transactions, "otel-renamed-root");
    let link =
        json!([{"trace_id": "11111111111111111111111111111111", "span_id": "2222222222222222"}]);
    assert_eq!(root["links"], link);
    assert_eq!(root["otel"]["span_kind"], "INTERNAL");
    let child = named(&spans, "otel-child");
    assert_eq!(child["links"], link);
    assert_eq!(child["outcome"], "failure");
    assert_eq!(child["otel"]["attributes"]["tags"], json!([1, 2]));
    assert_eq!(
        child["context"]["service"]["target"]["name"],
        "shop.invalid:443"
    );
    assert!(traceparent.is_some());
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["parent_id"], child["id"]);
    assert_eq!(errors[0]["exception"]["message"], "disk on fire");
    h.finish();
}

#[test]
fn nothing_is_recorded_without_an_agent_and_remote_parents_carry_on() {
    // No agent running: spans record nothing, and keep their remote parent's context.
    let _exclusive = agent::exclusive();
    let remote = remote_context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let cx = Context::new().with_remote_span_context(remote.clone());
    let mut span = tracer().start_with_context("unrecorded", &cx);
    assert!(!span.is_recording());
    assert_eq!(span.span_context(), &remote);
    span.set_attribute(KeyValue::new("k", "v"));
    span.end();
    let root = tracer().start("unrecorded-root");
    assert!(!root.is_recording());
    assert!(!root.span_context().is_valid());
}
