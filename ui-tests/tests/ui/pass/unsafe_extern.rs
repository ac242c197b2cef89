//! `unsafe fn`, `extern "C" fn`, `unsafe extern "C" fn`, with and without `Result`.
#![deny(warnings, unsafe_op_in_unsafe_fn)]

/// # Safety
/// `p` must be valid for reads.
#[apm::span]
unsafe fn read(p: *const u32) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { *p }
}

/// # Safety
/// `p` must be valid for reads or null.
#[apm::span]
unsafe fn try_read(p: *const u32) -> Result<u32, &'static str> {
    if p.is_null() {
        return Err("null");
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { *p })
}

#[apm::span]
extern "C" fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[apm::transaction]
#[allow(improper_ctypes_definitions)]
pub extern "C" fn c_result(ok: bool) -> Result<u8, u8> {
    if ok {
        Ok(1)
    } else {
        Err(2)
    }
}

/// # Safety
/// `p` must be valid for reads.
#[apm::span]
unsafe extern "C" fn both(p: *const u32) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { read(p) }
}

mod legacy {
    // Without `unsafe_op_in_unsafe_fn`, the body of an `unsafe fn` is an unsafe context,
    // also inside the closure of the `Result` path.
    #![allow(unsafe_op_in_unsafe_fn)]

    #[apm::span]
    pub unsafe fn deref(p: *const u32) -> Result<u32, ()> {
        Ok(*p)
    }

    #[apm::span]
    pub unsafe fn deref_plain(p: *const u32) -> u32 {
        *p
    }
}

fn main() {
    let x = 5u32;
    // SAFETY: `&x` is valid.
    unsafe {
        assert_eq!(read(&x), 5);
        assert_eq!(try_read(&x), Ok(5));
        assert_eq!(try_read(std::ptr::null()), Err("null"));
        assert_eq!(both(&x), 5);
        assert_eq!(legacy::deref(&x), Ok(5));
        assert_eq!(legacy::deref_plain(&x), 5);
    }
    assert_eq!(add(1, 2), 3);
    let f: extern "C" fn(u32, u32) -> u32 = add;
    assert_eq!(f(2, 2), 4);
    assert_eq!(c_result(true), Ok(1));
    assert_eq!(c_result(false), Err(2));
}
