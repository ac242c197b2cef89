//! Test support: the Elastic spec's fixture files, found at `$APM_SPEC_DIR` or
//! `<workspace>/../shared/spec`. Absent, a conformance test says so and skips, except under
//! `CI=true`, where absence is a failure.

use std::path::PathBuf;

/// The text of `relative` (e.g. `agent-json-specs/wildcard_matcher_tests.json`), or `None`
/// after printing why the test is skipped.
pub(crate) fn read(relative: &str) -> Option<String> {
    let dir = match std::env::var_os("APM_SPEC_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec"),
    };
    let path = dir.join(relative);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Some(text);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "spec file {} not found and CI=true: the conformance fixture must be present \
             (keep shared/spec beside the workspace or set APM_SPEC_DIR)",
            path.display()
        );
    }
    eprintln!(
        "spec file {} not found; skipping conformance test",
        path.display()
    );
    None
}
