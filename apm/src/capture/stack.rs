//! The thread-local stack of what is current: a transaction, then the spans opened inside it.
//!
//! An owner entry, which refers to its transaction, is pushed when a transaction starts, a
//! context is attached, or something looks at the stack while a future is polled (its frame
//! waits until then: [`PendingPoll`]): a transaction guard's and a poll's borrow the reference
//! of the guard or the future, others hold one of their own. Span entries above it hold none,
//! so starting a span touches no reference count. Always accessed with `try_with`: during
//! thread teardown the stack is simply absent.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub(crate) use super::child_timer::ChildTimer;
use super::raw_stack;
use super::shared::TxnShared;
use crate::queue::staging;
use crate::types::clock::Tick;
use crate::types::ids;
use crate::types::meta::SpanMeta;
use crate::types::outcome::Outcome;
use crate::types::raw_stack::RawStack;
use crate::types::record::{Event, SpanName, SpanRecord};
use crate::types::span_context::SpanExtra;
use crate::util::in_place;

#[derive(Debug)]
pub(crate) struct Entry {
    /// The id children of this entry take as `parent_id` (a span id, or the transaction id).
    pub(crate) id: u64,
    /// Identifies the entry for its guard: entries are found by token, so closes in any order
    /// and futures polled at any depth find their own (a future's poll looks first where it
    /// pushed its entry).
    token: Token,
    /// Set on entries that own their transaction (or borrow it for a poll); span entries
    /// belong to the nearest owner below them.
    owner: Option<ManuallyDrop<Arc<TxnShared>>>,
    /// The owner is a reference lent by the future being polled (for one poll) or by a
    /// transaction guard (until its drop), so that neither touches a reference count: not
    /// dropped with the entry. The entry is closed before the poll returns or unwinds (its
    /// scope's `Drop`), or by the guard's drop, so it never outlives the reference. Parked
    /// elsewhere, it takes a reference of its own first ([`keep_lent`]): a poll's entry when
    /// an entry below it was left during the poll (a bridged span entered before it and exited
    /// inside it), a guard's when the guard is held across an `.await`.
    lent: bool,
    timer: ChildTimer,
    /// On owner entries: span places reserved from the transaction and not used yet. Spans
    /// take them from here, so that a span touches no shared counter (an atomic per span,
    /// and the wait for the stores before it, was the largest single cost of a span).
    budget: u16,
    /// On owner entries: spans not recorded because of `transaction_max_spans`.
    over_limit: u32,
    /// On the entries of `#[apm::span]` functions: the span itself, kept here until it ends
    /// (its guard holds only the token, so nothing is copied around on the way).
    span: Option<StaticSpan>,
}

/// A span of a sync `#[apm::span]` function while it runs, on the stack (an `async` one's is
/// in its future's frame: `span::FrameSpan`).
#[derive(Debug)]
struct StaticSpan {
    meta: &'static SpanMeta,
    start: Tick,
    parent_id: u64,
    trace_id: u128,
    transaction_id: u64,
    sample_rate: u16,
}

/// Span places an owner entry reserves at once. While an entry holds some, the
/// transaction's `started` count includes them (at most this many too many, and only for
/// entries still open on other threads when the transaction ends).
const SPAN_BUDGET: u32 = 16;

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(txn) = &self.owner {
            if self.budget > 0 {
                txn.started.fetch_sub(u32::from(self.budget), Relaxed);
            }
            if self.over_limit > 0 {
                txn.dropped.fetch_add(self.over_limit, Relaxed);
            }
        }
        if let (Some(owner), false) = (&mut self.owner, self.lent) {
            // SAFETY: a held owner is the entry's own reference, dropped once, here.
            unsafe { ManuallyDrop::drop(owner) };
        }
    }
}

thread_local! {
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// The innermost future's frame made current for a poll and not pushed on `STACK` yet
    /// ([`PendingPoll`]), or null.
    static PENDING: Cell<*const PendingPoll> = const { Cell::new(std::ptr::null()) };
}

/// In a forked child (its `pthread_atfork` handler, on the forking thread): the transactions
/// and spans open at the fork are the parent's, which ends and sends them; here they are
/// forgotten (leaked, never dropped: their transactions' locks may be held by threads of the
/// parent), so guards ending them in the child find nothing and record nothing.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    // The polls in progress on the forking thread are the parent's too: their frames are
    // never pushed here, and leaving them finds nothing.
    let mut p = PENDING.replace(std::ptr::null());
    while !p.is_null() {
        // SAFETY: a pending frame lives until its poll leaves it, after the frames above it.
        let frame = unsafe { &*p };
        frame.at.set(FORGOTTEN);
        p = frame.below.get();
    }
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            std::mem::forget(std::mem::take(&mut *s));
        }
    });
}

