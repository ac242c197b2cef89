//! `apm::log`: log records at or above the capture level become error events, and every line
//! the wrapped logger writes inside a transaction carries the ids of the events. A file of its
//! own: a process has one logger.

mod common;

use common::agent;
use log::kv::{self, Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

/// A record's key-values, as text.
type KeyValues = Vec<(String, String)>;

/// What the wrapped logger wrote: the message and the key-values.
static LINES: Mutex<Vec<(String, KeyValues)>> = Mutex::new(Vec::new());

struct Inner;

struct Collect(Vec<(String, String)>);

impl<'kvs> VisitSource<'kvs> for Collect {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        self.0.push((key.as_str().to_owned(), value.to_string()));
        Ok(())
    }
}

impl Log for Inner {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !metadata.target().starts_with("apm")
    }
    fn log(&self, record: &Record<'_>) {
        let mut kvs = Collect(Vec::new());
        record.key_values().visit(&mut kvs).expect("visited");
        LINES.lock().push((record.args().to_string(), kvs.0));
    }
    fn flush(&self) {}
}

fn line(message: &str) -> KeyValues {
    LINES
        .lock()
        .iter()
        .find(|(m, _)| m == message)
        .unwrap_or_else(|| panic!("no line {message:?}"))
        .1
        .clone()
}

fn kv<'a>(kvs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn records_become_errors_and_lines_carry_the_ids() {
    apm::log::ApmLogger::new(Inner, LevelFilter::Info)
        .install()
        .expect("the first logger");
    let h = agent::start(|c| c);
    {
        let _t = apm::start_transaction("settle", "job");
        log::info!("started settling");
        let _s = apm::start_span("charge", "app");
        let card = std::hint::black_box(42);
        log::error!(target: "payments", "card {card} declined");
        log::warn!("not an error: a line only");
    }
    log::error!("outside any transaction");
    log::debug!("below every level");
    h.flush();

    let tx = &h.transactions()[0];
    let span = &h.spans()[0];
    let started = line("started settling");
    assert_eq!(kv(&started, "trace.id"), tx["trace_id"].as_str());
    assert_eq!(kv(&started, "transaction.id"), tx["id"].as_str());
    assert_eq!(kv(&started, "span.id"), None);
    let declined = line("card 42 declined");
    assert_eq!(kv(&declined, "trace.id"), tx["trace_id"].as_str());
    assert_eq!(kv(&declined, "span.id"), span["id"].as_str());
    assert!(line("outside any transaction").is_empty());
    assert!(LINES.lock().iter().all(|(m, _)| m != "below every level"));

    let errors = h.errors();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let e = &errors[0];
    assert_eq!(e["log"]["message"], "card 42 declined");
    assert_eq!(e["log"]["level"], "error");
    assert_eq!(e["log"]["logger_name"], "payments");
    assert!(e["log"].get("param_message").is_none());
    assert_eq!(e["parent_id"], span["id"]);
    assert_eq!(e["trace_id"], tx["trace_id"]);
    // The test itself; where the debug info has line tables only (as in CI), a function
    // inlined at the call is named without its module.
    let top = e["log"]["stacktrace"][0]["function"]
        .as_str()
        .unwrap_or_default();
    assert!(
        top == "log_records::records_become_errors_and_lines_carry_the_ids"
            || top == "records_become_errors_and_lines_carry_the_ids",
        "{top}"
    );
    let outside = &errors[1];
    assert_eq!(outside["log"]["param_message"], "outside any transaction");
    assert_eq!(outside["log"]["logger_name"], "log_records");
    assert!(outside.get("trace_id").is_none());
    h.finish();
}
