//! Shared by the integration tests (`mod common;`): finding the external spec files, with one
//! skip rule, and validating intake events against the intake v2 JSON schemas.
//!
//! Skip rule: spec files absent → print `spec files not found at …; skipping conformance test`
//! and skip, except under CI (`CI=true`), where absence is a failure.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod agent;
pub mod gherkin;
pub mod log_capture;

use std::path::{Path, PathBuf};

use apm_tests::MockServer;
use serde_json::Value;

pub use apm_tests::schema::{spec_dir, validators, Validators, SCHEMA_KINDS};

/// The Cargo workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Alias of [`spec_dir`] named for what a test does with it.
pub fn spec_or_skip() -> Option<PathBuf> {
    spec_dir()
}

/// `let dir = common::require_spec!();` — the spec directory, or return from the test
/// (skipped) when absent outside CI.
macro_rules! require_spec {
    () => {
        match $crate::common::spec_dir() {
            ::core::option::Option::Some(dir) => dir,
            ::core::option::Option::None => return,
        }
    };
}
pub(crate) use require_spec;

/// Panics with every schema error (with instance paths) and the event pretty-printed unless
/// `event` is a valid `kind`. Kinds without a schema pass; absent spec files skip.
pub fn assert_valid(kind: &str, event: &Value) {
    let Some(v) = validators() else { return };
    if let Some(errors) = v.errors(kind, event) {
        assert!(
            errors.is_empty(),
            "{}",
            apm_tests::schema::report(kind, event, &errors)
        );
    }
}

/// Asserts the server saw no violation: every event it received was checked on arrival,
/// against the stream rules and its kind's intake schema. (Dropping the server checks the
/// same; this fails earlier, where the test stands.)
pub fn validate_all(server: &MockServer) {
    let violations = server.violations();
    assert!(
        violations.is_empty(),
        "intake protocol violations:\n  {}",
        violations.join("\n  ")
    );
}

/// An address on which connections are refused at once: port 9 (discard) of the loopback,
/// where nothing listens on the test machines. Unlike the port of a listener bound to
/// `127.0.0.1:0` and dropped, it lies outside the ephemeral range, so no other test running
/// meanwhile can be handed it. Checked before it is returned.
pub fn refused_addr() -> std::net::SocketAddr {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let refused = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "something answers on {addr}: pick another refused port"
    );
    addr
}
