//! Software prefetch: asking the processor for memory a little before it is read, so that the
//! misses of many independent reads overlap instead of keeping a thread waiting one by one.
//! On the transport thread, records written on other cores and the lines of its memories of
//! recent ids are each a miss (the request bodies sweep its caches).

/// The size of a cache line on the processors the agent runs on.
const LINE: usize = 64;

/// Asks for the line that holds `at`. It reads nothing into the program, and an address that
/// is not mapped is no fault.
#[inline]
pub(crate) fn line<T>(at: *const T) {
    // SAFETY: SSE, which the instruction needs, is part of every x86_64 processor; a prefetch
    // cannot fault, even on a bad address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks for every line of `*value`.
#[inline]
pub(crate) fn lines_of<T>(value: &T) {
    let start = std::ptr::from_ref(value).cast::<u8>();
    let first = start as usize & !(LINE - 1);
    let end = start as usize + std::mem::size_of::<T>();
    let mut at = first;
    while at < end {
        line(start.wrapping_add(at - start as usize));
        at += LINE;
    }
}
