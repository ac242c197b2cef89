//! The agent's own diagnostics: through the `log` facade (target `apm`) when the application
//! has a logger, on stderr otherwise; each kind of message at most once per interval, so a
//! server that is down for an hour produces a handful of lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::config::LogLevel;

/// The most verbose level logged (`log_level`), as a `log::Level` number; 0 is off.
static LEVEL: AtomicUsize = AtomicUsize::new(log::Level::Info as usize);

/// Applies `log_level` (live: central configuration may change it).
pub(crate) fn set_level(level: LogLevel) {
    let l = match level {
        LogLevel::Trace => log::Level::Trace as usize,
        LogLevel::Debug => log::Level::Debug as usize,
        LogLevel::Info => log::Level::Info as usize,
        LogLevel::Warning => log::Level::Warn as usize,
        LogLevel::Error | LogLevel::Critical => log::Level::Error as usize,
        LogLevel::Off => 0,
    };
    LEVEL.store(l, Relaxed);
}

/// Whether messages at `level` are logged.
pub(crate) fn enabled(level: log::Level) -> bool {
    level as usize <= LEVEL.load(Relaxed)
}

/// Time between two messages of the same kind: it doubles while the problem lasts (a server
/// down for an hour logs about seven lines), and starts over after a quiet period.
const FIRST_INTERVAL: Duration = Duration::from_secs(60);
const LONGEST_INTERVAL: Duration = Duration::from_secs(30 * 60);

struct Seen {
    last: Instant,
    interval: Duration,
    suppressed: u64,
}

static SEEN: Mutex<Option<HashMap<&'static str, Seen>>> = Mutex::new(None);

/// Logs `msg` at `level` unless a message of the same `kind` was logged within its interval;
/// the next one that passes says how many were suppressed.
pub(crate) fn report(level: log::Level, kind: &'static str, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let suppressed = {
        let mut seen = SEEN.lock();
        let seen = seen.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        match seen.get_mut(kind) {
            Some(s) if now.duration_since(s.last) < s.interval => {
                s.suppressed += 1;
                return;
            }
            Some(s) => {
                let quiet = now.duration_since(s.last) > s.interval * 2 && s.suppressed == 0;
                s.interval = if quiet {
                    FIRST_INTERVAL
                } else {
                    (s.interval * 2).min(LONGEST_INTERVAL)
                };
                s.last = now;
                std::mem::take(&mut s.suppressed)
            }
            None => {
                seen.insert(
                    kind,
                    Seen {
                        last: now,
                        interval: FIRST_INTERVAL,
                        suppressed: 0,
                    },
                );
                0
            }
        }
    };
    emit(level, msg, suppressed);
}

/// In a forked child (its `pthread_atfork` handler): the message history starts over, under a
/// lock no thread of the parent holds.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe { crate::util::after_fork::reset_mutex(&SEEN, None) };
}

/// Holds the history's lock until `release` says so (tests of a fork while it is held).
#[cfg(test)]
pub(crate) fn hold_history(
    held: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
) {
    let _held = SEEN.lock();
    let _ = held.send(());
    let _ = release.recv();
}

/// Logs `msg` unconditionally (one-off messages: configuration problems, start and stop).
pub(crate) fn once(level: log::Level, msg: std::fmt::Arguments<'_>) {
    if enabled(level) {
        emit(level, msg, 0);
    }
}

fn emit(level: log::Level, msg: std::fmt::Arguments<'_>, suppressed: u64) {
    let more = if suppressed > 0 {
        format!(" ({suppressed} similar messages suppressed)")
    } else {
        String::new()
    };
    // Without a logger `log`'s maximum level stays `Off`: fall back to stderr for warnings.
    if log::max_level() == log::LevelFilter::Off {
        if level <= log::Level::Warn {
            eprintln!("[apm {level}] {msg}{more}");
        }
    } else {
        log::log!(target: "apm", level, "{msg}{more}");
    }
}

macro_rules! warn_once {
    ($($t:tt)*) => { $crate::util::diag::once(::log::Level::Warn, format_args!($($t)*)) };
}
macro_rules! warn_limited {
    ($kind:expr, $($t:tt)*) => { $crate::util::diag::report(::log::Level::Warn, $kind, format_args!($($t)*)) };
}
pub(crate) use {warn_limited, warn_once};
