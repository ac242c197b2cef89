//! Instrumented futures: a frame (the span or transaction a future times, or a context it
//! runs inside) made current on the thread for the length of each poll, and left when the poll
//! returns. Nothing is held across `.await`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use super::shared::TxnShared;
use super::span::FrameSpan;
use super::stack::{self, ChildTimer, Parked, PendingPoll};
use super::transaction;
use crate::types::outcome::Outcome;

/// What an instrumented future carries: the span or transaction it times, or a context it
/// runs inside.
#[derive(Debug)]
pub struct Frame(FrameInner);

#[derive(Debug)]
enum FrameInner {
    Empty,
    Span(FrameSpan),
    Transaction(Arc<TxnShared>),
    Context(Arc<TxnShared>, u64),
}

impl Frame {
    pub(super) const EMPTY: Frame = Frame(FrameInner::Empty);

    /// A context carried into a future (a transaction, and the parent of what opens in it).
    pub(super) fn from_context(ctx: Option<(Arc<TxnShared>, u64)>) -> Frame {
        match ctx {
            Some((t, parent)) => Frame(FrameInner::Context(t, parent)),
            None => Frame::EMPTY,
        }
    }

    /// A future's own transaction.
    pub(super) fn from_transaction(txn: Option<Arc<TxnShared>>) -> Frame {
        match txn {
            Some(t) => Frame(FrameInner::Transaction(t)),
            None => Frame::EMPTY,
        }
    }

    /// A future's own span.
    pub(super) fn from_span(span: Option<FrameSpan>) -> Frame {
        match span {
            Some(s) => Frame(FrameInner::Span(s)),
            None => Frame::EMPTY,
        }
    }

    /// The transaction and the id children take as parent (borrowed: a poll touches no
    /// reference count).
    fn current(&self) -> Option<(&Arc<TxnShared>, u64)> {
        use FrameInner as Frame;
        match &self.0 {
            Frame::Empty => None,
            Frame::Span(s) => Some((s.transaction(), s.id())),
            Frame::Transaction(t) => Some((t, t.id)),
            Frame::Context(t, parent) => Some((t, *parent)),
        }
    }

    #[inline]
    fn finish(&mut self, outcome: Outcome, timer: &ChildTimer) {
        use FrameInner as Frame;
        if matches!(self.0, Frame::Empty) {
            // Ended already (the future's drop after its completion): nothing to move out.
            return;
        }
        self.finish_now(outcome, timer);
    }

    #[inline]
    fn finish_now(&mut self, outcome: Outcome, timer: &ChildTimer) {
        use FrameInner as Frame;
        if let Frame::Span(s) = &self.0 {
            // Ended in the frame: moving the span out first would copy it.
            s.end(timer, outcome);
            self.0 = Frame::Empty;
            return;
        }
        self.finish_other(outcome, timer);
    }

    /// A carried transaction's or context's end (out of line: a span's is the one polled
    /// futures end most).
    #[inline(never)]
    fn finish_other(&mut self, outcome: Outcome, timer: &ChildTimer) {
        use FrameInner as Frame;
        if let Frame::Transaction(t) = std::mem::replace(&mut self.0, Frame::Empty) {
            transaction::end_carried_transaction(t, *timer, outcome);
        }
    }
}

/// Decides an outcome from a future's output.
pub trait OutcomeHook<O> {
    /// The outcome `output` gives the span or transaction.
    fn outcome(self, output: &O) -> Outcome;
}

/// The hook of futures whose output does not decide the outcome.
#[derive(Debug, Clone, Copy)]
pub struct NoHook;

impl<O> OutcomeHook<O> for NoHook {
    #[inline]
    fn outcome(self, _output: &O) -> Outcome {
        Outcome::Unknown
    }
}

impl<O, C: FnOnce(&O) -> Outcome> OutcomeHook<O> for C {
    #[inline]
    fn outcome(self, output: &O) -> Outcome {
        self(output)
    }
}

/// A frame made current for the length of each poll, and what it keeps between polls.
#[derive(Debug)]
struct FrameState<H = NoHook> {
    frame: Frame,
    /// Decides the outcome from the future's output.
    hook: Option<H>,
    /// Entries opened in an earlier poll and still open (a guard held across `.await`).
    parked: Parked,
    /// Time the frame's children ran, kept between polls.
    timer: ChildTimer,
    /// A poll panicked: the frame ends as a failure even if the panic is caught.
    unwound: bool,
    /// The frame outlives the future's completion: `Instrumented::take_pending_end` hands
    /// it over (an HTTP server's transaction, which ends with the response's body).
    defer_end: bool,
}

