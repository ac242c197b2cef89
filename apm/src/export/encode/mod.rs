//! Encoding, on the transport thread: records become intake v2 NDJSON lines (one writer per
//! event kind; `json` writes by hand the fields every span has, `fields` holds the serde
//! views they share), the lines are gathered into a request `body` (gzip when compressing),
//! and `breakdown` turns self times into breakdown metrics.

pub(crate) mod body;
pub(crate) mod breakdown;
mod error;
mod fields;
mod frame;
mod json;
mod metricset;
#[cfg(feature = "opentelemetry")]
mod otel;
mod request;
pub(crate) mod service_target;
mod span;
mod transaction;

pub(crate) use error::write_error;
pub(crate) use fields::label_key;
pub(crate) use metricset::write_metricset;
pub(crate) use request::Policy;
pub(crate) use span::write_span;
pub(crate) use transaction::write_transaction;

#[cfg(any(test, fuzzing))]
pub(crate) fn check_json_string(text: &str, limit: usize) {
    let mut out = Vec::new();
    json::string(&mut out, text, limit);
    let back: String = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{text:?} written as invalid JSON ({e}): {out:?}"));
    assert_eq!(back, crate::util::text::truncate(text, limit), "{text:?}");
}
