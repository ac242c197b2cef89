//! `apm::log` capturing at debug level: what the agent's own threads log (the HTTP client logs
//! every request at debug) is never sent as an error, which would make each request send
//! another. A file of its own: a process has one logger.

mod common;

use common::agent;
use log::{LevelFilter, Log, Metadata, Record};

struct Silent;

impl Log for Silent {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn log(&self, _: &Record<'_>) {}
    fn flush(&self) {}
}

#[test]
fn records_logged_on_the_agent_s_threads_are_not_captured() {
    apm::log::ApmLogger::new(Silent, LevelFilter::Off)
        .capture_level(Some(log::Level::Trace))
        .install()
        .expect("the first logger");
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("logging", "job");
        log::debug!(target: "app", "from the application");
    }
    // Three requests: the HTTP client logs on the transport thread during each.
    for _ in 0..3 {
        h.flush();
    }
    let errors = h.errors();
    let loggers: Vec<_> = errors
        .iter()
        .map(|e| e["log"]["logger_name"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(loggers, ["app"], "{errors:#?}");
    h.finish();
}
