//! Traces rendered as waterfalls for the terminal: each transaction and span on its own line,
//! indented under its parent, with its start offset, duration and outcome (in colour when
//! asked), the service where it changes, and errors with their causes and stack traces.

use std::fmt::Write as _;

use serde_json::Value;

use crate::trace::{NodeKind, Trace, TraceError, TraceNode};

const BAR: usize = 36;
/// Stack frames shown per error.
const FRAMES: usize = 8;

const RESET: &str = "\x1b[0m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";

struct Paint(bool);

impl Paint {
    fn wrap(&self, colour: &str, text: &str) -> String {
        if self.0 && !text.is_empty() {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

/// Prints `trace` to stdout without colour.
pub fn print(trace: &Trace) {
    print!("{}", render(trace, false));
}

/// The waterfall of `trace`, ending with an empty line; ANSI colours when `colour`.
pub fn render(trace: &Trace, colour: bool) -> String {
    let paint = Paint(colour);
    let mut out = String::new();
    let mut services: Vec<&str> = Vec::new();
    for (_, n) in trace.walk() {
        if let Some(s) = n.service.as_deref() {
            if !services.contains(&s) {
                services.push(s);
            }
        }
    }
    let _ = write!(out, "trace {}", trace.trace_id);
    if !services.is_empty() {
        let _ = write!(out, "  {}", paint.wrap(CYAN, &services.join(" → ")));
    }
    out.push('\n');
    let total_us = trace
        .root()
        .map_or(1.0, |r| (r.duration_ms * 1000.0).max(1.0));
    let nodes = trace.walk();
    for (i, (depth, node)) in nodes.iter().enumerate() {
        let label = describe(node);
        let indent = "  ".repeat(*depth);
        let start = node.start_offset_us.max(0) as f64;
        let from = ((start / total_us) * BAR as f64).round() as usize;
        let len = (((node.duration_ms * 1000.0) / total_us) * BAR as f64)
            .round()
            .max(1.0) as usize;
        let from = from.min(BAR - 1);
        let len = len.min(BAR - from);
        let outcome = node.outcome.as_deref().unwrap_or("");
        let colour = match outcome {
            "success" => GREEN,
            "failure" => RED,
            _ => YELLOW,
        };
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            paint.wrap(colour, &"█".repeat(len)),
            " ".repeat(BAR - from - len)
        );
        // The service, where it differs from the parent's (the root's is in the header).
        let parent_service = nodes[..i]
            .iter()
            .rev()
            .find(|(d, _)| d < depth)
            .and_then(|(_, p)| p.service.as_deref());
        let service = match (node.service.as_deref(), parent_service) {
            (Some(s), Some(p)) if s != p => format!("  {}", paint.wrap(CYAN, &format!("@{s}"))),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {indent}{label:<width$} |{bar}| +{:>7.2} ms {:>8.2} ms  {}{service}",
            start / 1000.0,
            node.duration_ms,
            paint.wrap(colour, outcome),
            width = 52usize.saturating_sub(indent.len()),
        );
        for e in &node.errors {
            error(&mut out, &paint, &indent, e);
        }
    }
    for e in &trace.errors {
        error(&mut out, &paint, "", e);
    }
    out.push('\n');
    out
}

fn error(out: &mut String, paint: &Paint, indent: &str, e: &TraceError) {
    let head = format!(
        "! error {}: {}",
        e.exception_type.as_deref().unwrap_or("?"),
        e.message.as_deref().unwrap_or(""),
    );
    let _ = writeln!(
        out,
        "  {indent}  {}  at {}",
        paint.wrap(RED, &head),
        e.culprit.as_deref().unwrap_or("?")
    );
    causes(out, indent, e.event.pointer("/exception/cause"));
    let frames = e
        .event
        .pointer("/exception/stacktrace")
        .or_else(|| e.event.pointer("/log/stacktrace"))
        .and_then(Value::as_array);
    for f in frames.into_iter().flatten().take(FRAMES) {
        let _ = writeln!(out, "  {indent}      {}", paint.wrap(DIM, &frame(f)));
    }
    if let Some(n) = frames.map(Vec::len).filter(|&n| n > FRAMES) {
        let _ = writeln!(
            out,
            "  {indent}      {}",
            paint.wrap(DIM, &format!("… {} more frames", n - FRAMES))
        );
    }
}

/// Each cause (an array of exceptions, each with causes of its own), depth first.
fn causes(out: &mut String, indent: &str, list: Option<&Value>) {
    for c in list.and_then(Value::as_array).into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {indent}      caused by: {}",
            c["message"].as_str().unwrap_or("?")
        );
        causes(out, indent, c.get("cause"));
    }
}

/// `function (file:line)` of a stack frame.
pub fn frame(f: &Value) -> String {
    let function = f["function"].as_str().unwrap_or("?");
    let file = f["filename"]
        .as_str()
        .or_else(|| f["abs_path"].as_str())
        .unwrap_or("?");
    match f["lineno"].as_u64() {
        Some(line) => format!("{function} ({file}:{line})"),
        None => format!("{function} ({file})"),
    }
}

/// `name [type/subtype/action]` for a transaction, `name (…)` for a span.
pub fn describe(node: &TraceNode) -> String {
    let mut kind = node.type_.clone();
    for part in [&node.subtype, &node.action].into_iter().flatten() {
        kind.push('/');
        kind.push_str(part);
    }
    match node.kind {
        NodeKind::Transaction => format!("{} [{kind}]", node.name),
        _ => format!("{} ({kind})", node.name),
    }
}
