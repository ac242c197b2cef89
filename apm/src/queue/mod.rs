//! The hand-over between the application threads and the transport thread: per-thread
//! staging (`staging`), the vectors events travel in and their pool (`batch`), the bounded
//! channel with both of its ends (`channel`), spare boxes for transactions' end records
//! (`spare`), and the tracer both sides read (`tracer`).
//!
//! Capture (the application threads) and export (the transport thread) meet only here.

pub(crate) mod batch;
pub(crate) mod channel;
pub(crate) mod spare;
pub(crate) mod staging;
pub(crate) mod tracer;