/// Tells the staging buffer whether the current transaction is sampled, after the stack
/// changed: that flag is also what [`may_record_spans`] reads.
#[inline]
fn refresh(stack: &[Entry]) {
    staging::set_in_recorded_transaction(owner(stack).is_some_and(|t| t.sampled));
}

/// `false` when a span opened now would record nothing (no transaction, or unsampled): one
/// read of a `const` thread-local, so that spans of unsampled transactions (and spans outside
/// any) stop there.
#[inline]
pub(crate) fn may_record_spans() -> bool {
    staging::in_recorded_transaction()
}

/// What a guard keeps to close its entry: a random 64-bit value (a span's own id for spans).
pub(crate) type Token = u64;

#[inline]
fn owner(stack: &[Entry]) -> Option<&Arc<TxnShared>> {
    stack[owner_index(stack)?].owner.as_deref()
}

/// Where the nearest entry that owns its transaction is.
#[inline]
fn owner_index(stack: &[Entry]) -> Option<usize> {
    // Usually the top entry itself (a transaction or a future's frame), or just below it.
    stack.iter().rposition(|e| e.owner.is_some())
}

/// Runs `f` with the current transaction and the id that a new child would take as parent.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<TxnShared>, u64) -> R) -> Option<R> {
    // SAFETY: used here only.
    if let Some(frame) = unsafe { pending() } {
        return Some(f(frame.txn(), frame.id));
    }
    STACK
        .try_with(|s| {
            let s = s.try_borrow().ok()?;
            let top = s.last()?;
            Some(f(owner(&s)?, top.id))
        })
        .ok()
        .flatten()
}

/// Like [`with_current`], for a new span's parent: `None` under an exit span, which is a leaf.
#[cfg(apm_exit_stats)]
#[inline]
pub(crate) fn with_current_parent<R>(f: impl FnOnce(&Arc<TxnShared>, u64) -> R) -> Option<R> {
    // SAFETY: used here only.
    if let Some(frame) = unsafe { pending() } {
        return (!frame.timer().leaf()).then(|| f(frame.txn(), frame.id));
    }
    STACK
        .try_with(|s| {
            let s = s.try_borrow().ok()?;
            let top = s.last().filter(|top| !top.timer.leaf())?;
            Some(f(owner(&s)?, top.id))
        })
        .ok()
        .flatten()
}

/// The current transaction, when it is sampled and has reached `transaction_max_spans` (and
/// the current entry is not an exit span): a span opened here would be dropped by the limit.
#[cfg(apm_exit_stats)]
pub(crate) fn over_span_limit() -> Option<Arc<TxnShared>> {
    with_current_parent(|txn, _| {
        (txn.sampled && txn.started.load(std::sync::atomic::Ordering::Relaxed) >= txn.max_spans)
            .then(|| Arc::clone(txn))
    })
    .flatten()
}

/// The span entered with `token` became an exit span: nothing is recorded under it.
pub(crate) fn mark_leaf(token: Token) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            push_pending(&mut s);
            if let Some(e) = s.iter_mut().rev().find(|e| e.token == token) {
                e.timer.set_leaf();
            }
        }
    });
}

/// Opens a span, started at `start`, as a child of the current entry, if the current
/// transaction is sampled and below `transaction_max_spans`: `decide` sees the transaction and
/// the parent id and returns the child's id (also its token) plus anything else.
#[inline]
pub(crate) fn push_child<R>(
    start: Tick,
    decide: impl FnOnce(&Arc<TxnShared>, u64) -> (u64, R),
) -> Option<(Token, R)> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            let parent = s.last().filter(|top| !top.timer.leaf())?.id;
            let at = owner_index(&s)?;
            let (id, r) = decide(reserve_span(&mut s[at])?, parent);
            push_span_entry(&mut s, id, start, None);
            Some((id, r))
        })
        .ok()
        .flatten()
}

/// Opens a span beside the stack (not pushed: a future's or a bridged span, a call's handle),
/// started at `start`, as a child of the current entry, if the current transaction is sampled
/// and below `transaction_max_spans`: `decide` sees the transaction and the parent id. Also
/// whether the parent's own entry (the span or transaction itself, not a context carried here)
/// counts it as a running child, and so must hear of its end. One look at the stack, and the
/// span's place comes from the owner entry's budget, as for [`push_child`]: no shared counter.
#[inline]
pub(crate) fn child_beside<R>(
    start: Tick,
    decide: impl FnOnce(&Arc<TxnShared>, u64) -> R,
) -> Option<(R, bool)> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            let parent = s.last().filter(|top| !top.timer.leaf())?.id;
            let at = owner_index(&s)?;
            let r = decide(reserve_span(&mut s[at])?, parent);
            let counted = match counting_entry(&s, parent) {
                Some(i) => {
                    if s[i].timer.may_owe() {
                        settle_entry(&mut s, i);
                    }
                    s[i].timer.child_started(start);
                    s[i].timer.set_off_stack();
                    true
                }
                None => false,
            };
            Some((r, counted))
        })
        .ok()
        .flatten()
}

