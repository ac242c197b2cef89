//! Traces printed as waterfalls in the terminal.

use apm_tests::{NodeKind, Trace, TraceNode};

const BAR: usize = 36;

/// Prints one trace as a waterfall: each transaction and span on its own line, indented under
/// its parent, with its start offset, duration and outcome; errors under their parent.
pub fn print(trace: &Trace) {
    let Some(root) = trace.root() else {
        return;
    };
    let total_us = (root.duration_ms * 1000.0).max(1.0);
    println!("trace {}", trace.trace_id);
    for (depth, node) in trace.walk() {
        let label = describe(node);
        let indent = "  ".repeat(depth);
        let start = node.start_offset_us.max(0) as f64;
        let from = ((start / total_us) * BAR as f64).round() as usize;
        let len = (((node.duration_ms * 1000.0) / total_us) * BAR as f64)
            .round()
            .max(1.0) as usize;
        let from = from.min(BAR - 1);
        let len = len.min(BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(len),
            " ".repeat(BAR - from - len)
        );
        println!(
            "  {indent}{label:<width$} |{bar}| +{:>7.2} ms {:>8.2} ms  {}",
            start / 1000.0,
            node.duration_ms,
            node.outcome.as_deref().unwrap_or(""),
            width = 52usize.saturating_sub(indent.len()),
        );
        for e in &node.errors {
            println!(
                "  {indent}  ! error {}: {}  at {}",
                e.exception_type.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or(""),
                e.culprit.as_deref().unwrap_or("?")
            );
            let causes = e.event["exception"]["cause"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for cause in causes {
                println!(
                    "  {indent}      caused by: {}",
                    cause["message"].as_str().unwrap_or("?")
                );
            }
        }
    }
    println!();
}

fn describe(node: &TraceNode) -> String {
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
