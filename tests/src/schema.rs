//! The intake v2 JSON Schemas (`intake-v2/{kind}.json` of the spec files), compiled once per
//! process by the local APM Server's loader, which the stand-in checks every received event
//! against.
//!
//! The spec files are found at `$APM_SPEC_DIR`, else at `<workspace>/../shared/spec`. Absent,
//! events are not checked against a schema (said once on stderr); under CI (`CI=true`) their
//! absence is a failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The compiled schemas: the local APM Server's own loader, the one that checks what any
/// agent sends it.
pub use apm_server_local::schema::Schemas as Validators;
/// The intake kinds that have a schema, and their schema files under `intake-v2/`.
pub use apm_server_local::schema::KINDS as SCHEMA_KINDS;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `$APM_SPEC_DIR` if set, else `<workspace>/../shared/spec`; `None` (after saying so) when it
/// does not exist. Panics instead under CI, where the spec files must be present.
pub fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("APM_SPEC_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("../shared/spec")
        }
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

/// The validators of the spec files, compiled once per process; `None` when the spec files
/// are absent (and that is allowed).
pub fn validators() -> Option<&'static Validators> {
    static VALIDATORS: OnceLock<Option<Validators>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| {
            spec_dir().map(|d| Validators::from_dir(&d).unwrap_or_else(|e| panic!("{e}")))
        })
        .as_ref()
}

/// Every schema error of `event`, `kind` named and the event pretty-printed, in one message.
pub fn report(kind: &str, event: &Value, errors: &[String]) -> String {
    let pretty = serde_json::to_string_pretty(event).unwrap_or_else(|_| event.to_string());
    format!(
        "{kind} event violates intake-v2/{kind}.json ({} error(s)):\n  {}\nevent:\n{pretty}",
        errors.len(),
        errors.join("\n  ")
    )
}
