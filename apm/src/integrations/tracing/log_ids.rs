//! Log correlation for `tracing_subscriber::fmt`: a [`FormatEvent`] wrapper that adds the
//! current `trace.id`, `transaction.id` and `span.id` (ECS field names) to every line another
//! formatter writes, so that Kibana links the log lines to their traces.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::CurrentIds;

/// Wraps a `tracing_subscriber::fmt` event formatter (the default one, `.json()`, `.compact()`,
/// your own) and adds the apm ids current where the event happened to its lines: the entered
/// tracing span is apm's current span when [`ApmLayer`](super::ApmLayer) is installed, and an
/// `#[apm::span]` or transaction is current as always. Lines outside any transaction are left
/// as they are.
///
/// - A JSON line (`{…}`) gets `"trace.id"`, `"transaction.id"` and `"span.id"` as fields of its
///   object.
/// - Any other line ends with ` trace.id=… transaction.id=… span.id=…`.
/// - When the writer takes ANSI colours (a terminal), the ids lead the line instead, so that
///   the formatter keeps its colours: `tracing_subscriber` gives colours only to the writer it
///   made itself, and putting the ids at the end means formatting the line elsewhere first.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(apm::tracing::ApmLayer::new())
///     .with(
///         tracing_subscriber::fmt::layer()
///             .event_format(apm::tracing::WithTraceIds::new(tracing_subscriber::fmt::format())),
///     )
///     .init();
/// ```
///
/// The line is formatted into a buffer of the thread's, reused from line to line: nothing is
/// allocated per line once it has grown to the longest line.
#[derive(Debug, Clone, Default)]
pub struct WithTraceIds<F> {
    inner: F,
}

impl<F> WithTraceIds<F> {
    /// Adds the ids to the lines `inner` formats.
    pub fn new(inner: F) -> Self {
        WithTraceIds { inner }
    }
}

thread_local! {
    /// The line being formatted (a formatter may log, so it is taken, not borrowed).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = crate::current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if writer.has_ansi_escapes() {
            write!(writer, "{ids} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = LINE.with(|l| std::mem::take(&mut *l.borrow_mut()));
        line.clear();
        let formatted = self.inner.format_event(ctx, Writer::new(&mut line), event);
        let written = formatted.and_then(|()| {
            add_ids(&mut line, &ids);
            writer.write_str(&line)
        });
        LINE.with(|l| *l.borrow_mut() = line);
        written
    }
}

/// Adds the ids to a formatted line: as fields of a JSON object, else at the end of the text
/// (before its newline).
fn add_ids(line: &mut String, ids: &CurrentIds) {
    let body_end = line.trim_end_matches(['\n', '\r']).len();
    let newline = line.split_off(body_end);
    if line.starts_with('{') && line.ends_with('}') {
        line.pop();
        let empty = line.trim_end() == "{";
        let _ = write!(
            line,
            "{}\"trace.id\":\"{:032x}\",\"transaction.id\":\"{:016x}\"",
            if empty { "" } else { "," },
            ids.raw_trace_id(),
            ids.raw_transaction_id()
        );
        if let Some(span) = ids.raw_span_id() {
            let _ = write!(line, ",\"span.id\":\"{span:016x}\"");
        }
        line.push('}');
    } else {
        let _ = write!(line, " {ids}");
    }
    line.push_str(&newline);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(span: Option<u64>) -> CurrentIds {
        CurrentIds::new(0xabc, 0x12, span)
    }

    #[test]
    fn text_lines_end_with_the_ids_before_their_newline() {
        let mut line = "INFO shop: paid\n".to_owned();
        add_ids(&mut line, &ids(Some(0x34)));
        assert_eq!(
            line,
            "INFO shop: paid trace.id=00000000000000000000000000000abc \
             transaction.id=0000000000000012 span.id=0000000000000034\n"
        );
    }

    #[test]
    fn json_lines_get_the_ids_as_fields() {
        let mut line = "{\"message\":\"paid\"}\n".to_owned();
        add_ids(&mut line, &ids(None));
        assert_eq!(
            line,
            "{\"message\":\"paid\",\"trace.id\":\"00000000000000000000000000000abc\",\
             \"transaction.id\":\"0000000000000012\"}\n"
        );
        let mut empty = "{}".to_owned();
        add_ids(&mut empty, &ids(Some(1)));
        assert_eq!(
            empty,
            "{\"trace.id\":\"00000000000000000000000000000abc\",\
             \"transaction.id\":\"0000000000000012\",\"span.id\":\"0000000000000001\"}"
        );
    }
}
