//! A local APM Server for development: it receives intake v2 from any Elastic APM agent,
//! checks every event against the intake v2 JSON schemas, prints each trace as a waterfall
//! once it completes (or NDJSON), keeps the recent traces in memory (bounded) and shows them
//! on a web page at `/ui`. Central configuration is served from a local JSON file.
//!
//! ```no_run
//! let server = apm_server_local::Server::start(apm_server_local::Options {
//!     addr: "127.0.0.1:0".into(),
//!     ..Default::default()
//! })?;
//! // … point an agent at `server.url()` …
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The path of a request: `server` (listener, routes) → `http` (parsing, decoding) →
//! `intake` (lines, schemas via `schema`) → `store` (bounded, grouped by trace with
//! `trace`) → `waterfall` (terminal) and `ui` (web page).

mod config;
pub mod http;
pub mod intake;
pub mod schema;
mod server;
mod store;
pub mod trace;
mod ui;
pub mod waterfall;

pub use server::{Options, Output, Server, Stats, SERVER_VERSION};

/// The intake v2 events endpoint.
pub const INTAKE_PATH: &str = "/intake/v2/events";
/// The central configuration endpoint.
pub const CONFIG_PATH: &str = "/config/v1/agents";
