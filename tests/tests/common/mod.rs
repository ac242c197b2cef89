//! Shared by the integration tests (`mod common;`): finding the external spec files, with one
//! skip rule, and validating intake events against the intake v2 JSON schemas.
//!
//! Skip rule: spec files absent → print `spec files not found at …; skipping conformance test`
//! and skip, except under CI (`CI=true`), where absence is a failure.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod agent;
pub mod gherkin;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use apm_tests::MockServer;
use serde_json::Value;

/// The intake kinds that have a schema, and their schema files under `intake-v2/`.
pub use apm_server_local::schema::KINDS as SCHEMA_KINDS;

/// The Cargo workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `$APM_SPEC_DIR` if set, else `<workspace>/../shared/spec`; `None` (after saying so) when it
/// does not exist. Panics instead under CI, where the spec files must be present.
pub fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("APM_SPEC_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/spec"),
    };
    if dir.join("intake-v2").is_dir() {
        return Some(dir);
    }
    if under_ci() {
        panic!(
            "spec files not found at {} and CI=true: conformance tests must not be skipped in CI \
             (keep shared/spec beside the workspace or set APM_SPEC_DIR)",
            dir.display()
        );
    }
    eprintln!(
        "spec files not found at {}; skipping conformance test",
        dir.display()
    );
    None
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

/// The intake schemas, compiled by the local APM Server's own loader (the one that checks
/// what any agent sends it).
pub use apm_server_local::schema::Schemas as Validators;

/// The validators for the spec directory, compiled once per test binary; `None` when the spec
/// files are absent (and skipping is allowed).
pub fn validators() -> Option<&'static Validators> {
    static VALIDATORS: OnceLock<Option<Validators>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| {
            spec_dir().map(|d| Validators::from_dir(&d).unwrap_or_else(|e| panic!("{e}")))
        })
        .as_ref()
}

fn report(kind: &str, event: &Value, errors: &[String]) -> String {
    let pretty = serde_json::to_string_pretty(event).unwrap_or_else(|_| event.to_string());
    format!(
        "{kind} event violates intake-v2/{kind}.json ({} error(s)):\n  {}\nevent:\n{pretty}",
        errors.len(),
        errors.join("\n  ")
    )
}

/// Panics with every schema error (with instance paths) and the event pretty-printed unless
/// `event` is a valid `kind`. Kinds without a schema pass; absent spec files skip.
pub fn assert_valid(kind: &str, event: &Value) {
    let Some(v) = validators() else { return };
    if let Some(errors) = v.errors(kind, event) {
        assert!(errors.is_empty(), "{}", report(kind, event, &errors));
    }
}

/// Validates every event the server accepted, of every kind with a schema, and asserts the
/// intake stream rules held (metadata first and only once per request, valid JSON).
pub fn validate_all(server: &MockServer) {
    let violations = server.violations();
    assert!(
        violations.is_empty(),
        "intake protocol violations:\n  {}",
        violations.join("\n  ")
    );
    let Some(v) = validators() else { return };
    let failures: Vec<String> = server
        .events()
        .iter()
        .filter_map(|e| {
            let errors = v.errors(&e.kind, &e.value)?;
            (!errors.is_empty()).then(|| {
                format!(
                    "request {} line {}: {}",
                    e.request,
                    e.line,
                    report(&e.kind, &e.value, &errors)
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} invalid event(s):\n{}",
        failures.len(),
        failures.join("\n\n")
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
