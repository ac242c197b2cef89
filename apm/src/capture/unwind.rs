//! The application thread's stack walk on x86_64 Linux: the DWARF unwind rules (`.eh_frame`)
//! of each return address are looked up once and cached, per thread, by `framehop`; later
//! walks through the same code cost a cache probe and two stack reads per frame, where
//! libgcc's `_Unwind_Backtrace` interprets the unwind tables again for every frame of every
//! walk.
//!
//! It is only ever a faster path: [`walk`] answers `None`, and the caller takes `backtrace`'s
//! walk instead, whenever it cannot vouch for the result:
//! - a return address outside the modules loaded when the first walk ran (a library opened
//!   later, code generated at run time), whose unwind rules are unknown;
//! - a read outside the part of this thread's stack in use (a stack switched by the
//!   application, or unwind rules that do not fit); no memory outside it is ever read;
//! - an unwinding error, or a stack whose bounds the thread cannot tell.
//!
//! Frame pointers are not relied upon: `framehop` guesses with them only for code without
//! unwind information inside a known module, which Rust never emits on this target (its
//! unwind tables are on whatever `panic` is) and C compilers do not by default; and even then
//! nothing outside the thread's stack in use is read.
//! The libraries' `.eh_frame_hdr` and `.eh_frame` are copied once, so that a library unloaded
//! later cannot leave the walk reading unmapped memory; the program's own, its largest, are
//! read in place.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ops::Range;
use std::sync::atomic::{AtomicPtr, Ordering::*};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};

/// The modules loaded when the first walk ran, and their unwind tables.
struct Modules {
    unwinder: UnwinderX86_64<Tables>,
    /// The code ranges of the modules, sorted by start.
    code: Vec<Range<u64>>,
}

impl Modules {
    fn contains(&self, address: u64) -> bool {
        let i = self.code.partition_point(|r| r.start <= address);
        i > 0 && self.code[i - 1].contains(&address)
    }
}

/// The modules' unwind tables once read (never freed). Not a `OnceLock`: a child forked while
/// `apm-transport` was reading them would wait forever for that thread to finish. Threads that
/// find it empty each read them; the first to publish wins.
static MODULES: AtomicPtr<Option<Modules>> = AtomicPtr::new(std::ptr::null_mut());

fn modules() -> Option<&'static Modules> {
    let mut p = MODULES.load(Acquire);
    if p.is_null() {
        let read = Box::into_raw(Box::new(load_modules()));
        p = match MODULES.compare_exchange(std::ptr::null_mut(), read, AcqRel, Acquire) {
            Ok(_) => read,
            Err(first) => {
                // SAFETY: `read` was never published.
                drop(unsafe { Box::from_raw(read) });
                first
            }
        };
    }
    // SAFETY: a published pointer is a leaked box, never freed.
    unsafe { (*p).as_ref() }
}

thread_local! {
    /// Unwind rules already looked up, by address (a fixed-size cache).
    static CACHE: RefCell<Option<Box<CacheX86_64>>> = const { RefCell::new(None) };
    /// This thread's stack, lowest and highest address: `(0, 0)` until known, `(0, 1)` when
    /// it cannot be known.
    static STACK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The current stack into `ips`, innermost first, up to the vector's capacity: an address
/// inside this function, then return addresses. `None` when the walk cannot be vouched for
/// (see the module's doc); `ips` is then to be discarded.
#[inline(never)]
pub(crate) fn walk(ips: &mut Vec<usize>) -> Option<()> {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers into outputs; touches no memory and no stack.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let modules = modules()?;
    let (low, top) = stack_bounds()?;
    // On a stack of the application's own (a coroutine's, a signal handler's), the part in
    // use is not known: no walk.
    if sp < low || sp >= top {
        return None;
    }
    CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let cache: &mut CacheX86_64 = cache.get_or_insert_with(|| Box::new(CacheX86_64::new()));
            let mut read_stack = |address: u64| -> Result<u64, ()> {
                let inside = address.is_multiple_of(8)
                    && address >= sp
                    && address.checked_add(8).is_some_and(|end| end <= top);
                if !inside {
                    return Err(());
                }
                // SAFETY: an aligned word of this thread's stack between its current top (`sp`,
                // below every frame walked) and its base: mapped and readable.
                Ok(unsafe { std::ptr::read_volatile(address as *const u64) })
            };
            let mut frames = modules.unwinder.iter_frames(
                pc,
                UnwindRegsX86_64::new(pc, sp, bp),
                cache,
                &mut read_stack,
            );
            while ips.len() < ips.capacity() {
                match frames.next() {
                    Ok(Some(frame)) => {
                        let address = frame.address();
                        // An address whose module is unknown would be unwound by guessing
                        // (frame pointers): give up instead.
                        if !modules.contains(frame.address_for_lookup()) {
                            return None;
                        }
                        ips.push(address as usize);
                    }
                    Ok(None) => break,
                    Err(_) => return None,
                }
            }
            Some(())
        })
        .ok()
        .flatten()
}

