//! An in-process mock of the Elastic APM Server, for the agent's integration tests, the demo
//! (which prints the received traces) and the benchmarks (a local sink).
//!
//! ```no_run
//! use std::time::Duration;
//! let server = apm_tests::MockServer::start();
//! // … point the agent at `server.url()` and run instrumented code …
//! assert!(server.wait_for_transactions(1, Duration::from_secs(10)));
//! // Dropping the server panics if any event broke the protocol or its intake schema.
//! ```
//!
//! Std only: a `TcpListener` on `127.0.0.1:0`, one thread per connection, HTTP/1.1 with
//! keep-alive, chunked bodies and gzip/deflate request bodies.

pub mod alloc;
mod executor;
pub mod http;
mod record;
pub mod schema;
mod server;
pub mod services;
mod trace;

pub use executor::block_on;
pub use record::{Event, Recorded, RecordedRequest, KINDS};
pub use server::{Fault, MockServer, GARBAGE};
pub use trace::{NodeKind, Trace, TraceError, TraceNode};

/// The intake v2 events endpoint.
pub const INTAKE_PATH: &str = "/intake/v2/events";
/// The central configuration endpoint.
pub const CONFIG_PATH: &str = "/config/v1/agents";