/// Pushes a span's entry (its id is its token) above the current one, which learns that a
/// child started.
#[inline]
fn push_span_entry(s: &mut Vec<Entry>, id: u64, start: Tick, span: Option<StaticSpan>) {
    if s.last().is_some_and(|top| top.timer.may_owe()) {
        settle_top(s);
    }
    if let Some(top) = s.last_mut() {
        top.timer.child_started(start);
    }
    in_place::push(s, || Entry {
        id,
        token: id,
        owner: None,
        lent: false,
        timer: ChildTimer::default(),
        budget: 0,
        over_limit: 0,
        span,
    });
}

/// Takes a span place from the owner entry `e`: its transaction when the span may be recorded
/// (sampled, below `transaction_max_spans`).
#[inline]
fn reserve_span(e: &mut Entry) -> Option<&Arc<TxnShared>> {
    let Entry {
        owner,
        budget,
        over_limit,
        ..
    } = e;
    let txn = owner.as_deref()?;
    if !txn.sampled {
        return None;
    }
    // Past the limit once, past it for good: no shared counter touched again.
    if *budget == 0 && *over_limit == 0 {
        // At most `SPAN_BUDGET`: a `u16` (the entry stays within its size).
        *budget = u16::try_from(txn.reserve_spans(SPAN_BUDGET)).unwrap_or(0);
    }
    if *budget == 0 {
        *over_limit = over_limit.saturating_add(1);
        return None;
    }
    *budget -= 1;
    Some(txn)
}

/// Opens the span of a `#[apm::span]` function, started at `start`, as a child of the current
/// entry; `None` when nothing is recorded. The span lives on the stack until
/// [`exit_static_span`].
#[inline]
pub(crate) fn enter_static_span(meta: &'static SpanMeta, start: Tick) -> Option<Token> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            let parent_id = s.last().filter(|top| !top.timer.leaf())?.id;
            let at = owner_index(&s)?;
            let txn = reserve_span(&mut s[at])?;
            let span = StaticSpan::new(meta, start, parent_id, txn);
            let id = ids::next_u64();
            push_span_entry(&mut s, id, start, Some(span));
            Some(id)
        })
        .ok()
        .flatten()
}

/// Closes the span opened by [`enter_static_span`] and hands its record to the buffer, its
/// outcome decided by [`function_outcome`] from `outcome`, what the function returned gave.
#[inline]
pub(crate) fn exit_static_span(token: Token, end: Tick, outcome: Outcome) {
    let _ = STACK.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        // Nothing is pending here: the span's entry pushed what was when it opened, and the
        // polls run inside the function since then have left (a poll's frame is pending only
        // for the length of its poll).
        debug_assert!(PENDING.get().is_null());
        if s.last().is_none_or(|e| e.token != token) {
            // Closed out of order: the general path.
            if let Some(i) = s.iter().rposition(|e| e.token == token) {
                if s[i].timer.may_owe() {
                    settle_entry(&mut s, i);
                }
            }
            let Some(closed) = close(&mut s, token, Some(end)) else {
                return;
            };
            if let Some(span) = &closed.span {
                let outcome = function_outcome(outcome, &closed.timer);
                let extra = slow_stack(span.start, end);
                let child_ns = closed.timer.busy_until(end);
                let record = span.record(closed.id, end, outcome, child_ns, extra);
                staging::push_with(|| Event::Span(record));
            }
            return;
        }
        let top = s.len() - 1;
        if s[top].timer.may_owe() {
            settle_top(&mut s);
        }
        // Read in place and truncate: moving the entry out would copy it.
        if let Some(span) = &s[top].span {
            let (id, timer) = (s[top].id, &s[top].timer);
            let outcome = function_outcome(outcome, timer);
            let extra = slow_stack(span.start, end);
            // Worked out before the record is built: a call among its fields had the compiler
            // build it on the stack and copy it, reading back as 16 bytes what it had just
            // stored as 8 and 1 (a stalled store forwarding per span).
            let child_ns = timer.busy_until(end);
            staging::push_with(|| Event::Span(span.record(id, end, outcome, child_ns, extra)));
        }
        s.truncate(top);
        if let Some(below) = s.last_mut() {
            below.timer.child_ended(end);
        }
    });
}

