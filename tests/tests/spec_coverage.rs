//! Every cross-agent fixture under `../shared/spec/agent-json-specs` and
//! `../shared/spec/gherkin-specs` is read by some test: each file's name appears, as the end of
//! a string literal, in the Rust sources of the workspace (the tests load fixtures by name). A
//! new fixture, or a test that stops loading one, fails here.

use std::path::{Path, PathBuf};

/// Fixtures not driven by a test yet, each with the reason. An entry that some test loads
/// fails too: it must then leave this list.
const NOT_YET: &[(&str, &str)] = &[];

fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("APM_SPEC_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "spec files not found at {} and CI=true",
        dir.display()
    );
    eprintln!("spec files not found at {}; skipping", dir.display());
    None
}

fn rust_sources(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            // This file names fixtures without loading them.
            && !path.ends_with("tests/spec_coverage.rs")
        {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

#[test]
fn every_spec_fixture_is_loaded_by_a_test() {
    let Some(spec) = spec_dir() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = String::new();
    for member in ["apm", "apm-macros", "tests"] {
        rust_sources(&root.join(member), &mut sources);
    }
    let mut unloaded = Vec::new();
    let mut checked = 0;
    for folder in ["agent-json-specs", "gherkin-specs"] {
        let entries = std::fs::read_dir(spec.join(folder)).expect("a spec folder");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            checked += 1;
            let loaded = sources.contains(&format!("{name}\""));
            let pending = NOT_YET.iter().any(|(n, _)| *n == name);
            match (loaded, pending) {
                (false, false) => unloaded.push(format!("{folder}/{name}")),
                (true, true) => panic!("{name} is loaded now: take it off NOT_YET"),
                _ => {}
            }
        }
    }
    assert_eq!(
        checked, 13,
        "the spec folders changed: 7 JSON fixtures and 6 features expected"
    );
    assert!(unloaded.is_empty(), "fixtures no test loads: {unloaded:?}");
}
