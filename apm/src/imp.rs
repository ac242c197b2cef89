//! The runtime (feature `enable`). TEMPORARY: no-op stand-in with the contract generated code
//! calls, until the real runtime lands.
#[path = "noop.rs"]
mod noop_for_now;
pub(crate) use noop_for_now::*;

pub(crate) mod private {
    use crate::__private::{Site, SpanMeta, TransactionMeta};
    use crate::Outcome;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A span or transaction guard entered on this thread; ends on drop.
    #[derive(Debug)]
    pub struct Guard(());
    impl Guard {
        #[inline]
        pub fn set_outcome(&mut self, _outcome: Outcome) {}
    }
    #[inline]
    pub fn enter_span(_meta: &'static SpanMeta) -> Guard {
        Guard(())
    }
    #[inline]
    pub fn enter_transaction(_meta: &'static TransactionMeta) -> Guard {
        Guard(())
    }
    /// A started, not entered, span or transaction for a future to carry.
    #[derive(Debug)]
    pub struct Frame(());
    #[inline]
    pub fn start_span(_meta: &'static SpanMeta) -> Frame {
        Frame(())
    }
    #[inline]
    pub fn start_transaction(_meta: &'static TransactionMeta) -> Frame {
        Frame(())
    }
    /// The default outcome hook: the output does not decide the outcome.
    #[inline]
    pub fn no_outcome<T: ?Sized>(_output: &T) -> Outcome {
        Outcome::Success
    }
    /// A future that enters its frame on every poll.
    #[derive(Debug)]
    pub struct Instrumented<F, H> {
        fut: F,
        _hook: Option<H>,
    }
    impl<F: Future, H: FnOnce(&F::Output) -> Outcome> Instrumented<F, H> {
        #[inline]
        pub fn new(fut: F, _frame: Frame, hook: H) -> Self {
            Instrumented {
                fut,
                _hook: Some(hook),
            }
        }
    }
    impl<F: Future, H: FnOnce(&F::Output) -> Outcome> Future for Instrumented<F, H> {
        type Output = F::Output;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            // SAFETY: structural pinning of `fut`.
            unsafe { self.map_unchecked_mut(|s| &mut s.fut) }.poll(cx)
        }
    }
    pub fn capture_error(
        _err: &dyn std::error::Error,
        _type_name: &'static str,
        _site: &'static Site,
    ) {
    }
}
