//! How long the children of a span or transaction ran: the union of their durations, which
//! its self time (breakdown metrics) leaves out. Also whether an error was captured while it
//! was current.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::types::clock::{self, Tick};

/// The time during which at least one child of a span or transaction ran (the union of the
/// children's durations): its self time, for breakdown metrics, is its duration minus this.
/// Also whether an error was captured while the span or transaction was current, which makes
/// its outcome a failure unless one was set explicitly (spec: `outcome.feature`).
///
/// Its flags are bits of a byte, not `bool`s: a `bool`'s spare values would carry the tag of an
/// `Option<ChildTimer>` (or of a type holding one), and every such copy then moved the rest
/// as 31 bytes in two overlapping halves and that byte apart, reading back what it had just
/// stored (a stalled store forwarding per copy: a transaction's end, a bridged span's enter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildTimer {
    /// Children running now, as far as this entry knows: on the stack, or off it and not
    /// heard of since they started.
    active: u32,
    /// [`ERRORED`], [`OFF_STACK`], [`DISCARDED`], [`LEAF`].
    flags: u8,
    /// When the current busy stretch began (while `active > 0`).
    since: Tick,
    /// The latest end of a child in the current stretch (a child may be heard of late).
    last_end: Tick,
    busy_ns: u64,
}

/// An error was captured while the span or transaction was current.
const ERRORED: u8 = 1;
/// A child off the stack (a future's span, a request) started under this entry. One that ends
/// where this entry is not current tells the transaction, and [`ChildTimer::settle`] hears of
/// it from there.
const OFF_STACK: u8 = 2;
/// Nobody reads this timer: it belongs to a context carried elsewhere (an attached context, a
/// future bound to one), not to the span or transaction itself.
const DISCARDED: u8 = 4;
/// No child is recorded under this entry: it is an exit span, a leaf (the spec's exit span
/// rule: the calls a database or HTTP client makes inside are its own business). Kept here,
/// beside the other flags, so that the entry stays its size.
const LEAF: u8 = 8;

impl Default for ChildTimer {
    fn default() -> Self {
        ChildTimer {
            active: 0,
            flags: 0,
            since: Tick::ZERO,
            last_end: Tick::ZERO,
            busy_ns: 0,
        }
    }
}

impl ChildTimer {
    /// This timer, marked as one nobody reads (a context carried elsewhere) or not.
    #[inline]
    pub(super) fn discarding(mut self, discarded: bool) -> ChildTimer {
        self.set(DISCARDED, discarded);
        self
    }

    #[inline]
    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// An error was captured while the span or transaction was current.
    #[inline]
    pub(crate) fn errored(&self) -> bool {
        self.flags & ERRORED != 0
    }

    #[inline]
    pub(super) fn set_errored(&mut self) {
        self.flags |= ERRORED;
    }

    /// A child off the stack started under this entry (see [`OFF_STACK`]).
    #[inline]
    pub(super) fn set_off_stack(&mut self) {
        self.flags |= OFF_STACK;
    }

    /// Nobody reads this timer (see [`DISCARDED`]).
    #[inline]
    pub(super) fn discarded(&self) -> bool {
        self.flags & DISCARDED != 0
    }

    /// Its entry is an exit span's: no child is recorded under it.
    #[inline]
    pub(super) fn leaf(&self) -> bool {
        self.flags & LEAF != 0
    }

    #[inline]
    pub(super) fn set_leaf(&mut self) {
        self.flags |= LEAF;
    }

    #[inline]
    pub(super) fn child_started(&mut self, at: Tick) {
        if self.active == 0 {
            self.since = at;
            self.last_end = at;
        }
        self.active += 1;
    }

    #[inline]
    pub(super) fn child_ended(&mut self, at: Tick) {
        if self.active == 0 {
            return;
        }
        self.active -= 1;
        if at > self.last_end {
            self.last_end = at;
        }
        if self.active == 0 {
            self.busy_ns += nanos(self.since, self.last_end);
            // Every child off the stack has been heard of: nothing owed until the next.
            self.set(OFF_STACK, false);
        }
    }

