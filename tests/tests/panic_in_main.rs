//! A panic on the main thread ends the process: the panic hook sends its error before that,
//! although nothing else flushes (the agent handle is leaked, as in a `static`).
//!
//! The test runs itself again as a child process (its `main` is the real main thread).

mod common;

use std::process::Command;

use apm_tests::MockServer;

const CHILD: &str = "APM_PANIC_IN_MAIN_SERVER";

fn main() {
    if let Ok(url) = std::env::var(CHILD) {
        child(&url);
        return;
    }
    let server = MockServer::start();
    let status = Command::new(std::env::current_exe().expect("the test binary"))
        .env(CHILD, server.url())
        .status()
        .expect("the child ran");
    assert_eq!(status.code(), Some(101), "the child ends by its panic");
    let errors: Vec<serde_json::Value> =
        server.with_recorded(|r| r.events_of("error").cloned().collect());
    assert_eq!(
        errors.len(),
        1,
        "the panic's error arrived before the process ended"
    );
    let e = &errors[0];
    assert_eq!(e["exception"]["handled"], false);
    assert_eq!(e["exception"]["message"], "the ledger does not balance");
    assert_eq!(e["transaction"]["name"], "close books");
    common::validate_all(&server);
    println!("panic_in_main: ok");
}

fn child(url: &str) {
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("apm-tests")
            .server_url(url)
            .build(),
    );
    assert!(agent.is_running());
    std::mem::forget(agent);
    assert!(apm::install_panic_hook());
    let _t = apm::start_transaction("close books", "job");
    panic!("the ledger does not balance");
}
