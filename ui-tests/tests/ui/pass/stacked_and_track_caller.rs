//! Several attributes on one function, and `#[track_caller]` functions (whose `Result` body is
//! not moved into a closure, so `Location::caller()` is still the caller's).
#![deny(warnings)]

use std::future::Future;
use std::panic::Location;

#[apm::transaction(name = "job")]
#[apm::span(name = "step")]
fn stacked(x: u8) -> Result<u8, String> {
    #![allow(clippy::needless_return)]
    if x == 0 {
        return Err("zero".into());
    }
    Ok(x)
}

#[apm::span]
#[apm::span]
async fn stacked_async(x: u8) -> u8 {
    x
}

#[apm::span]
#[track_caller]
fn caller_line() -> Result<u32, ()> {
    Ok(Location::caller().line())
}

#[track_caller]
#[apm::span]
fn caller_line_plain() -> u32 {
    Location::caller().line()
}

fn main() {
    assert_eq!(stacked(1), Ok(1));
    assert_eq!(stacked(0), Err("zero".into()));
    let fut = stacked_async(2);
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert_eq!(fut.as_mut().poll(&mut cx), std::task::Poll::Ready(2));
    let line = line!();
    assert_eq!(caller_line(), Ok(line + 1));
    assert_eq!(caller_line_plain(), line + 2);
}