    /// Whether a child off the stack may have ended elsewhere, unheard of.
    #[inline]
    pub(super) fn may_owe(&self) -> bool {
        self.flags & OFF_STACK != 0 && self.active > 0
    }

    /// Hears of the children off the stack that ended where this entry (`id`) was not
    /// current: before it counts on `active` (a new child, its own end).
    #[inline]
    pub(crate) fn settle(&mut self, ended: &EndedElsewhere, id: u64) {
        if self.may_owe() {
            ended.take(id, |end| self.child_ended(end));
        }
    }

    /// Time covered by children up to `end` (children still running count until then).
    #[inline]
    pub(crate) fn busy_until(&self, end: Tick) -> u64 {
        if self.active > 0 {
            self.busy_ns + nanos(self.since, end)
        } else {
            self.busy_ns
        }
    }
}

/// The ends of children off the stack that ended where their parent was not current (another
/// task or thread): (parent id, end), until the parent hears of them. One per transaction; at
/// most one entry per recorded span.
#[derive(Debug, Default)]
pub(crate) struct EndedElsewhere {
    ends: Mutex<Vec<(u64, Tick)>>,
    /// How many there are: a parent with nothing to hear of takes no lock.
    count: AtomicU32,
}

impl EndedElsewhere {
    /// A child of `parent` ended at `end` where `parent` was not current.
    pub(crate) fn record(&self, parent: u64, end: Tick) {
        let mut ends = self.ends.lock();
        ends.push((parent, end));
        self.count.store(ends.len() as u32, Relaxed);
    }

    /// Empties it for a transaction started in a reused state (its memory kept).
    pub(crate) fn clear(&mut self) {
        if *self.count.get_mut() > 0 {
            self.ends.get_mut().clear();
            *self.count.get_mut() = 0;
        }
    }

    /// Hands `parent` the ends of its children that ended elsewhere.
    fn take(&self, parent: u64, mut end: impl FnMut(Tick)) {
        if self.count.load(Relaxed) == 0 {
            return;
        }
        let mut ends = self.ends.lock();
        ends.retain(|&(p, at)| {
            if p == parent {
                end(at);
            }
            p != parent
        });
        self.count.store(ends.len() as u32, Relaxed);
    }
}

fn nanos(from: Tick, to: Tick) -> u64 {
    clock::nanos_between(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks `ms` milliseconds after `base`.
    fn at(base: Tick, ms: u64) -> Tick {
        base + std::time::Duration::from_millis(ms)
    }

    /// Busy time until `end`, in whole milliseconds (ticks convert to nanoseconds with
    /// rounding).
    fn busy_ms(timer: &ChildTimer, end: Tick) -> u64 {
        (timer.busy_until(end) + 500_000) / 1_000_000
    }

    #[test]
    fn overlapping_children_count_once_whatever_order_they_end_in() {
        let t0 = crate::types::clock::now();
        let mut timer = ChildTimer::default();
        // A runs 0-100; B starts later and ends first.
        timer.child_started(at(t0, 0));
        timer.child_started(at(t0, 10));
        timer.child_ended(at(t0, 20));
        timer.child_ended(at(t0, 100));
        assert_eq!(busy_ms(&timer, at(t0, 200)), 100);
        // C runs 200-210, its end heard of late (it ended elsewhere), after D (205-250)
        // ended: the stretch lasts until D's end.
        timer.child_started(at(t0, 200));
        timer.child_started(at(t0, 205));
        timer.child_ended(at(t0, 250));
        timer.child_ended(at(t0, 210));
        assert_eq!(busy_ms(&timer, at(t0, 300)), 150);
        // A child still running counts until the end asked for.
        timer.child_started(at(t0, 300));
        assert_eq!(busy_ms(&timer, at(t0, 320)), 170);
    }
}
