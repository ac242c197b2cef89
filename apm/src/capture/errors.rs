//! `capture_error!`, `capture_message!` and panics: an error event with its type, message,
//! `source()` chain, capture site and stack (raw instruction pointers, resolved on the transport
//! thread), linked to the current trace when there is one.

use std::cell::RefCell;
use std::error::Error;
use std::sync::atomic::Ordering::Relaxed;

use super::raw_stack;
use super::stack;
use crate::queue::{staging, tracer};
use crate::types::meta::Site;
use crate::types::record::{
    Cause, ErrorCode, ErrorContext, ErrorOrigin, ErrorRecord, ErrorTrace, Event,
};
use crate::types::web::Request;
use crate::types::{clock, ids};
use crate::util::wildcard::WildcardList;

/// Longest `source()` chain recorded (a cycle-safe bound).
const MAX_CAUSES: usize = 16;

#[inline(never)]
pub(crate) fn capture(err: &dyn Error, type_name: &'static str, site: &'static Site) {
    if !tracer::is_active() || ignored(type_name) {
        return;
    }
    let timestamp = clock::now();
    let stack = raw_stack::capture(raw_stack::CAPTURE_MARGIN, false);
    let (trace, request, context) = current_trace(true);
    let mut causes = Vec::new();
    let mut source = err.source();
    while let Some(e) = source {
        if causes.len() == MAX_CAUSES {
            break;
        }
        causes.push(cause(e));
        source = e.source();
    }
    staging::push(Event::Error(Box::new(ErrorRecord {
        id: ids::next_u128(),
        timestamp,
        trace,
        type_name,
        message: err.to_string(),
        causes,
        origin: ErrorOrigin::Captured(site),
        stack,
        request,
        context,
    })));
}

thread_local! {
    /// `ignore_exceptions` compiled, with the configuration generation it came from: each
    /// thread compiles it once per change, and reads no shared state otherwise.
    static IGNORED: RefCell<Option<(u64, WildcardList)>> = const { RefCell::new(None) };
}

/// Whether `ignore_exceptions` names this error type (checked before any formatting).
fn ignored(type_name: &str) -> bool {
    let Some(t) = tracer::get() else {
        return false;
    };
    IGNORED
        .try_with(|cell| {
            let mut cell = cell.try_borrow_mut().ok()?;
            let generation = t.generation();
            if cell.as_ref().map(|(g, _)| *g) != Some(generation) {
                let list = WildcardList::parse(&t.effective().ignore_exceptions);
                *cell = Some((generation, list));
            }
            cell.as_ref().map(|(_, list)| list.any_match(type_name))
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A cause, with its type when it is one of the standard library's errors (a `dyn Error`
/// names no type) and, for I/O errors, the OS error number or the error's kind as its code.
fn cause(e: &(dyn Error + 'static)) -> Cause {
    macro_rules! known {
        ($($ty:ty),*) => {
            $(if e.is::<$ty>() {
                Some(::core::any::type_name::<$ty>())
            } else)* {
                None
            }
        };
    }
    let io = e.downcast_ref::<std::io::Error>();
    Cause {
        message: e.to_string(),
        type_name: known!(
            std::io::Error,
            std::num::ParseIntError,
            std::num::ParseFloatError,
            std::num::TryFromIntError,
            std::str::Utf8Error,
            std::string::FromUtf8Error,
            std::fmt::Error
        ),
        code: io.map(|io| match io.raw_os_error() {
            Some(n) => ErrorCode::Os(n),
            None => ErrorCode::Kind(format!("{:?}", io.kind())),
        }),
    }
}

/// `capture_message!`: a log record sent as an error event.
#[inline(never)]
pub(crate) fn capture_message(
    message: String,
    level: &'static str,
    param_message: &'static str,
    site: &'static Site,
) {
    push_log_event(
        message,
        ErrorOrigin::Message {
            site,
            level,
            param_message,
        },
        raw_stack::CAPTURE_MARGIN,
    );
}

/// A log event (a message or a log record) linked to what is current here, with the stack
/// above the agent's `margin` frames.
fn push_log_event(message: String, origin: ErrorOrigin, margin: usize) {
    if !tracer::is_active() {
        return;
    }
    let timestamp = clock::now();
    let stack = raw_stack::capture(margin, false);
    let (trace, request, context) = current_trace(true);
    staging::push(Event::Error(Box::new(ErrorRecord {
        id: ids::next_u128(),
        timestamp,
        trace,
        type_name: "",
        message,
        causes: Vec::new(),
        origin,
        stack,
        request,
        context,
    })));
}

/// A record of the `log` crate (`apm::log`), sent as an error event.
#[cfg(any(feature = "log", feature = "tracing"))]
#[inline(never)]
pub(crate) fn capture_log(
    level: &'static str,
    message: String,
    logger_name: String,
    param_message: Option<String>,
    file: Option<String>,
    line: Option<u32>,
) {
    push_log_event(
        message,
        ErrorOrigin::LogRecord {
            level,
            logger_name,
            param_message,
            file,
            line,
        },
        raw_stack::LOG_MARGIN,
    );
}

/// A panic, from the panic hook: built without waiting for any lock the panicking thread may
/// hold, and handed to the transport thread at once (the thread may be about to end).
pub(crate) fn capture_panic(message: String, file: String, line: u32) {
    if !tracer::is_active() || ignored("panic") {
        return;
    }
    let timestamp = clock::now();
    let stack = raw_stack::capture(raw_stack::PANIC_MARGIN, true);
    let (trace, request, context) = current_trace(false);
    staging::send(vec![Event::Error(Box::new(ErrorRecord {
        id: ids::next_u128(),
        timestamp,
        trace,
        type_name: "panic",
        message,
        causes: Vec::new(),
        origin: ErrorOrigin::Panic { file, line },
        stack,
        request,
        context,
    }))]);
}

/// The trace, transaction and span current here, the request being served and the context
/// the application gave the transaction (labels, user, custom); marks the
/// span or transaction as failed (spec: `outcome.feature`). `wait`: whether the transaction's
/// lock may be waited for (not in the panic hook, whose thread may hold it).
fn current_trace(
    wait: bool,
) -> (
    Option<ErrorTrace>,
    Option<Box<Request>>,
    Option<Box<ErrorContext>>,
) {
    let mut request = None;
    let mut context = None;
    let trace = stack::with_current(|txn, parent| {
        if parent == txn.id {
            txn.errored.store(true, Relaxed);
        }
        let st = if wait {
            Some(txn.state.lock())
        } else {
            txn.state.try_lock()
        };
        if let (true, Some(st)) = (txn.sampled, &st) {
            request = st.request.clone();
            if !st.labels.is_empty() || st.user.is_some() || !st.custom.is_empty() {
                context = Some(Box::new(ErrorContext {
                    labels: st.labels.clone(),
                    user: st.user.as_deref().cloned(),
                    custom: st.custom.clone(),
                }));
            }
        }
        ErrorTrace {
            trace_id: txn.trace_id,
            transaction_id: txn.id,
            parent_id: parent,
            transaction_name: st
                .as_ref()
                .map_or_else(String::new, |st| st.name.name().to_owned()),
            transaction_type: st
                .as_ref()
                .map_or_else(String::new, |st| st.name.kind().to_owned()),
            sampled: txn.sampled,
        }
    });
    stack::error_captured_here();
    (trace, request, context)
}