/// The optional parts of a `#[apm::span]` function's record that ran from `start` to `end`:
/// the stack where it ended if it was slow, else none. Decided before the record is built, so
/// that the record is written once, in its staging slot (a record passed through a function to
/// add them was copied twice per span).
#[inline]
pub(super) fn slow_stack(start: Tick, end: Tick) -> Option<Box<SpanExtra>> {
    raw_stack::of_slow_span(start, end).map(with_stack)
}

#[cold]
fn with_stack(stack: RawStack) -> Box<SpanExtra> {
    Box::new(SpanExtra {
        stack: Some(stack),
        ..SpanExtra::default()
    })
}

/// A `#[apm::span]` function's outcome, sync or `async` (`span::FrameSpan`): a failure while a
/// panic unwinds or when an error was captured inside it (`timer`); else what its return
/// value gave (`derived`, from a `Result`), a success when that says nothing.
#[inline]
pub(super) fn function_outcome(derived: Outcome, timer: &ChildTimer) -> Outcome {
    if std::thread::panicking() || timer.errored() {
        Outcome::Failure
    } else if derived == Outcome::Unknown {
        Outcome::Success
    } else {
        derived
    }
}

impl StaticSpan {
    /// The span `meta` of `txn`, child of `parent_id`, started at `start`.
    #[inline]
    fn new(meta: &'static SpanMeta, start: Tick, parent_id: u64, txn: &TxnShared) -> StaticSpan {
        StaticSpan {
            meta,
            start,
            parent_id,
            trace_id: txn.trace_id,
            transaction_id: txn.id,
            sample_rate: txn.sample_rate,
        }
    }

    #[inline(always)]
    fn record(
        &self,
        id: u64,
        end: Tick,
        outcome: Outcome,
        child_ns: u64,
        extra: Option<Box<SpanExtra>>,
    ) -> SpanRecord {
        SpanRecord {
            trace_id: self.trace_id,
            transaction_id: self.transaction_id,
            parent_id: self.parent_id,
            id,
            name: SpanName::Static(self.meta),
            start: self.start,
            end,
            sample_rate: self.sample_rate,
            outcome,
            extra,
            child_ns,
        }
    }
}

/// An error was captured while the current entry was current.
pub(crate) fn error_captured_here() {
    with_top(|top| top.timer.set_errored());
}

/// Where the entry of `parent_id` whose timer counts is on the stack (the span or transaction
/// itself, not a context carried here).
#[inline]
fn counting_entry(s: &[Entry], parent_id: u64) -> Option<usize> {
    s.iter()
        .rposition(|e| e.id == parent_id && !e.timer.discarded())
}

/// A child off the stack ended: its parent, found by id on this thread's stack, learns it.
/// `false` when the parent is not there (the child ended in another task or thread): the
/// caller tells the transaction instead.
#[inline]
pub(crate) fn child_ended_under(parent_id: u64, end: Tick) -> bool {
    STACK
        .try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return false;
            };
            push_pending(&mut s);
            match counting_entry(&s, parent_id) {
                Some(i) => {
                    s[i].timer.child_ended(end);
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
}

/// Lets the current entry hear of its children that ended elsewhere (rare: only entries
/// with children off the stack still counted as running get here).
#[cold]
fn settle_top(s: &mut [Entry]) {
    if let Some(top) = s.len().checked_sub(1) {
        settle_entry(s, top);
    }
}

#[cold]
fn settle_entry(s: &mut [Entry], i: usize) {
    let Some(at) = owner_index(&s[..=i]) else {
        return;
    };
    // The owner's transaction and the entry's timer, borrowed apart (no `Arc` clone).
    let (below, from_i) = s.split_at_mut(i);
    let entry = &mut from_i[0];
    let txn = if at == i {
        entry.owner.as_deref()
    } else {
        below[at].owner.as_deref()
    };
    if let Some(txn) = txn {
        entry.timer.settle(&txn.ended_elsewhere, entry.id);
    }
}

fn with_top(f: impl FnOnce(&mut Entry)) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            push_pending(&mut s);
            if let Some(top) = s.last_mut() {
                f(top);
            }
        }
    });
}

/// Makes `txn` current with `id` as the parent of what opens next; `timer` carries the time
/// its children ran so far (a future polled again).
/// `own_timer`: the entry is the span or transaction itself, whose children's time counts;
/// not a context carried elsewhere, whose timer nobody reads.
pub(crate) fn push_owner(
    txn: Arc<TxnShared>,
    id: u64,
    timer: ChildTimer,
    own_timer: bool,
) -> Option<Token> {
    push_owner_entry(ManuallyDrop::new(txn), false, id, timer, own_timer)
}

