//! Time: one TSC read per timestamp on the application thread (`fastant`, which falls back to
//! the monotonic clock where the TSC is unusable); conversion to wall-clock microseconds
//! happens on the transport thread against an anchor taken when the agent starts.

use std::sync::OnceLock;

pub(crate) use fastant::Instant as Tick;

#[inline]
pub(crate) fn now() -> Tick {
    Tick::now()
}

static ANCHOR: OnceLock<fastant::Anchor> = OnceLock::new();

/// Microseconds since the Unix epoch of a tick.
pub(crate) fn epoch_micros(t: Tick) -> u64 {
    t.as_unix_nanos(ANCHOR.get_or_init(fastant::Anchor::new)) / 1000
}

/// Nanoseconds between two ticks (zero when `end` is before `start`).
pub(crate) fn nanos_between(start: Tick, end: Tick) -> u64 {
    end.saturating_duration_since(start).as_nanos() as u64
}

/// Fixes the anchor now (called when the agent starts, off the hot path).
pub(crate) fn init() {
    ANCHOR.get_or_init(fastant::Anchor::new);
}
