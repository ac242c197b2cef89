//! `crate = ..`: the generated code refers to `apm` through the given path, for users who
//! rename the dependency (`my_apm = { package = "apm-agent", .. }` in Cargo.toml).
//!
//! What works: any path that resolves where the function is written. Here `apm` is aliased
//! with a `use` at the crate root, so `crate = my_apm` works in the root module, and
//! `crate = crate::my_apm` (or `crate = "crate::my_apm"`) works from any module. A renamed
//! dependency is in the extern prelude, so `crate = my_apm` works everywhere for it.
#![deny(warnings)]

use apm as my_apm;

// The real `apm` hidden at the root: only the `crate` override can find it.
#[allow(dead_code)]
mod hide {}

#[my_apm::span(crate = my_apm)]
fn path_arg() -> u8 {
    1
}

#[my_apm::transaction(crate = "my_apm", name = "string path")]
fn string_arg() -> Result<u8, ()> {
    Ok(2)
}

#[my_apm::span(crate = ::apm)]
fn absolute() -> u8 {
    3
}

mod nested {
    #[crate::my_apm::span(crate = crate::my_apm)]
    pub fn from_module() -> Result<u8, ()> {
        Ok(4)
    }

    #[crate::my_apm::transaction(crate = "crate::my_apm")]
    pub async fn from_module_async() -> Result<u8, ()> {
        Ok(5)
    }
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn main() {
    assert_eq!(path_arg(), 1);
    assert_eq!(string_arg(), Ok(2));
    assert_eq!(absolute(), 3);
    assert_eq!(nested::from_module(), Ok(4));
    assert_eq!(block_on(nested::from_module_async()), Ok(5));
}
