//! `async fn`: free functions, methods, generics, `?`, early return, references in and out,
//! `impl Trait` and `Box<dyn Trait>` outputs; the futures stay `Send` when the body is.
#![deny(warnings)]

use std::fmt::Display;
use std::future::Future;
use std::task::{Context, Poll};

use apm_tests::block_on;

/// Returns `Pending` once (waking itself), to exercise re-polling.
struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[apm::transaction]
async fn unit() {}

#[apm::span(name = "double", kind = "app")]
async fn double(x: u32) -> u32 {
    YieldOnce(false).await;
    x * 2
}

#[apm::span]
async fn parse(s: &str) -> Result<u32, std::num::ParseIntError> {
    if s.is_empty() {
        return Ok(0);
    }
    YieldOnce(false).await;
    let n: u32 = s.parse()?;
    Ok(double(n).await)
}

#[apm::span]
async fn boxed_err(s: &str) -> Result<u32, Box<dyn std::error::Error>> {
    if s == "0" {
        return Err("zero".into());
    }
    Ok(s.parse()?)
}

#[apm::span]
async fn first<'a>(items: &'a [String]) -> Option<&'a str> {
    YieldOnce(false).await;
    items.first().map(String::as_str)
}

#[apm::span]
async fn generic<T: Display + Send>(t: T) -> String {
    YieldOnce(false).await;
    t.to_string()
}

#[apm::span]
async fn opaque(n: u8) -> impl Display {
    n + 1
}

#[apm::span]
async fn dyn_out(big: bool) -> Box<dyn Display> {
    if big {
        return Box::new(100);
    }
    Box::new("small")
}

#[apm::span]
async fn diverging_result() -> Result<u8, String> {
    panic!("inside")
}

struct Conn {
    buf: Vec<u8>,
}

impl Conn {
    #[apm::span]
    async fn len(&self) -> usize {
        YieldOnce(false).await;
        self.buf.len()
    }

    #[apm::span]
    async fn push(&mut self, b: u8) -> Result<&mut Vec<u8>, String> {
        if b == 0 {
            return Err("zero".into());
        }
        YieldOnce(false).await;
        self.buf.push(b);
        Ok(&mut self.buf)
    }

    #[apm::span]
    async fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    #[apm::span]
    async fn boxed(self: Box<Self>) -> Result<usize, ()> {
        Ok(self.buf.len())
    }
}

#[apm::transaction]
async fn handler() -> Result<usize, String> {
    let mut conn = Conn { buf: vec![1] };
    conn.push(2).await?;
    let n = conn.len().await;
    Ok(n + conn.into_buf().await.len())
}

fn main() {
    block_on(assert_send(unit()));
    assert_eq!(block_on(assert_send(double(2))), 4);
    assert_eq!(block_on(assert_send(parse("3"))), Ok(6));
    assert_eq!(block_on(parse("")), Ok(0));
    assert!(block_on(parse("x")).is_err());
    assert_eq!(block_on(boxed_err("2")).unwrap(), 2);
    assert_eq!(block_on(boxed_err("0")).unwrap_err().to_string(), "zero");
    let items = vec!["a".to_owned()];
    assert_eq!(block_on(assert_send(first(&items))), Some("a"));
    assert_eq!(block_on(assert_send(generic(5))), "5");
    assert_eq!(block_on(opaque(1)).to_string(), "2");
    assert_eq!(block_on(dyn_out(true)).to_string(), "100");
    assert_eq!(block_on(dyn_out(false)).to_string(), "small");
    // A panic goes through (the runtime records the failure itself); keep the output quiet.
    std::panic::set_hook(Box::new(|_| {}));
    assert!(std::panic::catch_unwind(|| block_on(diverging_result())).is_err());
    let _ = std::panic::take_hook();
    let mut conn = Conn { buf: vec![] };
    assert_eq!(block_on(conn.len()), 0);
    assert_eq!(block_on(conn.push(0)), Err("zero".to_owned()));
    block_on(conn.push(7)).unwrap().push(8);
    assert_eq!(conn.buf, [7, 8]);
    assert_eq!(block_on(Box::new(conn).boxed()), Ok(2));
    assert_eq!(block_on(assert_send(handler())), Ok(4));
}
