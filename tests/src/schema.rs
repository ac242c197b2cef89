//! The intake v2 JSON Schemas (`intake-v2/{kind}.json` of the spec files), compiled once per
//! process, which the stand-in checks every received event against.
//!
//! The spec files are found at `$APM_SPEC_DIR`, else at `<workspace>/../shared/spec`. Absent,
//! events are not checked against a schema (said once on stderr); under CI (`CI=true`) their
//! absence is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The intake kinds that have a schema, and their schema files under `intake-v2/`.
pub const SCHEMA_KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

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
    /// `<instance path>: <message>`; `None` when `kind` has no schema. A valid event costs
    /// one pass of the validator and no allocation for errors.
    pub fn errors(&self, kind: &str, event: &Value) -> Option<Vec<String>> {
        let validator = self.by_kind.get(kind)?;
        if validator.is_valid(event) {
            return Some(Vec::new());
        }
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

/// The validators of the spec files, compiled once per process; `None` when the spec files
/// are absent (and that is allowed).
pub fn validators() -> Option<&'static Validators> {
    static VALIDATORS: OnceLock<Option<Validators>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| spec_dir().map(|d| Validators::load(&d)))
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
