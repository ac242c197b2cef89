//! With the `enable` feature off (`cargo test -p apm-agent --no-default-features`), every
//! macro leaves the function as written, `capture_error!` only type-checks its argument, and
//! the API does nothing: no threads, no network.
#![cfg(not(feature = "enable"))]

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

#[apm::transaction(name = "job", kind = "custom")]
fn job(x: u32) -> Result<u32, String> {
    let y = step(x)?;
    Ok(y + 1)
}

#[apm::span(kind = "db", subtype = "postgresql")]
fn step(x: u32) -> Result<u32, String> {
    if x == 0 {
        return Err("zero".into());
    }
    Ok(x * 2)
}

#[apm::span]
async fn later(x: u32) -> u32 {
    x
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn instrumented_functions_behave_as_written() {
    assert_eq!(job(2), Ok(5));
    assert_eq!(job(0), Err("zero".into()));
    let fut = later(3);
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert_eq!(fut.as_mut().poll(&mut cx), std::task::Poll::Ready(3));
}

#[test]
fn the_api_does_nothing_and_starts_no_thread_and_no_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let agent = apm::init_with(
        apm::Config::builder()
            .server_url(format!("http://{}", listener.local_addr().unwrap()))
            .build(),
    );
    assert!(!agent.is_running());
    let t = apm::start_transaction("t", "custom");
    let mut s = apm::start_span("s", "app");
    s.set_label("k", 1);
    assert!(!s.is_recording() && t.id().is_none());
    apm::set_label("k", "v");
    let ctx = apm::Context::current();
    assert!(ctx.is_empty());
    drop((s, t));
    assert!(!agent.flush(Duration::from_millis(10)));
    drop(agent);
    assert!(
        thread_names().iter().all(|n| !n.starts_with("apm-")),
        "{:?}",
        thread_names()
    );
    assert!(
        listener.accept().is_err(),
        "nothing connected to the server"
    );
}

#[test]
fn capture_error_type_checks_but_does_not_evaluate() {
    let mut evaluated = false;
    let mut make = || {
        evaluated = true;
        std::io::Error::other("never built")
    };
    apm::capture_error!(make());
    let err = std::io::Error::other("by reference");
    apm::capture_error!(&err);
    apm::capture_error!(err);
    let _ = &mut make;
    assert!(!evaluated);
}
