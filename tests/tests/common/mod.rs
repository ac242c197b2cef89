//! Shared by the integration tests (`mod common;`): finding the external spec files, with one
//! skip rule, and validating intake events against the intake v2 JSON schemas.
//!
//! Skip rule: spec files absent → print `spec files not found at …; skipping conformance test`
//! and skip, except under CI (`CI=true`), where absence is a failure.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod agent;
pub mod gherkin;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use apm_tests::MockServer;
use serde_json::Value;

/// The intake kinds that have a schema, and their schema files under `intake-v2/`.
pub const SCHEMA_KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

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

/// One compiled validator per intake kind.
#[derive(Debug)]
pub struct Validators {
    by_kind: BTreeMap<&'static str, jsonschema::Validator>,
}

impl Validators {
    /// Compiles `<dir>/intake-v2/{kind}.json`. The schemas declare no `$schema`; they use
    /// `if`/`then` (draft 7 and later) and nothing newer, so they are compiled as draft 7.
    pub fn load(spec_dir: &Path) -> Validators {
        let by_kind = SCHEMA_KINDS
            .iter()
            .map(|&kind| {
                let path = spec_dir.join("intake-v2").join(format!("{kind}.json"));
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read schema {}: {e}", path.display()));
                let schema: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("schema {} is not JSON: {e}", path.display()));
                let validator = jsonschema::draft7::new(&schema)
                    .unwrap_or_else(|e| panic!("schema {} does not compile: {e}", path.display()));
                (kind, validator)
            })
            .collect();
        Validators { by_kind }
    }

    /// Every schema error for `event` (the object under the NDJSON line's key), as
    /// `<instance path>: <message>`; `None` when `kind` has no schema.
    pub fn errors(&self, kind: &str, event: &Value) -> Option<Vec<String>> {
        let validator = self.by_kind.get(kind)?;
        Some(
            validator
                .iter_errors(event)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/".to_owned() } else { at };
                    format!("{at}: {e} (schema {})", e.schema_path())
                })
                .collect(),
        )
    }
}

/// The validators for the spec directory, compiled once per test binary; `None` when the spec
/// files are absent (and skipping is allowed).
pub fn validators() -> Option<&'static Validators> {
    static VALIDATORS: OnceLock<Option<Validators>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| spec_dir().map(|d| Validators::load(&d)))
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
