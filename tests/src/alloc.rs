//! A counting global allocator for the tests that show a path allocates nothing: it counts the
//! allocations of the threads that ask, so that the agent's own threads do not disturb the
//! count. A test binary installs it with
//! `#[global_allocator] static GLOBAL: apm_tests::alloc::Counting = apm_tests::alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the allocations of threads inside [`count_allocations`].
#[derive(Debug)]
pub struct Counting;

thread_local! {
    // `const` and without a destructor: safe to touch from inside the allocator.
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
    /// This thread's count: what the thread that asks allocated, whatever other threads do
    /// meanwhile (a count shared by all threads would add those of any other thread counting
    /// at the same time).
    static COUNTED: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNT_HERE.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNTED.try_with(|c| c.set(c.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts the allocations (and reallocations) this thread makes until [`Counter::stop`], in a
/// binary whose global allocator is [`Counting`]; across `.await` too, on a runtime that keeps
/// the future on this thread.
#[derive(Debug)]
pub struct Counter {
    before: u64,
}

impl Counter {
    pub fn start() -> Counter {
        let before = COUNTED.with(Cell::get);
        COUNT_HERE.with(|c| c.set(true));
        Counter { before }
    }

    pub fn stop(self) -> u64 {
        COUNT_HERE.with(|c| c.set(false));
        COUNTED.with(Cell::get) - self.before
    }
}

/// The allocations (and reallocations) `f` makes on this thread.
pub fn count_allocations(f: impl FnOnce()) -> u64 {
    let counter = Counter::start();
    f();
    counter.stop()
}
