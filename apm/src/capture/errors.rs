//! `capture_error!`, `capture_message!` and panics: an error event with its type, message,
//! `source()` chain, capture site and stack (raw instruction pointers, resolved on the transport
//! thread), linked to the current trace when there is one.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::error::Error;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

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
pub(crate) fn capture(
    err: &dyn Error,
    type_name: &'static str,
    backtrace: Option<&Backtrace>,
    site: &'static Site,
) {
    if !tracer::is_active() || ignored(type_name) {
        return;
    }
    let timestamp = clock::now();
    let stack = match backtrace.filter(|b| b.status() == BacktraceStatus::Captured) {
        Some(backtrace) => raw_stack::of_backtrace(backtrace),
        None => raw_stack::capture(raw_stack::CAPTURE_MARGIN, false),
    };
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
    let code = code_of(as_static(err)).or_else(|| causes.iter().find_map(|c| c.code.clone()));
    staging::push(Event::Error(Box::new(ErrorRecord {
        id: ids::next_u128(),
        timestamp,
        trace,
        type_name,
        message: err.to_string(),
        code,
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
        code: code_of(e),
    }
}

/// Reads the code of an error whose type an integration knows (an HTTP status).
pub(crate) type CodeReader = fn(&(dyn Error + 'static)) -> Option<ErrorCode>;

/// The integrations' [`CodeReader`]s, given once by `init`.
static CODE_READERS: OnceLock<&'static [CodeReader]> = OnceLock::new();

/// Sets the integrations' code readers (the first call wins: they do not change).
#[cfg(any(feature = "reqwest", feature = "actix-web"))]
pub(crate) fn read_codes_with(readers: &'static [CodeReader]) {
    let _ = CODE_READERS.set(readers);
}

/// `exception.code` of one error: an I/O error's OS error number or kind, else what an
/// integration reads from it.
fn code_of(e: &(dyn Error + 'static)) -> Option<ErrorCode> {
    if let Some(io) = downcast::<std::io::Error>(e) {
        return Some(match io.raw_os_error() {
            Some(n) => ErrorCode::Os(n),
            None => ErrorCode::Kind(format!("{:?}", io.kind())),
        });
    }
    CODE_READERS
        .get()
        .and_then(|readers| readers.iter().find_map(|read| read(e)))
}

/// `e` as a `T` (a type without lifetime parameters), or as a reference to one
/// (`capture_error!(&e)` captures a `&T`).
pub(crate) fn downcast<'r, T: Error + 'static>(e: &'r (dyn Error + 'static)) -> Option<&'r T> {
    e.downcast_ref::<T>()
        .or_else(|| e.downcast_ref::<&'static T>().map(|t| &**t))
}

/// The captured error as a `'static` trait object, so that [`code_of`] can ask its type, like
/// its causes' (`source()` gives those as `'static` already).
fn as_static<'r>(err: &'r (dyn Error + '_)) -> &'r (dyn Error + 'static) {
    // SAFETY: only the lifetime bound of the trait object changes; the reference keeps its
    // own lifetime `'r`, so nothing outlives the error. The result only goes to `code_of`,
    // which reads it through [`downcast`]: a `TypeId` ignores lifetimes, so a match means the
    // value is exactly a `T` (which has no lifetime) or a reference to one, which lives at
    // least as long as the borrow `'r` of the value holding it, and is handed out for `'r`
    // only.
    unsafe { std::mem::transmute::<&'r (dyn Error + '_), &'r (dyn Error + 'static)>(err) }
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
        code: None,
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
        code: None,
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