/// [`push_owner`] for a transaction guard: the entry borrows the guard's reference instead of
/// counting one of its own, so that a transaction's start and end touch no reference count.
///
/// # Safety
/// `txn` stays alive until the entry is closed by [`pop_then`] with the token returned. Where
/// it is not closed (a forked child's end, or [`pop_then`] returning `None`: the stack is
/// borrowed), the entry may still be on the stack, and `txn` must then never be dropped. An
/// entry parked elsewhere takes a reference of its own first ([`keep_lent`]).
#[inline]
pub(crate) unsafe fn push_lent_owner(
    txn: &Arc<TxnShared>,
    id: u64,
    timer: ChildTimer,
) -> Option<Token> {
    // SAFETY: the same pointer as `txn`'s, never dropped (`lent`): a borrow, not a count.
    let borrowed = ManuallyDrop::new(unsafe { Arc::from_raw(Arc::as_ptr(txn)) });
    push_owner_entry(borrowed, true, id, timer, true)
}

#[inline]
fn push_owner_entry(
    owner: ManuallyDrop<Arc<TxnShared>>,
    lent: bool,
    id: u64,
    timer: ChildTimer,
    own_timer: bool,
) -> Option<Token> {
    let token = ids::next_u64();
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            in_place::push(&mut s, || Entry {
                id,
                token,
                owner: Some(owner),
                lent,
                timer: timer.discarding(!own_timer),
                budget: 0,
                over_limit: 0,
                span: None,
            });
            refresh(&s);
            Some(token)
        })
        .ok()
        .flatten()
}

/// A future's frame made current for one poll, from [`enter_poll`] to [`leave_poll`].
///
/// Its entry is pushed on the stack only when something looks at the stack during the poll (a
/// span or transaction opens, an error is captured, a guard is dropped): most polls of an
/// instrumented future (a socket not ready, a timer) touch nothing, and pushing then leaving
/// an entry of 128 bytes was most of what such a poll cost. Until then the frame is current
/// through the thread's `PENDING` pointer, above every entry of the stack: whatever pushes on
/// the stack pushes the pending frames first ([`push_pending`]), and reads of the current
/// context ([`with_current`]) answer from the frame itself.
#[derive(Debug)]
pub(crate) struct PendingPoll {
    /// The frame's transaction, owned by the future polled (which is pinned for the poll).
    txn: *const Arc<TxnShared>,
    /// The parent of what opens during the poll.
    id: u64,
    /// Tells the entry from the others once pushed (the frame's address).
    token: Token,
    /// The frame's own record of the time its children ran: read when the entry is pushed,
    /// written back when it leaves. Untouched while the frame is not pushed (a child's start or
    /// end looks at the stack), and not copied per poll: a copy read it back 16 bytes at a
    /// time right after the frame was made, and waited for the stores that had just written it.
    timer: *mut ChildTimer,
    /// The staging flag before the poll, which it goes back to when the poll leaves.
    recorded_before: bool,
    /// The pending frame below it (a future polled inside another one's poll), or null. Cut
    /// when that frame leaves first (polls that do not nest: stackful coroutines suspended
    /// inside them), so that it never points at a frame that is gone.
    below: Cell<*const PendingPoll>,
    /// Where its entry was pushed: [`NOT_PUSHED`] until then, [`FORGOTTEN`] in a forked child.
    at: Cell<usize>,
}

const NOT_PUSHED: usize = usize::MAX;
const FORGOTTEN: usize = usize::MAX - 1;

impl PendingPoll {
    /// The frame of `txn`, whose children take `id` as parent, for a poll about to start.
    #[inline]
    pub(crate) fn new(txn: &Arc<TxnShared>, id: u64, token: Token, timer: *mut ChildTimer) -> Self {
        PendingPoll {
            txn: txn as *const Arc<TxnShared>,
            id,
            token,
            timer,
            recorded_before: staging::in_recorded_transaction(),
            below: Cell::new(PENDING.get()),
            at: Cell::new(NOT_PUSHED),
        }
    }

    #[inline]
    fn txn(&self) -> &Arc<TxnShared> {
        // SAFETY: the future polled owns the transaction and is pinned until the poll leaves
        // the frame, before this frame is dropped (`enter_poll`'s contract).
        unsafe { &*self.txn }
    }

    #[inline]
    fn timer(&self) -> ChildTimer {
        // SAFETY: the frame's timer, which nothing else reads or writes during the poll
        // (`enter_poll`'s contract).
        unsafe { *self.timer }
    }
}

