//! A `log` logger that keeps the agent's own lines (target `apm…`), for tests of what the agent
//! says.

use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;

/// The lines captured since the last [`capture`].
pub static LINES: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("apm")
    }
    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            LINES
                .lock()
                .push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per process) and forgets earlier lines.
pub fn capture() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    LINES.lock().clear();
}

/// The lines captured that contain `text`.
pub fn lines_containing(text: &str) -> Vec<(Level, String)> {
    LINES
        .lock()
        .iter()
        .filter(|(_, l)| l.contains(text))
        .cloned()
        .collect()
}
