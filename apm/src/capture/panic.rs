//! The panic hook: every panic, on any thread or task, becomes an unhandled error event linked
//! to what was current where it happened; the hook installed before it still runs.

use std::cell::Cell;
use std::panic::{self, PanicHookInfo};
use std::sync::mpsc;
use std::sync::Once;
use std::time::Duration;

use super::errors;
use crate::queue::channel::Command;
use crate::queue::tracer;

/// How long a panic that ends the process waits for its event to reach the APM Server.
const FLUSH_BEFORE_EXIT: Duration = Duration::from_secs(2);

static INSTALL: Once = Once::new();

thread_local! {
    /// Set while this thread runs the hook: a panic inside it is left to the previous hook.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook once per process, in front of the hook in place now. `false` when called
/// from a panicking thread (the standard library forbids changing the hook there).
pub(crate) fn install() -> bool {
    if std::thread::panicking() {
        return false;
    }
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            record(info);
            previous(info);
        }));
    });
    true
}

fn record(info: &PanicHookInfo<'_>) {
    // `try_with`: a panic in a thread-local's destructor finds this thread-local gone, and a
    // panic in the hook would abort the process.
    if !tracer::is_active() || IN_HOOK.try_with(|f| f.replace(true)).unwrap_or(true) {
        return;
    }
    let payload = info.payload();
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    };
    let (file, line) = info
        .location()
        .map_or((String::new(), 0), |l| (l.file().to_owned(), l.line()));
    errors::capture_panic(message, file, line);
    if ends_process() {
        flush(FLUSH_BEFORE_EXIT);
    }
    let _ = IN_HOOK.try_with(|f| f.set(false));
}

/// Whether this panic ends the process: the binary aborts on panic, or the main thread
/// unwinds (out of `main`). Other threads and tasks go on; their events are only queued.
fn ends_process() -> bool {
    cfg!(panic = "abort") || std::thread::current().name() == Some("main")
}

/// Sends what is queued, waiting at most `timeout` for the APM Server's answer.
fn flush(timeout: Duration) {
    let Some(t) = tracer::get() else {
        return;
    };
    let (ack_tx, ack_rx) = mpsc::channel();
    if t.command(Command::Flush(ack_tx)) {
        let _ = ack_rx.recv_timeout(timeout);
    }
}