/// The innermost frame of a poll in progress that is not pushed on the stack yet.
///
/// # Safety
/// The reference is used inside the current call only: `PENDING` holds a frame from
/// `enter_poll` until `leave_poll`, and the frame stays where it is meanwhile.
#[inline]
unsafe fn pending<'a>() -> Option<&'a PendingPoll> {
    let p = PENDING.get();
    // SAFETY: see above.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Pushes the frames of the polls in progress that are not on the stack yet, outermost first:
/// what is about to look at the stack then finds them where they belong, on top.
#[inline]
fn push_pending(s: &mut Vec<Entry>) {
    let top = PENDING.get();
    if !top.is_null() {
        PENDING.set(std::ptr::null());
        push_frames(s, top);
    }
}

#[inline(never)]
fn push_frames(s: &mut Vec<Entry>, p: *const PendingPoll) {
    // SAFETY: see `pending`.
    let frame = unsafe { &*p };
    let below = frame.below.get();
    if !below.is_null() {
        push_frames(s, below);
    }
    frame.at.set(s.len());
    // SAFETY: the same pointer as the frame's `Arc`, never dropped (`lent`): a borrow, not a
    // count. The entry leaves the stack before the poll returns (`leave_poll`), or is parked
    // with a reference of its own (`keep_lent`).
    let borrowed = ManuallyDrop::new(unsafe { Arc::from_raw(Arc::as_ptr(frame.txn())) });
    in_place::push(s, || Entry {
        id: frame.id,
        token: frame.token,
        owner: Some(borrowed),
        lent: true,
        timer: frame.timer(),
        budget: 0,
        over_limit: 0,
        span: None,
    });
}

/// The entries a future's poll left open when it returned (a guard held across `.await`),
/// kept for its next poll. Rare: one pointer in the future until then, which a `Vec` made
/// three (a smaller future is moved in fewer bytes: BENCHMARKS.md §10d).
// Boxed for the thin pointer, not for the heap: the `Vec` alone is three words in every future.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct Parked(Option<Box<Vec<Entry>>>);

impl Parked {
    #[inline]
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|entries| entries.is_empty())
    }

    /// Where entries are parked (its room kept once made).
    fn entries(&mut self) -> &mut Vec<Entry> {
        self.0.get_or_insert_default()
    }
}

/// Makes a future's frame current for one poll: `frame` becomes the thread's pending frame
/// (pushed on the stack when something looks at it), then the entries it left open in its
/// last poll (`parked`, rare: a guard held across `.await`) go back above it, which pushes it
/// at once. The staging flag is written only when it changes.
///
/// # Safety
/// `frame`, the transaction and the timer it refers to stay where they are, alive, until
/// [`leave_poll`] has left the frame, which happens before the poll returns or unwinds; the
/// timer is not read or written through anything else meanwhile.
#[inline]
pub(crate) unsafe fn enter_poll(frame: &PendingPoll, parked: &mut Parked) {
    PENDING.set(frame);
    let sampled = frame.txn().sampled;
    if parked.is_empty() {
        // The frame's transaction is the current one.
        if sampled != frame.recorded_before {
            staging::set_in_recorded_transaction(sampled);
        }
    } else {
        restore_parked(parked);
    }
}

#[cold]
fn restore_parked(parked: &mut Parked) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            push_pending(&mut s);
            s.append(parked.entries());
            refresh(&s);
        }
    });
}

/// Leaves the frame entered with [`enter_poll`] and everything opened above it: the entries
/// above go to `parked` (a future yielding with guards still open keeps them for its next
/// poll), the entry's child timer to the frame's. A frame never pushed leaves nothing to pop.
///
/// # Safety
/// `frame` was given to [`enter_poll`] (or is about to be: a panic on the way there leaves it
/// here too), and is still where it was, as is its timer.
#[inline]
pub(crate) unsafe fn leave_poll(frame: &PendingPoll, parked: &mut Parked) {
    let at = frame.at.get();
    if at == NOT_PUSHED {
        // Nothing looked at the stack during the poll: what was pending below is again.
        let innermost = PENDING.get();
        if std::ptr::eq(innermost, frame) {
            PENDING.set(frame.below.get());
        } else {
            unlink(innermost, frame);
        }
        if staging::in_recorded_transaction() != frame.recorded_before {
            staging::set_in_recorded_transaction(frame.recorded_before);
        }
        return;
    }
    // SAFETY: see `PendingPoll::timer`.
    let timer = unsafe { &mut *frame.timer };
    leave_pushed(at, frame.token, frame.recorded_before, parked, timer);
}

/// Takes `frame` out of the chain of pending frames that starts at `innermost`, where it is not
/// the innermost: polls that did not nest (a stackful coroutine suspended inside a poll, and
/// another poll begun meanwhile on the thread). Attributing the context right across such
/// polls is out of reach; pointing at a frame that is gone must not happen.
#[cold]
fn unlink(innermost: *const PendingPoll, frame: &PendingPoll) {
    let mut p = innermost;
    while !p.is_null() {
        // SAFETY: the frames still in the chain are alive (each leaves it before it is gone).
        let above = unsafe { &*p };
        let below = above.below.get();
        if std::ptr::eq(below, frame) {
            above.below.set(frame.below.get());
            return;
        }
        p = below;
    }
}

