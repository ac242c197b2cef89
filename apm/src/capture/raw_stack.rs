//! The stack of the current thread as raw instruction pointers: what the application thread
//! pays for a stack trace. Symbols are looked up later, on the transport thread
//! (`export/symbolize.rs`).

use crate::queue::tracer;
use crate::types::clock::{self, Tick};
use crate::types::raw_stack::RawStack;

/// Frames kept at most, whatever `stack_trace_limit` says (-1 included): deep recursion must
/// not make an error event without bound.
pub(crate) const MAX_FRAMES: usize = 512;
/// Frames taken beyond the limit for those removed later: the agent's own (`capture_error!`).
pub(crate) const CAPTURE_MARGIN: usize = 16;
/// The same for log records, under which the `log` crate (or `tracing`'s dispatch through
/// its layers) adds its frames.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) const LOG_MARGIN: usize = 40;
/// The same for a slow span's end, under which the span's guard and the context stack add
/// theirs.
const SPAN_MARGIN: usize = 16;
/// The same for the panic hook, under which the panic machinery adds its frames.
pub(crate) const PANIC_MARGIN: usize = 48;

/// The current stack, `margin` frames beyond `stack_trace_limit`; `None` when the limit is 0.
#[inline(never)]
pub(crate) fn capture(margin: usize, from_panic: bool) -> Option<RawStack> {
    let limit = tracer::get()?.live.stack_trace_limit();
    if limit == Some(0) {
        return None;
    }
    let cap = limit.map_or(MAX_FRAMES, |n| n.min(MAX_FRAMES)) + margin;
    let mut ips = Vec::with_capacity(cap);
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if super::unwind::walk(&mut ips).is_none() {
        ips.clear();
        walk_slowly(&mut ips, cap);
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    walk_slowly(&mut ips, cap);
    Some(RawStack {
        ips,
        limit,
        from_panic,
        resolved: None,
    })
}

/// The frames of a backtrace an error carries, as text (`std` resolves its symbols the first
/// time it is written; the transport thread parses the text); `None` when the limit is 0.
#[cold]
#[inline(never)]
pub(crate) fn of_backtrace(backtrace: &std::backtrace::Backtrace) -> Option<RawStack> {
    let limit = tracer::get()?.live.stack_trace_limit();
    if limit == Some(0) {
        return None;
    }
    Some(RawStack {
        ips: Vec::new(),
        limit,
        from_panic: false,
        resolved: Some(format!("{backtrace:?}").into_boxed_str()),
    })
}

/// Prepares the stack walk of the application threads (on x86_64 Linux, the unwind tables of
/// the modules loaded now).
pub(crate) fn prime() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    super::unwind::prime();
}

/// The current stack through `backtrace` (the system's unwinder), `cap` frames at most.
#[inline(never)]
fn walk_slowly(ips: &mut Vec<usize>, cap: usize) {
    let mut push = |frame: &backtrace::Frame| {
        ips.push(frame.ip() as usize);
        ips.len() < cap
    };
    // Unsynchronised on unix: the unwinder there is thread-safe, and the crate's lock (meant
    // for Windows' dbghelp) is held by the transport thread while it builds its symbol cache,
    // which can take long the first time; the application must not wait for it.
    #[cfg(all(unix, not(miri)))]
    // SAFETY: no other use of this crate's unsynchronised functions runs on this thread at the
    // same time, and unwinding the current stack on unix does not need the crate's lock.
    unsafe {
        backtrace::trace_unsynchronized(&mut push)
    };
    #[cfg(not(all(unix, not(miri))))]
    backtrace::trace(&mut push);
}

/// The stack where a span that ran from `start` to `end` ends, if it lasted
/// `span_stack_trace_min_duration` or longer: where the time went. One atomic load and a
/// comparison for the spans that did not.
#[inline]
pub(crate) fn of_slow_span(start: Tick, end: Tick) -> Option<RawStack> {
    let min = tracer::get()?.live.span_stack_trace_min_ns();
    if min == u64::MAX || clock::nanos_between(start, end) < min {
        return None;
    }
    capture_slow_span()
}

#[cold]
#[inline(never)]
fn capture_slow_span() -> Option<RawStack> {
    capture(SPAN_MARGIN, false)
}
