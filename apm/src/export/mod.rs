//! Export: the `apm-transport` thread. It takes batches from the queue, encodes them into
//! intake v2 NDJSON (`encode`), and sends them to the APM Server over HTTP (`http`) in
//! requests bounded in size and age, backing off after failures (`transport`).

pub(crate) mod bench;
pub(crate) mod encode;
pub(crate) mod http;
mod huge_traces;
pub(crate) mod symbolize;
pub(crate) mod transport;

/// Writes `text` as a JSON string cut to `limit` characters and checks that it reads back as
/// the cut text (`crate::fuzz`).
#[cfg(any(test, fuzzing))]
pub(crate) fn check_json_string(text: &str, limit: usize) {
    encode::check_json_string(text, limit);
}