impl<H> FrameState<H> {
    fn new(frame: Frame, hook: Option<H>) -> FrameState<H> {
        // A context carried into a future is not the span or transaction itself: nobody reads
        // the time its children run.
        let carried = matches!(frame.0, FrameInner::Context(..));
        FrameState {
            frame,
            hook,
            parked: Parked::default(),
            timer: ChildTimer::default().discarding(carried),
            unwound: false,
            defer_end: false,
        }
    }

    /// Runs `poll` with the frame current on this thread.
    #[inline]
    fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        // The state's address tells its entry from the others on the stack while it is
        // borrowed here: no id drawn per poll.
        let token = std::ptr::from_ref(self).addr() as u64;
        let Some((txn, id)) = self.frame.current() else {
            return poll();
        };
        let frame = PendingPoll::new(txn, id, token, &raw mut self.timer);
        // Made before the frame is entered: a panic on the way in leaves it too.
        let scope = PollScope {
            frame: &frame,
            parked: &mut self.parked,
            unwound: &mut self.unwound,
        };
        // SAFETY: `frame` stays in this scope, and the frame's transaction and timer are
        // neither moved nor dropped, nor the timer touched otherwise, until the scope has
        // left it (`PollScope`'s `Drop`, on return and on unwind).
        unsafe { stack::enter_poll(scope.frame, scope.parked) };
        poll()
    }

    /// Ends the frame's span or transaction, if it has not ended (`outcome` unless one was
    /// set; a failure after a poll that panicked).
    fn finish(&mut self, outcome: Outcome) {
        let outcome = if self.unwound {
            Outcome::Failure
        } else {
            outcome
        };
        self.frame.finish(outcome, &self.timer);
    }
}

/// A future that makes its frame current during each of its polls and ends it when it
/// completes (or is dropped). Nothing is held across the polls on the thread.
#[derive(Debug)]
pub struct Instrumented<F, H = NoHook> {
    fut: F,
    state: FrameState<H>,
}

impl<F, H> Instrumented<F, H> {
    pub(super) fn with_hook(fut: F, frame: Frame, hook: H) -> Self {
        Instrumented {
            fut,
            state: FrameState::new(frame, Some(hook)),
        }
    }

    /// The frame outlives the future's completion, until [`Instrumented::take_pending_end`].
    #[cfg(apm_server)]
    pub(super) fn deferring_end(mut self) -> Self {
        self.state.defer_end = true;
        self
    }

    /// After the future completed (bound with [`Transaction::bind_until_handed_over`](super::handles::Transaction::bind_until_handed_over)): its
    /// transaction, still open, to be ended by what follows the future.
    #[cfg(apm_server)]
    pub(crate) fn take_pending_end(self: Pin<&mut Self>) -> PendingEnd {
        debug_assert!(
            self.state.defer_end && self.state.hook.is_none(),
            "only a future bound until handed over, once completed, hands its transaction over"
        );
        // SAFETY: only the frame's state is moved, never the pinned `fut`.
        let state = unsafe { &mut self.get_unchecked_mut().state };
        PendingEnd(FrameState {
            frame: std::mem::replace(&mut state.frame, Frame::EMPTY),
            hook: None,
            parked: std::mem::take(&mut state.parked),
            timer: state.timer,
            unwound: state.unwound,
            defer_end: false,
        })
    }
}

/// A transaction whose future has completed and whose end waits for what follows it (an HTTP
/// response's body): makes it current while that is polled, and ends it when dropped.
#[cfg(apm_server)]
#[derive(Debug)]
pub(crate) struct PendingEnd(FrameState);

#[cfg(apm_server)]
impl PendingEnd {
    /// Runs `poll` with the transaction current on this thread.
    #[inline]
    pub(crate) fn run<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        self.0.run(poll)
    }

    /// Ends the transaction now.
    pub(crate) fn end(self) {}
}

#[cfg(apm_server)]
impl Drop for PendingEnd {
    fn drop(&mut self) {
        self.0.finish(Outcome::Unknown);
    }
}

/// Wraps `fut` so that it runs inside `frame`.
pub(super) fn bind<F: Future>(fut: F, frame: Frame) -> Instrumented<F> {
    Instrumented::with_hook(fut, frame, NoHook)
}

/// Leaves the frame when a poll returns or unwinds, keeping what is still open above it.
struct PollScope<'a> {
    frame: &'a PendingPoll,
    parked: &'a mut Parked,
    unwound: &'a mut bool,
}

impl Drop for PollScope<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the scope's frame, entered by `FrameState::run` and still in its scope.
        unsafe { stack::leave_poll(self.frame, self.parked) };
        if std::thread::panicking() {
            *self.unwound = true;
        }
    }
}

impl<F: Future, H: OutcomeHook<F::Output>> Future for Instrumented<F, H> {
    type Output = F::Output;

