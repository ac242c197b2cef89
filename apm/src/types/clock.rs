//! Time. On the application thread a timestamp is one read of a monotonic clock: the TSC where
//! `fastant` calibrated it (x86 Linux), else std's `Instant` (`fastant`'s own fallback is the
//! wall clock, which steps when it is set). Durations are differences of those reads and
//! nothing else. Wall-clock microseconds are worked out on the transport thread against an
//! anchor, a wall-clock reading and a tick taken together, which the transport thread takes
//! again every [`REANCHOR_EVERY`]: the TSC's calibrated rate drifts from the wall clock (up to
//! about a second a day), and the wall clock itself is slewed or set, so timestamps follow it.

use std::sync::atomic::{fence, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A reading of the agent's monotonic clock.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(fastant::Instant);

impl Tick {
    pub(crate) const ZERO: Tick = Tick(fastant::Instant::ZERO);

    /// The time from `earlier` to `self`; zero when `earlier` is later.
    #[inline]
    pub(crate) fn saturating_duration_since(&self, earlier: Tick) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

impl std::ops::Add<Duration> for Tick {
    type Output = Tick;
    fn add(self, d: Duration) -> Tick {
        Tick(self.0 + d)
    }
}

#[inline]
pub(crate) fn now() -> Tick {
    if fastant::is_tsc_available() {
        Tick(fastant::Instant::now())
    } else {
        monotonic_now()
    }
}

/// std's monotonic clock as a tick: the time since the first such reading, added to tick zero
/// (without a TSC, `fastant` counts a tick per nanosecond).
#[inline(never)]
fn monotonic_now() -> Tick {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    Tick::ZERO + base.elapsed()
}

/// How often the transport thread takes the anchor again: a drift of a second a day moves
/// timestamps by at most about 0.1 ms between two anchors.
pub(crate) const REANCHOR_EVERY: Duration = Duration::from_secs(10);

/// A wall-clock reading and the tick taken with it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Anchor {
    wall_ns: u64,
    at: Tick,
}

impl Anchor {
    /// Nanoseconds since the Unix epoch of `t`.
    fn unix_nanos(&self, t: Tick) -> u64 {
        if t >= self.at {
            self.wall_ns
                .saturating_add(nanos_between(self.at, t))
        } else {
            self.wall_ns.saturating_sub(nanos_between(t, self.at))
        }
    }
}

/// The anchor in force: written rarely (at start, then every [`REANCHOR_EVERY`]), read for
/// every event encoded, with loads only (a sequence lock: a reader that saw a write under
/// way reads again). The tick is kept as nanoseconds since tick zero.
struct AnchorCell {
    seq: AtomicU64,
    wall_ns: AtomicU64,
    at_ns: AtomicU64,
}

impl AnchorCell {
    const fn new() -> AnchorCell {
        AnchorCell {
            seq: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
            at_ns: AtomicU64::new(0),
        }
    }

    /// The anchor in force; `None` before the first.
    fn get(&self) -> Option<Anchor> {
        loop {
            let before = self.seq.load(Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let wall_ns = self.wall_ns.load(Relaxed);
            let at_ns = self.at_ns.load(Relaxed);
            fence(Acquire);
            if self.seq.load(Relaxed) == before {
                return Some(Anchor {
                    wall_ns,
                    at: Tick::ZERO + Duration::from_nanos(at_ns),
                });
            }
        }
    }

    /// Puts `a` in force, unless another thread is doing the same right now.
    fn set(&self, a: Anchor) {
        let before = self.seq.load(Relaxed);
        if before % 2 == 1
            || self
                .seq
                .compare_exchange(before, before + 1, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        fence(Release);
        self.wall_ns.store(a.wall_ns, Relaxed);
        self.at_ns.store(nanos_between(Tick::ZERO, a.at), Relaxed);
        self.seq.store(before + 2, Release);
    }

    /// Takes the anchor again from `wall_ns` and `at` when the one in force is older than
    /// `every` (or there is none); `true` when it did.
    fn renew(&self, every: Duration, wall_ns: impl FnOnce() -> u64, at: Tick) -> bool {
        if self
            .get()
            .is_some_and(|a| at.saturating_duration_since(a.at) < every)
        {
            return false;
        }
        self.set(Anchor {
            wall_ns: wall_ns(),
            at,
        });
        true
    }
}

static ANCHOR: AnchorCell = AnchorCell::new();

fn wall_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn anchor_now() -> Anchor {
    let at = now();
    Anchor {
        wall_ns: wall_now_ns(),
        at,
    }
}

/// Microseconds since the Unix epoch of a tick.
pub(crate) fn epoch_micros(t: Tick) -> u64 {
    let a = ANCHOR.get().unwrap_or_else(|| {
        init();
        ANCHOR.get().unwrap_or_else(anchor_now)
    });
    a.unix_nanos(t) / 1000
}

/// Nanoseconds between two ticks (zero when `end` is before `start`).
pub(crate) fn nanos_between(start: Tick, end: Tick) -> u64 {
    u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// Takes the anchor now (when the agent starts, off the hot path).
pub(crate) fn init() {
    ANCHOR.set(anchor_now());
}

/// Takes the anchor again if it is older than [`REANCHOR_EVERY`] (the transport thread, once
/// per round, before it encodes: the events of a round share one anchor).
pub(crate) fn reanchor_if_due() {
    ANCHOR.renew(REANCHOR_EVERY, wall_now_ns, now());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_drifted_anchor_is_corrected_when_taken_again_and_durations_do_not_move() {
        let cell = AnchorCell::new();
        let start = now();
        // An anchor taken long ago, by a TSC whose rate has since drifted 2 s from the wall
        // clock: its timestamps run 2 s behind.
        let real = wall_now_ns();
        cell.set(Anchor {
            wall_ns: real - 2 * SECOND,
            at: start,
        });
        // (Within a microsecond: the anchor's tick is kept in nanoseconds, so a TSC's tick comes
        // back rounded to a cycle.)
        let late = cell.get().map_or(0, |a| a.unix_nanos(start));
        assert!(late.abs_diff(real - 2 * SECOND) < 1_000, "{late} {real}");
        // Not due yet: kept.
        assert!(!cell.renew(Duration::from_secs(10), || unreachable!(), start));
        // Due: the wall clock is read again with a tick, and timestamps follow it.
        let end = start + Duration::from_secs(10);
        let wall_then = real + 10 * SECOND;
        assert!(cell.renew(Duration::from_secs(10), || wall_then, end));
        let a = cell.get().expect("anchor");
        assert!(a.unix_nanos(end).abs_diff(wall_then) < 1_000);
        assert!(a.unix_nanos(start).abs_diff(real) < 1_000, "{}", a.unix_nanos(start));
        // A duration is the ticks' difference whatever the anchor: across the re-anchoring
        // it is still 10 s, and later ticks never get earlier timestamps.
        assert_eq!(nanos_between(start, end), 10 * SECOND);
        let mut last = 0;
        for ms in 0..2_000 {
            let ts = a.unix_nanos(start + Duration::from_millis(ms * 10));
            assert!(ts >= last);
            last = ts;
        }
    }

    #[test]
    fn timestamps_follow_the_wall_clock() {
        init();
        let t = now();
        let wall = wall_now_ns() / 1000;
        assert!(epoch_micros(t).abs_diff(wall) < 100_000);
        reanchor_if_due();
        assert!(epoch_micros(t).abs_diff(wall) < 100_000);
    }

    #[test]
    fn the_fallback_clock_is_monotonic_and_measures_what_std_measures() {
        let mut last = monotonic_now();
        for _ in 0..100_000 {
            let t = monotonic_now();
            assert!(t >= last);
            last = t;
        }
        let (a, std_a) = (monotonic_now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (std_b, b) = (std::time::Instant::now(), monotonic_now());
        let ours = nanos_between(a, b);
        let theirs = u64::try_from((std_b - std_a).as_nanos()).unwrap_or(0);
        // Ours encloses std's (give or take a rounded nanosecond: with a TSC, ticks are
        // cycles), by no more than the reads between them.
        assert!(ours + 1_000 >= theirs && ours < theirs + 5_000_000, "{ours} {theirs}");
    }
}
