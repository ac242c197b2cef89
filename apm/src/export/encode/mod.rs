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