/// [`leave_poll`] of a frame whose entry was pushed at `at` (whatever was pending below it was
/// pushed with it).
fn leave_pushed(
    at: usize,
    token: Token,
    recorded_before: bool,
    parked: &mut Parked,
    timer: &mut ChildTimer,
) {
    let _ = STACK.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        if s.get(at).is_some_and(|e| e.token == token) {
            // Entries are only pushed above and closed: still at its place, the entry stands
            // on the stack it was pushed on, whose staging flag was `recorded_before`.
            if s.len() > at + 1 {
                park(parked, s.drain(at + 1..));
            }
            *timer = s[at].timer;
            s.truncate(at);
            if staging::in_recorded_transaction() != recorded_before {
                staging::set_in_recorded_transaction(recorded_before);
            }
        } else if let Some(i) = s.iter().rposition(|e| e.token == token) {
            // An entry below it closed during the poll.
            park(parked, s.drain(i + 1..));
            *timer = s[i].timer;
            s.truncate(i);
            refresh(&s);
        }
    });
}

/// Parks `entries` after those parked before, each with a reference of its own.
#[cold]
fn park(parked: &mut Parked, entries: impl Iterator<Item = Entry>) {
    let parked = parked.entries();
    let from = parked.len();
    parked.extend(entries);
    keep_lent(&mut parked[from..]);
}

/// Makes the bridged span `id` of `txn` current (a tracing span entered, an OpenTelemetry
/// context attached), with `timer`, the time its children ran so far. Where `txn` is already
/// the current transaction (the span is entered where it was created, or in its task), the
/// entry is a span's: it belongs to the owner below it and touches no reference count;
/// elsewhere it owns a reference, as [`push_owner`]'s.
#[cfg(apm_bridge)]
#[inline]
pub(crate) fn push_bridged(txn: &Arc<TxnShared>, id: u64, timer: ChildTimer) -> Option<Token> {
    let token = ids::next_u64();
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            let same = owner(&s).is_some_and(|o| Arc::ptr_eq(o, txn));
            in_place::push(&mut s, || Entry {
                id,
                token,
                owner: (!same).then(|| ManuallyDrop::new(Arc::clone(txn))),
                lent: false,
                timer,
                budget: 0,
                over_limit: 0,
                span: None,
            });
            if !same {
                refresh(&s);
            }
            Some(token)
        })
        .ok()
        .flatten()
}

/// Closes the entry opened with `token`, wherever it is on this thread's stack (guards may be
/// dropped out of order; they cannot move to another thread: they are `!Send`). With `end`,
/// the entry below learns that its child ended. Returns the closed entry's child timer.
#[inline]
pub(crate) fn pop(token: Token, end: Option<Tick>) -> Option<ChildTimer> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            push_pending(&mut s);
            close(&mut s, token, end).map(|closed| closed.timer)
        })
        .ok()
        .flatten()
}

/// Closes the owner entry opened with `token` (a transaction's) and runs `then` with its child
/// timer before the staging buffer hears that the thread may have left its transaction: a
/// transaction's end stages its record first, so that what the thread staged is published
/// once, with the record. `then` runs with no timer when the entry is not on the stack (or the
/// thread's stack is gone), and not at all when the stack is borrowed (`None`: the entry may
/// still be on it).
#[inline]
pub(crate) fn pop_then<R>(token: Token, then: impl FnOnce(Option<ChildTimer>) -> R) -> Option<R> {
    let mut then = Some(then);
    let reached = STACK.try_with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        push_pending(&mut s);
        // The entry (and its reference to the transaction, unless lent) is dropped here; on
        // top, in place (moving it out would copy it).
        let top = s.len().checked_sub(1);
        let timer = match top {
            Some(top) if s[top].token == token => {
                let timer = s[top].timer;
                s.truncate(top);
                Some(timer)
            }
            _ => close_quiet(&mut s, token, None).map(|(closed, _)| closed.timer),
        };
        let r = (then.take()?)(timer);
        refresh(&s);
        Some(r)
    });
    match reached {
        Ok(done) => done,
        // The thread's stack is gone, and its entries with it.
        Err(_) => then.map(|f| f(None)),
    }
}

#[inline]
fn close(s: &mut Vec<Entry>, token: Token, end: Option<Tick>) -> Option<Entry> {
    let (closed, moved) = close_quiet(s, token, end)?;
    if closed.owner.is_some() || moved {
        refresh(s);
    }
    Some(closed)
}

