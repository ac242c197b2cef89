//! User items named like the ones the expansion uses (`Result`, `Option`, `Box`, `Future`,
//! `Pin`, `Ok`, `Some`, modules `core` and `std`) and glob imports in the body do not change
//! what the generated code refers to.
#![deny(warnings)]
#![allow(dead_code)]

mod core {}
mod std {}
mod apm {}

struct Option;
struct Box;
struct Future;
struct Pin;
struct Some;
struct Ok;
struct None;
fn drop() {}

/// A `Result` that is not `std`'s: the function goes through the `Result` path and counts as
/// a success.
#[derive(Debug, PartialEq)]
enum Result<T> {
    Good(T),
    Bad,
}

#[::apm::span]
fn custom_result(x: u8) -> Result<u8> {
    if x == 0 {
        return Result::Bad;
    }
    Result::Good(x)
}

#[::apm::span]
fn bare_result_name() -> self::Result<()> {
    Result::Bad
}

#[::apm::span]
fn std_result(x: u8) -> ::std::result::Result<u8, ()> {
    if x == 0 {
        ::std::result::Result::Err(())
    } else {
        ::std::result::Result::Ok(x)
    }
}

type Foo = ();
enum Bar {
    Foo,
}

#[::apm::span]
fn glob_shadows_return_type() -> Foo {
    // The glob brings `Bar::Foo` into the body's scope: the generated code must not restate
    // `Foo` inside it.
    #[allow(unused_imports)]
    use Bar::*;
}

#[::apm::span]
async fn async_custom_result() -> Result<u8> {
    Result::Good(1)
}

#[::apm::span]
async fn async_glob() -> Foo {
    #[allow(unused_imports)]
    use Bar::*;
}

fn block_on<F: ::core::future::Future>(fut: F) -> F::Output {
    use ::std::task::{Context, Poll, Waker};
    let mut fut = ::std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn main() {
    assert_eq!(custom_result(1), Result::Good(1));
    assert_eq!(custom_result(0), Result::Bad);
    assert_eq!(bare_result_name(), Result::Bad);
    assert_eq!(std_result(1), ::std::result::Result::Ok(1));
    glob_shadows_return_type();
    assert_eq!(block_on(async_custom_result()), Result::Good(1));
    block_on(async_glob());
}
