//! Everything generated code touches, and nothing else: re-exports only. Not public API: no
//! stability promise.
//!
//! The attribute macros expand to calls of this module only, through absolute paths
//! (`::apm::__private::…`, or `<crate = path>::__private::…`).

#[cfg(feature = "enable")]
pub use crate::capture::macro_api::*;
pub use crate::types::meta::{
    AsDynError, CarriedBacktrace, Carrier, Level, NoBacktrace, Site, SpanMeta, TransactionMeta,
};
pub use crate::types::outcome::{AnyOutcome, Outcome, ResultOutcome};