    // Inlined into the caller's state machine: out of line, each poll was a call into a large
    // function that saved and restored every callee-saved register (BENCHMARKS.md §10c).
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved, and `Drop` does not touch
        // it. The other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        let poll = this.state.run(|| fut.poll(cx));
        if let Poll::Ready(out) = &poll {
            let outcome = this
                .state
                .hook
                .take()
                .map_or(Outcome::Unknown, |h| h.outcome(out));
            if !this.state.defer_end {
                this.state.finish(outcome);
            }
        }
        poll
    }
}

impl<F, H> Drop for Instrumented<F, H> {
    fn drop(&mut self) {
        // Dropped before completion (cancelled, or after a poll that panicked), or completed
        // with its end deferred and never handed over.
        self.state.finish(Outcome::Unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns `Pending` twice, then `Ready`; notes, at each poll, how many references the
    /// current transaction has.
    struct Noting<'a>(&'a mut Vec<usize>);

    impl Future for Noting<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
            let refs = stack::with_current(|txn, _| Arc::strong_count(txn)).unwrap_or(0);
            self.0.push(refs);
            if self.0.len() == 3 {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_poll_takes_no_reference_to_its_transaction() {
        let txn = TxnShared::for_tests(true);
        let mut seen = Vec::new();
        {
            let frame = Frame::from_context(Some((Arc::clone(&txn), txn.id)));
            let mut fut = std::pin::pin!(bind(Noting(&mut seen), frame));
            let mut cx = TaskContext::from_waker(std::task::Waker::noop());
            while fut.as_mut().poll(&mut cx).is_pending() {}
        }
        // This test's reference and the future's: none taken for a poll.
        assert_eq!(seen, [2, 2, 2]);
        assert_eq!(Arc::strong_count(&txn), 1);
    }

    fn context_of(txn: &Arc<TxnShared>) -> Frame {
        Frame::from_context(Some((Arc::clone(txn), txn.id)))
    }

    /// Polls `fut` until it completes, with a waker that does nothing.
    fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    #[test]
    fn a_poll_draws_no_id() {
        let txn = TxnShared::for_tests(true);
        let mut drawn = Vec::new();
        run(bind(
            std::future::poll_fn(|cx| {
                drawn.push(crate::types::ids::drawn());
                if drawn.len() == 3 {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            }),
            context_of(&txn),
        ));
        // Between two polls: the first one's end and the second one's start.
        assert_eq!(drawn[1], drawn[0]);
        assert_eq!(drawn[2], drawn[0]);
    }

    #[test]
    fn a_poll_makes_its_transaction_current_and_gives_the_thread_back_as_it_was() {
        std::thread::spawn(|| {
            let sampled = TxnShared::for_tests(true);
            let unsampled = TxnShared::for_tests(false);
            assert!(!stack::may_record_spans());
            let inside = run(bind(
                std::future::poll_fn(|_| Poll::Ready(stack::may_record_spans())),
                context_of(&sampled),
            ));
            assert!(inside);
            assert!(!stack::may_record_spans());
            // A future of an unsampled transaction polled inside a sampled one.
            let token = stack::push_owner(
                Arc::clone(&sampled),
                sampled.id,
                ChildTimer::default(),
                true,
            );
            assert!(stack::may_record_spans());
            let inside = run(bind(
                std::future::poll_fn(|_| {
                    Poll::Ready((stack::may_record_spans(), stack::with_current(|t, _| t.id)))
                }),
                context_of(&unsampled),
            ));
            assert_eq!(inside, (false, Some(unsampled.id)));
            assert!(stack::may_record_spans());
            assert_eq!(stack::with_current(|t, _| t.id), Some(sampled.id));
            stack::pop(token.unwrap(), None);
            assert!(!stack::may_record_spans());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_poll_that_looks_at_nothing_pushes_nothing() {
        std::thread::spawn(|| {
            let txn = TxnShared::for_tests(true);
            let frame = Frame::from_context(Some((Arc::clone(&txn), 42)));
            let inside = run(bind(
                std::future::poll_fn(|_| {
                    Poll::Ready((
                        stack::pushed_ids(),
                        stack::with_current(|t, parent| (t.id, parent)),
                        stack::may_record_spans(),
                    ))
                }),
                frame,
            ));
            // Current for what asks, and nothing pushed.
            assert_eq!(inside, (vec![], Some((txn.id, 42)), true));
            assert_eq!(stack::with_current(|t, _| t.id), None);
            assert!(!stack::may_record_spans());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pending_frames_are_pushed_outermost_first_when_the_stack_is_looked_at() {
        std::thread::spawn(|| {
            let outer_txn = TxnShared::for_tests(true);
            let inner_txn = TxnShared::for_tests(false);
            let below =
                stack::push_owner(Arc::clone(&outer_txn), 1, ChildTimer::default(), true).unwrap();
            let seen = run(bind(
                async {
                    let before = stack::pushed_ids();
                    let inner = bind(
                        std::future::poll_fn(|_| {
                            let pending = stack::pushed_ids();
                            // Looks at the stack: both frames are pushed, the outer one first.
                            stack::error_captured_here();
                            Poll::Ready((pending, stack::pushed_ids(), stack::may_record_spans()))
                        }),
                        Frame::from_context(Some((Arc::clone(&inner_txn), 3))),
                    );
                    let (pending, pushed, recorded) = inner.await;
                    (before, pending, pushed, recorded, stack::pushed_ids())
                },
                Frame::from_context(Some((Arc::clone(&outer_txn), 2))),
            ));
            assert_eq!(seen.0, [1]);
            assert_eq!(seen.1, [1]);
            assert_eq!(seen.2, [1, 2, 3]);
            // The inner frame's transaction is not sampled.
            assert!(!seen.3);
            // The inner frame left, the outer one still pushed until its own poll leaves.
            assert_eq!(seen.4, [1, 2]);
            assert_eq!(stack::pushed_ids(), [1]);
            assert!(stack::may_record_spans());
            stack::pop(below, None);
            assert_eq!(stack::pushed_ids(), Vec::<u64>::new());
            assert!(!stack::may_record_spans());
            // No reference was taken for the frames, pushed or not.
            assert_eq!(Arc::strong_count(&inner_txn), 1);
            assert_eq!(Arc::strong_count(&outer_txn), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn polls_that_do_not_nest_leave_no_pending_frame_behind() {
        std::thread::spawn(|| {
            let (a_txn, b_txn) = (TxnShared::for_tests(true), TxnShared::for_tests(true));
            let (mut a_timer, mut b_timer) = (ChildTimer::default(), ChildTimer::default());
            let (mut a_parked, mut b_parked) = (Parked::default(), Parked::default());
            let a = PendingPoll::new(&a_txn, 1, 11, &raw mut a_timer);
            // SAFETY: the frames, their transactions and timers outlive their polls here.
            unsafe { stack::enter_poll(&a, &mut a_parked) };
            // Another poll begins before the first one leaves, and outlives it (as a stackful
            // coroutine suspended inside the first poll would make them).
            let b = PendingPoll::new(&b_txn, 2, 22, &raw mut b_timer);
            unsafe { stack::enter_poll(&b, &mut b_parked) };
            assert_eq!(stack::with_current(|_, id| id), Some(2));
            unsafe { stack::leave_poll(&a, &mut a_parked) };
            // The second frame is still the current one, and no longer leads to the first.
            assert_eq!(stack::with_current(|_, id| id), Some(2));
            unsafe { stack::leave_poll(&b, &mut b_parked) };
            assert_eq!(stack::with_current(|_, id| id), None);
            // Nothing of them is pushed by a look at the stack.
            stack::error_captured_here();
            assert_eq!(stack::pushed_ids(), Vec::<u64>::new());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_poll_entry_parked_by_an_entry_below_it_keeps_its_own_reference() {
        let txn = TxnShared::for_tests(true);
        // Stands for a bridged span entered before the poll and exited inside it: leaving it
        // parks what is above it, the poll's entry among them.
        let below = stack::push_owner(Arc::clone(&txn), 7, ChildTimer::default(), true).unwrap();
        let mut parked = Vec::new();
        run(bind(
            std::future::poll_fn(|_| {
                parked = stack::leave(below).0;
                Poll::Ready(())
            }),
            context_of(&txn),
        ));
        // The future is gone with its reference: the parked entry holds one of its own.
        assert_eq!(parked.len(), 1);
        assert_eq!(Arc::strong_count(&txn), 2);
        drop(parked);
        assert_eq!(Arc::strong_count(&txn), 1);
        assert_eq!(stack::with_current(|t, id| (t.id, id)), None);
    }

    #[test]
    fn an_instrumented_future_adds_at_most_twelve_words_to_what_it_wraps() {
        // A future is moved when it is awaited or spawned: what the frame adds is copied each
        // time (a span's copy of its transaction's ids made it 20 words and 16-byte aligned).
        use std::mem::{align_of, size_of};
        type Wrapped = std::future::Ready<u64>;
        let added = size_of::<Instrumented<Wrapped>>() - size_of::<Wrapped>();
        assert!(added <= 12 * 8, "an instrumented future adds {added} bytes");
        assert_eq!(align_of::<Instrumented<Wrapped>>(), 8);
    }
}
