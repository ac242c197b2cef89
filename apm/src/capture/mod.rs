//! Capture: what runs on the application's threads. Guards and handles open spans and
//! transactions on a thread-local stack (`stack`), instrumented futures carry theirs across
//! polls (`future`), transactions start from a sampling decision or incoming headers
//! (`sampling`, `propagation`), errors are captured where they happen (`errors`).
//! Finished records go to the thread's staging buffer in `queue`; nothing here locks, formats,
//! allocates for static names or waits for I/O.
//!
//! With the `enable` feature off, `off.rs` stands in: the same items, doing nothing.

cfg_enable! {
    #[cfg(apm_bridge)]
    mod bridge;
    mod child_timer;
    #[cfg(apm_sql)]
    mod db_span;
    mod errors;
    mod future;
    mod handles;
    mod kept_ref;
    pub(crate) mod macro_api;
    #[cfg(apm_exit_stats)]
    mod over_limit;
    mod panic;
    mod propagation;
    mod raw_stack;
    mod sampling;
    mod shared;
    mod span;
    mod stack;
    #[cfg(apm_sql)]
    mod statements;
    mod transaction;
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    mod unwind;

    pub(crate) use future::Instrumented;
    #[cfg(any(test, fuzzing))]
    pub(crate) use propagation::check_trace_context;
    #[cfg(any(feature = "log", feature = "tracing"))]
    pub(crate) use errors::capture_log;
    #[cfg(any(feature = "reqwest", feature = "actix-web"))]
    pub(crate) use errors::{downcast, read_codes_with};
    #[cfg(apm_bridge)]
    pub(crate) use bridge::{end_span, end_transaction, rename_span};
    #[cfg(feature = "opentelemetry")]
    pub(crate) use bridge::BridgeFrame;
    #[cfg(feature = "tracing")]
    pub(crate) use bridge::{
        add_span_labels, idle_span, leave as leave_bridged, spare_text, start_static_span_in,
        Entered, SpanFrame,
    };
    #[cfg(feature = "opentelemetry")]
    pub(crate) use bridge::{
        add_span_link, add_transaction_link, frame_ids, name_only_resource, set_span_otel,
        set_span_type, set_transaction_otel, set_transaction_type,
    };
    pub(crate) use panic::install as install_panic_hook;
    pub(crate) use raw_stack::prime as prime_stack_walk;
    #[cfg(unix)]
    pub(crate) use stack::after_fork_in_child;
    #[cfg(apm_sql)]
    pub(crate) use db_span::{start_db_guard, start_db_span};
    #[cfg(apm_exit_stats)]
    pub(crate) use over_limit::OverLimitExit;
    #[cfg(apm_server)]
    pub(crate) use future::PendingEnd;
    #[cfg(apm_server)]
    pub(crate) use transaction::name_buffer;
    #[cfg(any(apm_client, feature = "tracing"))]
    pub(crate) use handles::spans_recorded_here;
    pub(crate) use handles::{
        current_ids, with_current_transaction, Context, ContextGuard, Span, SpanGuard,
        Transaction, TransactionGuard,
    };
}

#[cfg(not(feature = "enable"))]
mod off;
#[cfg(not(feature = "enable"))]
pub(crate) use off::*;
