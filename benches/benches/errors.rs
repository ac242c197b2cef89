//! `capture_error!` on the application thread: the stack taken as raw return addresses, the
//! event staged; symbols are looked up on the transport thread, off this measure.
//!
//! Before measuring, it checks that the stack trace sent names the function that captured the
//! error: in this profile (optimised, with debug info) as in the tests' debug builds.
//!
//! `cargo bench -p apm-benches --bench errors`

use std::hint::black_box;
use std::time::Duration;

use apm_tests::MockServer;
use criterion::{criterion_group, criterion_main, Criterion};

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}
impl std::error::Error for Declined {}

#[inline(never)]
fn capture() {
    apm::capture_error!(black_box(Declined));
}

fn agent(server: &MockServer, stack_trace_limit: Option<usize>) -> apm::Agent {
    apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(server.url())
            .max_queue_size(64 * 1024)
            .stack_trace_limit(stack_trace_limit)
            .build(),
    )
}

/// The first frame of a captured error is the function that captured it, inlined calls and
/// the agent's own frames notwithstanding.
fn check_frames(server: &MockServer) {
    let agent = agent(server, Some(50));
    {
        let _t = apm::start_transaction("check", "custom");
        capture();
    }
    agent.flush(Duration::from_secs(30));
    let errors = server.errors();
    let frames = &errors.last().expect("the error event")["exception"]["stacktrace"];
    assert_eq!(frames[0]["function"], "errors::capture", "{frames:#}");
    assert_eq!(frames[0]["library_frame"], false, "{frames:#}");
}

fn errors(c: &mut Criterion) {
    let server = MockServer::start();
    check_frames(&server);
    server.set_keep_payloads(false);
    let mut g = c.benchmark_group("capture_error");
    for (name, limit) in [("stack_50_frames", Some(50)), ("no_stack", Some(0))] {
        let agent = agent(&server, limit);
        g.bench_function(name, |b| {
            let _t = apm::start_transaction("bench", "custom");
            b.iter(capture)
        });
        agent.flush(Duration::from_secs(30));
    }
    g.finish();
}

criterion_group!(benches, errors);
criterion_main!(benches);