/// Reads the loaded modules' unwind tables now (the transport thread does, as it starts), so
/// that the first walk on an application thread does not.
pub(crate) fn prime() {
    let _ = modules();
}

/// This thread's stack, from `pthread_getattr_np` once per thread.
fn stack_bounds() -> Option<(u64, u64)> {
    let mut bounds = STACK.try_with(Cell::get).ok()?;
    if bounds == (0, 0) {
        bounds = query_stack().unwrap_or((0, 1));
        let _ = STACK.try_with(|c| c.set(bounds));
    }
    (bounds.1 > 1).then_some(bounds)
}

fn query_stack() -> Option<(u64, u64)> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read, and destroyed
    // once; the outputs are plain values.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut low: *mut c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut low, &mut size) == 0;
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        let low = low as u64;
        ok.then(|| Some((low, low.checked_add(size as u64)?)))
            .flatten()
    }
}

/// The modules loaded now, with a copy of their unwind tables.
#[cold]
#[inline(never)]
fn load_modules() -> Option<Modules> {
    let mut found: Vec<(Range<u64>, Module<Tables>)> = Vec::new();
    // Outside a fork: a child forked while the loader's lock is held here could never list
    // its own modules.
    crate::util::after_fork::outside_fork(|| {
        // SAFETY: the callback only reads the program headers `dl_iterate_phdr` hands it, and
        // the memory they describe as loaded, during the call.
        unsafe { libc::dl_iterate_phdr(Some(add_module), (&mut found as *mut Vec<_>).cast()) };
    });
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(code, _)| code.start);
    let mut unwinder = UnwinderX86_64::new();
    let mut code = Vec::with_capacity(found.len());
    for (range, module) in found {
        code.push(range);
        unwinder.add_module(module);
    }
    Some(Modules { unwinder, code })
}

/// `dl_iterate_phdr`'s callback: one loaded object.
unsafe extern "C" fn add_module(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: `data` is the vector `load_modules` passed; `info` is valid during the call.
    let (found, info) = unsafe {
        (
            &mut *data.cast::<Vec<(Range<u64>, Module<Tables>)>>(),
            &*info,
        )
    };
    // SAFETY: as above; the headers and the segments they describe stay loaded during the
    // call.
    if let Some(module) = unsafe { module_of(info) } {
        found.push(module);
    }
    0
}

/// A module's unwind tables: the program's own read in place (it is never unloaded), a
/// library's copied (it could be unloaded, and its memory reused).
enum Tables {
    InPlace(&'static [u8]),
    Copied(Box<[u8]>),
}

/// Needed by `ExplicitModuleSectionInfo`'s `Default`, for the sections left out.
impl Default for Tables {
    fn default() -> Self {
        Tables::InPlace(&[])
    }
}

impl std::ops::Deref for Tables {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Tables::InPlace(t) => t,
            Tables::Copied(t) => t,
        }
    }
}

/// `.eh_frame_hdr`'s `eh_frame_ptr` encoding that linkers write: PC-relative, signed 4 bytes.
const DW_EH_PE_PCREL_SDATA4: u8 = 0x1b;

