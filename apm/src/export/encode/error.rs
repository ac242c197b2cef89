//! Error lines: the exception with its cause chain and the capture site, the trace and
//! transaction it belongs to, and the request being served.

use std::io::{self, Write};

use serde::Serialize;

use super::fields::{write_line, Hex128, Hex64, Kw, Long};
use super::request::{request_view, Policy, RequestView};
use crate::types::clock;
use crate::types::record::ErrorRecord;

#[derive(Serialize)]
struct ErrorTransactionView<'a> {
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    sampled: bool,
}

#[derive(Serialize)]
struct Frame<'a> {
    filename: &'a str,
    lineno: u32,
    colno: u32,
    module: &'a str,
    library_frame: bool,
}

#[derive(Serialize)]
struct Cause<'a> {
    message: Long<'a>,
}

#[derive(Serialize)]
struct ExceptionView<'a> {
    message: Long<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<Kw<'a>>,
    handled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cause: Vec<Cause<'a>>,
    stacktrace: [Frame<'a>; 1],
}

#[derive(Serialize)]
struct ErrorView<'a> {
    id: Hex128,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<Hex128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<Hex64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<Hex64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<ErrorTransactionView<'a>>,
    culprit: Kw<'a>,
    exception: ExceptionView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ErrorContextView<'a>>,
}

#[derive(Serialize)]
struct ErrorContextView<'a> {
    request: RequestView<'a>,
}

/// Splits a Rust type path into module and type name: `std::num::ParseIntError` →
/// (`std::num`, `ParseIntError`); generic arguments stay with the type.
pub(crate) fn split_type_name(full: &str) -> (Option<&str>, &str) {
    // A reference to an error names the error.
    let full = full.trim_start_matches('&');
    let head_end = full.find('<').unwrap_or(full.len());
    match full[..head_end].rfind("::") {
        Some(i) => (Some(&full[..i]), &full[i + 2..]),
        None => (None, full),
    }
}

pub(crate) fn write_error<W: Write>(
    out: &mut W,
    e: &ErrorRecord,
    policy: &Policy,
) -> io::Result<()> {
    let (module, type_name) = split_type_name(e.type_name);
    let culprit = format!("{} ({}:{})", e.site.module, e.site.file, e.site.line);
    let view = ErrorView {
        id: Hex128(e.id),
        timestamp: clock::epoch_micros(e.timestamp),
        trace_id: e.trace.as_ref().map(|t| Hex128(t.trace_id)),
        transaction_id: e.trace.as_ref().map(|t| Hex64(t.transaction_id)),
        parent_id: e.trace.as_ref().map(|t| Hex64(t.parent_id)),
        transaction: e.trace.as_ref().map(|t| ErrorTransactionView {
            name: Kw(&t.transaction_name),
            kind: Kw(&t.transaction_type),
            sampled: t.sampled,
        }),
        culprit: Kw(&culprit),
        exception: ExceptionView {
            message: Long {
                text: &e.message,
                limit: policy.long_field_max_length,
            },
            kind: Kw(type_name),
            module: module.map(Kw),
            handled: true,
            cause: e
                .causes
                .iter()
                .map(|m| Cause {
                    message: Long {
                        text: m,
                        limit: policy.long_field_max_length,
                    },
                })
                .collect(),
            stacktrace: [Frame {
                filename: e.site.file,
                lineno: e.site.line,
                colno: e.site.column,
                module: e.site.module,
                library_frame: false,
            }],
        },
        context: e.request.as_deref().map(|r| ErrorContextView {
            request: request_view(r, policy, policy.body_on_errors),
        }),
    };
    write_line(out, "error", &view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_split_into_module_and_type() {
        assert_eq!(
            split_type_name("std::num::error::ParseIntError"),
            (Some("std::num::error"), "ParseIntError")
        );
        assert_eq!(split_type_name("Plain"), (None, "Plain"));
        assert_eq!(split_type_name("&&a::E"), (Some("a"), "E"));
        assert_eq!(split_type_name("a::Wrap<b::C>"), (Some("a"), "Wrap<b::C>"));
    }
}
