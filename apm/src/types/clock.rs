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

/// A reading of the agent's monotonic clock: TSC cycles since `fastant`'s anchor, or, without
/// a calibrated TSC, nanoseconds since the first reading.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(u64);

// `fastant::Instant` is a `#[repr(transparent)]` cycle count: read as such, a difference of two
// readings converts to nanoseconds with one integer multiplication (its own conversions go
// through `f64` and `Duration`, about 100 instructions each, several per event encoded).
const _: () = assert!(std::mem::size_of::<fastant::Instant>() == std::mem::size_of::<u64>());

impl Tick {
    pub(crate) const ZERO: Tick = Tick(0);

    /// The time from `earlier` to `self`; zero when `earlier` is later.
    #[inline]
    pub(crate) fn saturating_duration_since(&self, earlier: Tick) -> Duration {
        Duration::from_nanos(nanos_between(earlier, *self))
    }
}

// Ticks a given time apart, for tests (the agent itself only subtracts ticks).
#[cfg(test)]
impl std::ops::Add<Duration> for Tick {
    type Output = Tick;
    fn add(self, d: Duration) -> Tick {
        let nanos = u128::from(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let ticks = (nanos << SCALE_SHIFT) / u128::from(nanos_per_tick_scaled());
        Tick(
            self.0
                .saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX)),
        )
    }
}

#[inline]
pub(crate) fn now() -> Tick {
    if fastant::is_tsc_available() {
        Tick(cycles(fastant::Instant::now()))
    } else {
        monotonic_now()
    }
}

/// The cycle count `fastant` keeps in an `Instant`.
#[inline]
fn cycles(i: fastant::Instant) -> u64 {
    // SAFETY: `fastant::Instant` is `#[repr(transparent)]` over a `u64` (size checked above),
    // for which every bit pattern is valid.
    unsafe { std::mem::transmute::<fastant::Instant, u64>(i) }
}

/// std's monotonic clock as a tick: nanoseconds since the first such reading.
#[inline(never)]
fn monotonic_now() -> Tick {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    Tick(u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// Nanoseconds per tick are kept as a fixed-point number with this many fractional bits: a
/// relative error below 10⁻¹¹ (a tenth of a nanosecond over ten seconds).
const SCALE_SHIFT: u32 = 40;

/// Nanoseconds per tick × 2^[`SCALE_SHIFT`]; 0 until first asked.
static NANOS_PER_TICK: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds per tick × 2^[`SCALE_SHIFT`]: one per nanosecond without a TSC; with one, what
/// `fastant` calibrated, read off the cycles it counts in 1 000 seconds.
#[inline]
fn nanos_per_tick_scaled() -> u64 {
    match NANOS_PER_TICK.load(Relaxed) {
        0 => calibrate(),
        scale => scale,
    }
}

#[cold]
fn calibrate() -> u64 {
    const SPAN_NS: u64 = 1_000 * 1_000_000_000;
    let scale = if fastant::is_tsc_available() {
        let in_span =
            u128::from(cycles(fastant::Instant::ZERO + Duration::from_nanos(SPAN_NS)).max(1));
        let scaled = ((u128::from(SPAN_NS) << SCALE_SHIFT) + in_span / 2) / in_span;
        u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
    } else {
        1 << SCALE_SHIFT
    };
    NANOS_PER_TICK.store(scale, Relaxed);
    scale
}

/// Nanoseconds in `ticks` ticks (rounded to the nearest).
#[inline]
fn ticks_to_nanos(ticks: u64) -> u64 {
    let scaled = u128::from(ticks) * u128::from(nanos_per_tick_scaled());
    u64::try_from((scaled + (1 << (SCALE_SHIFT - 1))) >> SCALE_SHIFT).unwrap_or(u64::MAX)
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
            self.wall_ns.saturating_add(nanos_between(self.at, t))
        } else {
            self.wall_ns.saturating_sub(nanos_between(t, self.at))
        }
    }
}

/// The anchor in force: written rarely (at start, then every [`REANCHOR_EVERY`]), read for
/// every event encoded, with loads only (a sequence lock: a reader that saw a write under
/// way reads again).
struct AnchorCell {
    seq: AtomicU64,
    wall_ns: AtomicU64,
    at: AtomicU64,
}

impl AnchorCell {
    const fn new() -> AnchorCell {
        AnchorCell {
            seq: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
            at: AtomicU64::new(0),
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
            let at = self.at.load(Relaxed);
            fence(Acquire);
            if self.seq.load(Relaxed) == before {
                return Some(Anchor {
                    wall_ns,
                    at: Tick(at),
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
        self.at.store(a.at.0, Relaxed);
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
#[inline]
pub(crate) fn nanos_between(start: Tick, end: Tick) -> u64 {
    ticks_to_nanos(end.0.saturating_sub(start.0))
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
        assert!(
            a.unix_nanos(start).abs_diff(real) < 1_000,
            "{}",
            a.unix_nanos(start)
        );
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
    fn ticks_convert_to_nanoseconds_as_fastant_converts_them() {
        // The cycle count read out of `fastant::Instant` and scaled here against `fastant`'s
        // own `f64` conversion, from a nanosecond to a day.
        if !fastant::is_tsc_available() {
            return assert_eq!(nanos_between(Tick(5), Tick(1_005)), 1_000);
        }
        let start = fastant::Instant::now();
        for ns in [1, 999, 1_000_000, 1_234_567_891, 86_400 * SECOND] {
            let end = start + Duration::from_nanos(ns);
            let theirs = u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX);
            let ours = nanos_between(Tick(cycles(start)), Tick(cycles(end)));
            assert!(
                ours.abs_diff(theirs) <= 1 + theirs / 10_000_000_000,
                "{ns}: {ours} {theirs}"
            );
            assert!(ours.abs_diff(ns) <= 2 + ns / 10_000_000_000, "{ns}: {ours}");
        }
        let (a, b) = (now(), now());
        assert!(b >= a);
        assert_eq!(nanos_between(b + Duration::from_secs(1), b), 0, "saturates");
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
        // Its ticks are nanoseconds (the scale in force when there is no TSC; this machine
        // may have one, so they are read as they are).
        let ours = b.0 - a.0;
        let theirs = u64::try_from((std_b - std_a).as_nanos()).unwrap_or(0);
        // Ours encloses std's by no more than the reads between them.
        assert!(
            ours >= theirs && ours < theirs + 5_000_000,
            "{ours} {theirs}"
        );
    }
}
