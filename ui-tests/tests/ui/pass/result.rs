//! `Result` returns: `?`, early `return`, `.into()` and `Box<dyn Error>` inference, aliases,
//! `impl Trait` inside the `Result`, every path keeps its value.
#![deny(warnings)]

use std::fmt::Display;
use std::io;

#[derive(Debug, PartialEq)]
struct MyError(String);

impl From<std::num::ParseIntError> for MyError {
    fn from(e: std::num::ParseIntError) -> Self {
        MyError(e.to_string())
    }
}

impl From<&str> for MyError {
    fn from(e: &str) -> Self {
        MyError(e.to_owned())
    }
}

#[apm::span]
fn parse(input: &str) -> Result<i64, MyError> {
    if input.is_empty() {
        return Err(MyError("empty".into()));
    }
    let n: i64 = input.trim().parse()?;
    if n < 0 {
        Err("negative")?;
    }
    Ok(n * 2)
}

#[apm::transaction]
fn io_alias(fail: bool) -> io::Result<u8> {
    if fail {
        return Err(io::Error::other("nope"));
    }
    Ok(1)
}

type AppResult<T> = std::result::Result<T, MyError>;
mod app {
    pub type Result<T> = std::result::Result<T, super::MyError>;
}

#[apm::span]
fn module_alias(x: u8) -> app::Result<u8> {
    let y = u8::try_from(u16::from(x) * 2).map_err(|_| super_error())?;
    Ok(y)
}

fn super_error() -> MyError {
    MyError("overflow".into())
}

// Not named `Result`: a plain function, no closure.
#[apm::span]
fn plain_alias() -> AppResult<()> {
    Ok(())
}

#[apm::span]
fn boxed(input: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = input.parse()?;
    if n == 0 {
        return Err("zero".into());
    }
    Ok(n)
}

#[apm::span]
fn displayable(ok: bool) -> Result<impl Display, String> {
    if !ok {
        return Err("no".to_owned());
    }
    Ok(42)
}

#[apm::span]
fn unit_result() -> Result<(), MyError> {
    Ok(())
}

#[apm::span]
fn borrowed<'a>(items: &'a [String], i: usize) -> Result<&'a str, MyError> {
    items
        .get(i)
        .map(String::as_str)
        .ok_or(MyError("oob".into()))
}

#[apm::span]
fn elided(items: &[u8]) -> Result<&u8, MyError> {
    items.first().ok_or_else(|| MyError("empty".into()))
}

#[apm::span]
fn consumes(v: Vec<u8>) -> Result<Vec<u8>, MyError> {
    let mut v = v;
    v.push(1);
    Ok(v)
}

#[apm::span]
fn moves_out(s: String) -> Result<String, MyError> {
    Ok(s)
}

// One-line bodies: the user's braces must not trip `unused_braces` once nested.
#[rustfmt::skip]
#[apm::span]
fn one_line(x: u8) -> Result<u8, ()> { Ok(x) }

#[apm::span]
fn diverging_result() -> Result<u8, MyError> {
    panic!("inside")
}

fn main() {
    assert_eq!(parse("21"), Ok(42));
    assert_eq!(parse(""), Err(MyError("empty".into())));
    assert_eq!(parse("-1"), Err(MyError("negative".into())));
    assert!(matches!(parse("x"), Err(MyError(_))));
    assert_eq!(io_alias(false).unwrap(), 1);
    assert_eq!(io_alias(true).unwrap_err().to_string(), "nope");
    assert_eq!(module_alias(3), Ok(6));
    assert_eq!(module_alias(200), Err(MyError("overflow".into())));
    assert_eq!(plain_alias(), Ok(()));
    assert_eq!(boxed("3").unwrap(), 3);
    assert_eq!(boxed("0").unwrap_err().to_string(), "zero");
    assert!(boxed("z").is_err());
    assert_eq!(displayable(true).unwrap().to_string(), "42");
    assert!(displayable(false).is_err());
    assert_eq!(unit_result(), Ok(()));
    assert_eq!(one_line(1), Ok(1));
    let items = vec!["a".to_owned()];
    assert_eq!(borrowed(&items, 0), Ok("a"));
    assert_eq!(elided(&[9]), Ok(&9));
    assert_eq!(consumes(vec![0]), Ok(vec![0, 1]));
    assert_eq!(moves_out("s".into()), Ok("s".to_owned()));
    std::panic::set_hook(Box::new(|_| {}));
    assert!(std::panic::catch_unwind(diverging_result).is_err());
    let _ = std::panic::take_hook();
}
