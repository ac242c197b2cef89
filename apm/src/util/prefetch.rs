//! Software prefetch: asking the processor for memory a little before it is used, so that the
//! misses of many independent reads overlap, or arrive while other work runs, instead of
//! keeping a thread waiting one by one. Records are written on one core and read on another
//! (the application's threads and the transport thread), and the transport thread's caches are
//! swept by the request bodies: each first touch is a miss.

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
    each_line(std::ptr::from_ref(value), line);
}

/// Asks for every line of `*value` to be written: the lines arrive owned by this core, where a
/// line asked for only to be read arrives shared, and the first write to it asks the other
/// cores for it a second time. Where the processor has no `PREFETCHW`, as [`lines_of`].
#[inline]
pub(crate) fn lines_to_write<T>(value: &mut T) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        each_line(std::ptr::from_mut(value), |at| {
            // SAFETY: the instruction exists on this processor (`has_prefetchw`); a prefetch
            // reads and writes nothing the program sees, and cannot fault.
            unsafe {
                std::arch::asm!("prefetchw [{0}]", in(reg) at, options(nostack, preserves_flags));
            }
        });
        return;
    }
    lines_of(&*value);
}

/// Gives `ask` an address in each line `*value` spans, from the first byte's to the last's.
#[inline]
fn each_line<T>(value: *const T, mut ask: impl FnMut(*const u8)) {
    let start = value.cast::<u8>();
    let skew = start as usize & (LINE - 1);
    let mut offset = 0;
    while offset < skew + std::mem::size_of::<T>() {
        ask(start.wrapping_add(offset).wrapping_sub(skew));
        offset += LINE;
    }
}

/// Whether the processor has `PREFETCHW` (CPUID 8000_0001h, ECX bit 8), asked once.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;
    static HAS: AtomicU8 = AtomicU8::new(UNKNOWN);
    match HAS.load(Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let has = ask_cpuid_for_prefetchw();
            HAS.store(if has { YES } else { NO }, Relaxed);
            has
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[cold]
fn ask_cpuid_for_prefetchw() -> bool {
    use std::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86_64 processor; leaf 8000_0000h gives the highest
    // extended leaf, so 8000_0001h is asked only where it exists. (`__cpuid` is a safe function
    // in newer Rust than the oldest this crate builds with.)
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_value_is_asked_for_once() {
        #[repr(C, align(64))]
        struct Lines([u8; 320]);
        let lines = Lines([0; 320]);
        let mut asked = Vec::new();
        // Aligned: five lines. From its second byte, 319 bytes: still five, the last one's
        // last byte included.
        each_line(&lines, |at| asked.push(at as usize));
        let base = std::ptr::from_ref(&lines) as usize;
        assert_eq!(asked, (0..5).map(|i| base + 64 * i).collect::<Vec<_>>());
        asked.clear();
        each_line(lines.0[1..].as_ptr().cast::<[u8; 319]>(), |at| {
            asked.push(at as usize)
        });
        assert_eq!(asked, (0..5).map(|i| base + 64 * i).collect::<Vec<_>>());
        asked.clear();
        // 64 bytes from the middle of a line span two.
        each_line(lines.0[32..].as_ptr().cast::<[u8; 64]>(), |at| {
            asked.push(at as usize)
        });
        assert_eq!(asked, vec![base, base + 64]);
    }

    /// Linux also sets the flag on AMD processors whose CPUID bit is clear (3DNow! or long
    /// mode implies the instruction there): the kernel's flag is implied, not equal.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn prefetchw_is_found_only_where_the_kernel_finds_it() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let kernel = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|flags| flags.split_whitespace().any(|f| f == "3dnowprefetch"));
        assert!(!has_prefetchw() || kernel);
        let mut value = [0u64; 40];
        lines_to_write(&mut value);
    }
}
