//! The expansions compile without warnings under strict lint levels. `cargo clippy
//! --all-targets` checks this file with clippy (trybuild's `pass/` cases are not seen by
//! clippy); `cargo test` checks it with rustc's own lints.
#![deny(warnings, unused_qualifications, unused_results, rust_2018_idioms)]
#![deny(clippy::all, clippy::pedantic, clippy::nursery)]
// Lints about the user's own code style, not about the expansion.
#![allow(clippy::missing_errors_doc, clippy::missing_panics_doc)]

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use apm_tests::block_on;

#[apm::transaction]
fn unit() {}

#[apm::span(name = "one line", kind = "app", subtype = "internal", action = "run")]
#[rustfmt::skip]
fn one_line(x: u8) -> u8 { x }

#[rustfmt::skip]
#[apm::span]
fn result_one_line(x: u8) -> Result<u8, String> { Ok(x) }

#[rustfmt::skip]
#[apm::span]
async fn async_one_line(x: u8) -> Result<u8, String> { Ok(x) }

#[apm::span]
fn result_unit() -> Result<(), String> {
    Ok(())
}

#[apm::span]
fn result_question(s: &str) -> Result<u8, std::num::ParseIntError> {
    let n: u8 = s.parse()?;
    if n == 0 {
        return Ok(1);
    }
    Ok(n)
}

#[apm::span]
fn result_impl(ok: bool) -> Result<impl Display, String> {
    if ok {
        Ok(1)
    } else {
        Err("no".to_owned())
    }
}

#[apm::span]
fn diverges() -> ! {
    panic!("expected")
}

#[apm::span]
fn result_diverges() -> Result<u8, String> {
    panic!("expected")
}

#[must_use]
#[apm::span]
fn must_use() -> u8 {
    1
}

#[derive(Default)]
struct S {
    v: Vec<u8>,
}

impl S {
    #[apm::span]
    fn len(&self) -> usize {
        self.v.len()
    }

    #[apm::span]
    fn first_mut(&mut self) -> Result<&mut u8, String> {
        self.v.first_mut().ok_or_else(|| "empty".to_owned())
    }

    #[apm::span]
    fn into_inner(self) -> Result<Vec<u8>, String> {
        Ok(self.v)
    }

    #[apm::span]
    async fn push(&mut self, b: u8) -> Result<usize, String> {
        self.v.push(b);
        Ok(self.v.len())
    }
}

#[apm::span]
async fn async_unit() {}

#[apm::span]
async fn async_value(x: u8) -> u8 {
    x
}

#[apm::span]
async fn async_result(s: &str) -> Result<u8, std::num::ParseIntError> {
    let n = s.parse()?;
    Ok(n)
}

#[apm::span]
fn boxed_future(x: u8) -> Pin<Box<dyn Future<Output = Result<u8, String>> + Send>> {
    Box::pin(async move { Ok(x) })
}

#[apm::span]
fn boxed_future_unit() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async {})
}

#[apm::span]
fn impl_future(x: u8) -> impl Future<Output = u8> {
    async move { x }
}

#[test]
fn expansions_are_lint_clean() {
    unit();
    assert_eq!(one_line(1), 1);
    assert_eq!(result_one_line(1), Ok(1));
    assert_eq!(block_on(async_one_line(1)), Ok(1));
    assert_eq!(result_unit(), Ok(()));
    assert_eq!(result_question("0"), Ok(1));
    assert_eq!(result_impl(true).map(|d| d.to_string()), Ok("1".to_owned()));
    assert_eq!(must_use(), 1);
    let mut s = S::default();
    assert_eq!(block_on(s.push(4)), Ok(1));
    *s.first_mut().unwrap() += 1;
    assert_eq!(s.len(), 1);
    assert_eq!(s.into_inner(), Ok(vec![5]));
    block_on(async_unit());
    assert_eq!(block_on(async_value(2)), 2);
    assert_eq!(block_on(async_result("3")), Ok(3));
    assert_eq!(block_on(boxed_future(4)), Ok(4));
    block_on(boxed_future_unit());
    assert_eq!(block_on(impl_future(5)), 5);
    std::panic::set_hook(Box::new(|_| {}));
    assert!(std::thread::spawn(|| diverges()).join().is_err());
    assert!(std::thread::spawn(result_diverges).join().is_err());
    drop(std::panic::take_hook());
}
