//! An in-process mock of the Elastic APM Server, for the agent's integration tests (with faults
//! to inject and every request recorded) and the benchmarks (a local sink). Its HTTP parser and
//! trace tree are `apm-server-local`'s, the local APM Server the demo runs on.
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
mod record;
pub mod schema;
mod server;
pub mod services;

pub use apm_server_local::trace::{NodeKind, Trace, TraceError, TraceNode};
pub use apm_server_local::{http, CONFIG_PATH, INTAKE_PATH};
pub use executor::block_on;
pub use record::{Event, Recorded, RecordedRequest, KINDS};
pub use server::{Fault, MockServer, GARBAGE};
