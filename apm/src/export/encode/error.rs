//! Error lines: the exception (or log record) with its cause chain and stack trace, the trace and
//! transaction it belongs to, and the request being served.

use std::io::{self, Write};

use serde::Serialize;

use super::fields::LabelsView;
use super::fields::{write_line, Hex128, Hex64, Kw, Long};
use super::frame::FrameView;
use super::request::{request_view, Policy, RequestView, UserView};
use crate::export::symbolize;
use crate::types::clock;
use crate::types::record::{Cause, ErrorCode, ErrorOrigin, ErrorRecord};

#[derive(Serialize)]
struct ErrorTransactionView<'a> {
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    sampled: bool,
}

#[derive(Serialize)]
struct CauseView<'a> {
    message: Long<'a>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<CodeView<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum CodeView<'a> {
    Os(i32),
    Kind(Kw<'a>),
    Status(StatusText),
}

impl<'a> CodeView<'a> {
    fn of(code: &'a ErrorCode) -> Self {
        match code {
            ErrorCode::Os(n) => CodeView::Os(*n),
            ErrorCode::Kind(k) => CodeView::Kind(Kw(k)),
            ErrorCode::Status(s) => CodeView::Status(StatusText(*s)),
        }
    }
}

/// An HTTP status written as text (`"404"`), as the other agents send it.
struct StatusText(u16);

impl Serialize for StatusText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'a> CauseView<'a> {
    fn of(c: &'a Cause, limit: usize) -> Self {
        let (module, kind) = match c.type_name.map(split_type_name) {
            Some((module, kind)) => (module, Some(kind)),
            None => (None, None),
        };
        CauseView {
            message: Long {
                text: &c.message,
                limit,
            },
            kind: kind.map(Kw),
            module: module.map(Kw),
            code: c.code.as_ref().map(CodeView::of),
        }
    }
}

#[derive(Serialize)]
struct ExceptionView<'a> {
    message: Long<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<Kw<'a>>,
    handled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<CodeView<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cause: Vec<CauseView<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stacktrace: Vec<FrameView<'a>>,
}

#[derive(Serialize)]
struct LogView<'a> {
    message: Long<'a>,
    level: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    param_message: Option<Kw<'a>>,
    logger_name: Kw<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stacktrace: Vec<FrameView<'a>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<ExceptionView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<LogView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ErrorContextView<'a>>,
}

#[derive(Serialize)]
struct ErrorContextView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<LabelsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<LabelsView<'a>>,
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
    let site = match &e.origin {
        ErrorOrigin::Captured(site) | ErrorOrigin::Message { site, .. } => {
            symbolize::learn_app_crate(site.module);
            Some(*site)
        }
        ErrorOrigin::Panic { .. } => None,
        #[cfg(any(feature = "log", feature = "tracing"))]
        ErrorOrigin::LogRecord { .. } => None,
    };
    let frames = e.stack.as_ref().map(symbolize::frames);
    let mut stacktrace: Vec<FrameView<'_>> =
        frames.iter().flatten().map(FrameView::resolved).collect();
    if stacktrace.is_empty() && e.stack.is_some() {
        // Nothing resolved (no symbols in the binary): the capture site at least.
        stacktrace.extend(site.map(FrameView::site));
    }
    #[cfg(any(feature = "log", feature = "tracing"))]
    if let ErrorOrigin::LogRecord {
        file: Some(file),
        line,
        ..
    } = &e.origin
    {
        if stacktrace.is_empty() {
            // The record's own file and line, when no stack was taken or resolved.
            stacktrace.push(FrameView::file_line(file, *line));
        }
    }
    let culprit = match (frames.as_deref().and_then(symbolize::culprit), &e.origin) {
        (Some(function), _) => function.to_owned(),
        (None, ErrorOrigin::Panic { file, line, .. }) => format!("{file}:{line}"),
        (None, ErrorOrigin::Captured(site) | ErrorOrigin::Message { site, .. }) => {
            format!("{} ({}:{})", site.module, site.file, site.line)
        }
        #[cfg(any(feature = "log", feature = "tracing"))]
        (None, ErrorOrigin::LogRecord { logger_name, .. }) => logger_name.clone(),
    };
    let (exception, log) = match &e.origin {
        ErrorOrigin::Message {
            site,
            level,
            param_message,
        } => (
            None,
            Some(LogView {
                message: Long {
                    text: &e.message,
                    limit: policy.long_field_max_length,
                },
                level: Kw(level),
                param_message: Some(Kw(param_message)),
                logger_name: Kw(site.module),
                stacktrace,
            }),
        ),
        #[cfg(any(feature = "log", feature = "tracing"))]
        ErrorOrigin::LogRecord {
            level,
            logger_name,
            param_message,
            ..
        } => (
            None,
            Some(LogView {
                message: Long {
                    text: &e.message,
                    limit: policy.long_field_max_length,
                },
                level: Kw(level),
                param_message: param_message.as_deref().map(Kw),
                logger_name: Kw(logger_name),
                stacktrace,
            }),
        ),
        ErrorOrigin::Captured(_) | ErrorOrigin::Panic { .. } => {
            let (module, type_name) = split_type_name(e.type_name);
            (
                Some(ExceptionView {
                    message: Long {
                        text: &e.message,
                        limit: policy.long_field_max_length,
                    },
                    kind: Kw(type_name),
                    module: module.map(Kw),
                    handled: matches!(e.origin, ErrorOrigin::Captured(_)),
                    code: e.code.as_ref().map(CodeView::of),
                    cause: e
                        .causes
                        .iter()
                        .map(|c| CauseView::of(c, policy.long_field_max_length))
                        .collect(),
                    stacktrace,
                }),
                None,
            )
        }
    };
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
        exception,
        log,
        context: (e.request.is_some() || e.context.is_some()).then(|| {
            let app = e.context.as_deref();
            ErrorContextView {
                request: e
                    .request
                    .as_deref()
                    .map(|r| request_view(r, policy, policy.body_on_errors)),
                tags: app
                    .filter(|c| !c.labels.is_empty())
                    .map(|c| LabelsView(&c.labels)),
                user: app.and_then(|c| c.user.as_ref()).map(UserView::of),
                custom: app
                    .filter(|c| !c.custom.is_empty())
                    .map(|c| LabelsView(&c.custom)),
            }
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