/// # Safety
/// `info` describes an object loaded now, which stays loaded during the call.
unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<(Range<u64>, Module<Tables>)> {
    if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        return None;
    }
    let base = info.dlpi_addr;
    // SAFETY: `dlpi_phnum` headers at `dlpi_phdr`, by the loader's contract.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let mut text: Option<Range<u64>> = None;
    let mut hdr: Option<Range<u64>> = None;
    for h in headers {
        let range = h.p_vaddr..h.p_vaddr.checked_add(h.p_memsz)?;
        if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
            text = Some(match text {
                Some(t) => t.start.min(range.start)..t.end.max(range.end),
                None => range,
            });
        } else if h.p_type == libc::PT_GNU_EH_FRAME {
            hdr = Some(range);
        }
    }
    let (text, hdr) = (text?, hdr?);
    if hdr.end - hdr.start < 8 {
        return None;
    }
    // SAFETY: the `PT_GNU_EH_FRAME` segment is loaded, `hdr.end - hdr.start` bytes, for as
    // long as the object is: the program's until the process ends (read in place), a
    // library's at least during this call (copied, below).
    let hdr_data: &'static [u8] = unsafe {
        std::slice::from_raw_parts(
            (base + hdr.start) as *const u8,
            (hdr.end - hdr.start) as usize,
        )
    };
    if hdr_data[0] != 1 || hdr_data[1] != DW_EH_PE_PCREL_SDATA4 {
        return None;
    }
    let offset = i32::from_ne_bytes(hdr_data[4..8].try_into().ok()?);
    let eh_frame_start = (hdr.start + 4).checked_add_signed(offset.into())?;
    // `.eh_frame` runs to its zero terminator, inside the loaded segment that holds it.
    let segment_end = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD)
        .map(|h| h.p_vaddr..h.p_vaddr.saturating_add(h.p_memsz))
        .find(|r| r.contains(&eh_frame_start))?
        .end;
    let mut end = eh_frame_start;
    loop {
        if end + 4 > segment_end {
            return None;
        }
        // SAFETY: inside the loaded segment (checked above).
        let len = unsafe { std::ptr::read_unaligned((base + end) as *const u32) };
        end += 4;
        match len {
            0 => break,
            // 64-bit lengths: not written for this target's `.eh_frame`.
            u32::MAX => return None,
            n => end += u64::from(n),
        }
    }
    if end > segment_end {
        return None;
    }
    // SAFETY: `eh_frame_start..end` is inside the loaded segment (checked above), which stays
    // loaded as long as `hdr_data`'s.
    let eh_frame: &'static [u8] = unsafe {
        std::slice::from_raw_parts(
            (base + eh_frame_start) as *const u8,
            (end - eh_frame_start) as usize,
        )
    };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    // The loader names every object but the program itself, which stays mapped until the
    // process ends.
    let tables = |t: &'static [u8]| {
        if name.is_empty() {
            Tables::InPlace(t)
        } else {
            Tables::Copied(t.into())
        }
    };
    let avma = base + text.start..base + text.end;
    let sections = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(text),
        eh_frame_svma: Some(eh_frame_start..end),
        eh_frame: Some(tables(eh_frame)),
        eh_frame_hdr_svma: Some(hdr),
        eh_frame_hdr: Some(tables(hdr_data)),
        ..Default::default()
    };
    Some((avma.clone(), Module::new(name, avma, base, sections)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast walk finds the same return addresses as libgcc's, frame for frame.
    #[test]
    #[inline(never)]
    fn walk_matches_the_system_unwinder() {
        let mut fast = Vec::with_capacity(256);
        assert!(walk(&mut fast).is_some(), "the fast walk gave up");
        let mut slow = Vec::new();
        backtrace::trace(|f| {
            slow.push(f.ip() as usize);
            true
        });
        // The system unwinder ends with a null address.
        while slow.last() == Some(&0) {
            slow.pop();
        }
        // The first address is inside `walk`, the second in this function (after the call to
        // `walk`, where the system unwinder's is after its own call); the rest are this
        // function's callers, which both must find alike, down to the thread's start.
        let callers = &fast[2..];
        assert!(callers.len() > 3, "too few frames: {fast:x?}");
        assert!(slow.ends_with(callers), "{fast:x?} against {slow:x?}");
    }

    /// `stack_trace_limit` bounds the walk: it stops at the vector's capacity.
    #[test]
    fn walk_stops_at_capacity() {
        let mut ips = Vec::with_capacity(2);
        assert!(walk(&mut ips).is_some());
        assert_eq!(ips.len(), 2);
    }
}