/// [`close`] without telling the staging buffer; also whether entries above it moved down.
#[inline]
fn close_quiet(s: &mut Vec<Entry>, token: Token, end: Option<Tick>) -> Option<(Entry, bool)> {
    let (i, closed) = if s.last().is_some_and(|e| e.token == token) {
        (s.len() - 1, s.pop()?)
    } else {
        let i = s.iter().rposition(|e| e.token == token)?;
        (i, s.remove(i))
    };
    if let (Some(end), Some(below)) = (end, i.checked_sub(1)) {
        s[below].timer.child_ended(end);
    }
    let moved = i < s.len();
    Some((closed, moved))
}

/// Leaves the entry opened with `token` and everything opened above it: the entries above are
/// returned (a future yielding with guards still open keeps them for its next poll), with the
/// entry's child timer. (A bridged span's exit; a future's poll leaves with [`leave_poll`].)
#[cfg(any(apm_bridge, test))]
pub(crate) fn leave(token: Token) -> (Vec<Entry>, Option<ChildTimer>) {
    STACK
        .try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return (Vec::new(), None);
            };
            push_pending(&mut s);
            // Usually a span's own entry (no owner), on top: its timer read in place and the
            // entry dropped there, with no owner changed (moving it out would copy it).
            if let Some(top) = s.len().checked_sub(1) {
                if s[top].token == token && s[top].owner.is_none() {
                    let timer = s[top].timer;
                    s.truncate(top);
                    return (Vec::new(), Some(timer));
                }
            }
            match s.iter().rposition(|e| e.token == token) {
                Some(i) => {
                    let mut above = s.split_off(i + 1);
                    keep_lent(&mut above);
                    let left = s.pop();
                    // Leaving a span's entry, with nothing above it, changes no owner.
                    if !above.is_empty() || left.as_ref().is_none_or(|e| e.owner.is_some()) {
                        refresh(&s);
                    }
                    (above, left.map(|e| e.timer))
                }
                None => (Vec::new(), None),
            }
        })
        .unwrap_or_default()
}

/// Entries about to be parked take a reference of their own where theirs was lent: a poll's
/// entry is left before its poll returns, unless an entry below it was left first (a bridged
/// span entered before the poll and exited inside it), which parks it; a guard's entry is
/// parked when the guard is held across an `.await`. The lender's reference may be gone when
/// the entry is put back.
#[cold]
fn keep_lent_entries(entries: &mut [Entry]) {
    for e in entries.iter_mut().filter(|e| e.lent) {
        if let Some(owner) = &mut e.owner {
            *owner = ManuallyDrop::new(Arc::clone(owner));
            e.lent = false;
        }
    }
}

#[inline]
fn keep_lent(entries: &mut [Entry]) {
    if entries.iter().any(|e| e.lent) {
        keep_lent_entries(entries);
    }
}

/// Puts back entries returned by [`leave`] (the bridged span is entered again).
#[cfg(apm_bridge)]
#[inline]
pub(crate) fn restore(entries: &mut Vec<Entry>) {
    // Nearly always none: checked here, without a call.
    if !entries.is_empty() {
        restore_entries(entries);
    }
}

#[cfg(apm_bridge)]
#[cold]
fn restore_entries(entries: &mut Vec<Entry>) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            push_pending(&mut s);
            if !entries.is_empty() {
                s.append(entries);
                refresh(&s);
            }
        }
    });
}

/// The ids of the entries pushed on this thread's stack, bottom first (pending frames are
/// not pushed by asking).
#[cfg(test)]
pub(crate) fn pushed_ids() -> Vec<u64> {
    STACK.with(|s| s.borrow().iter().map(|e| e.id).collect())
}

/// The current transaction and parent id, as an owned snapshot.
pub(crate) fn snapshot() -> Option<(Arc<TxnShared>, u64)> {
    with_current(|t, parent| (Arc::clone(t), parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every span writes one entry and one record: their sizes are part of its cost
    /// (BENCHMARKS.md).
    #[test]
    fn the_hot_path_structures_stay_small() {
        assert!(
            std::mem::size_of::<ChildTimer>() <= 32,
            "{}",
            std::mem::size_of::<ChildTimer>()
        );
        assert!(
            std::mem::size_of::<Entry>() <= 128,
            "{}",
            std::mem::size_of::<Entry>()
        );
        // A statement's span names its endpoint and text with two shared pointers, and its
        // rows: 16 bytes more per event with the SQL client integrations compiled in.
        let event_max = if cfg!(apm_sql) { 112 } else { 96 };
        assert!(
            std::mem::size_of::<Event>() <= event_max,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
