//! Embeds the intake v2 JSON schemas, so that an installed binary validates without the spec
//! files beside it. They are read from `$APM_SPEC_DIR/intake-v2`, else from
//! `<workspace>/../shared/spec/intake-v2`; the repository carries no copy. When neither exists
//! the binary is built without schemas and says so at startup (`--spec-dir` then loads them
//! at run time).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

const KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

fn main() {
    println!("cargo:rerun-if-env-changed=APM_SPEC_DIR");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let spec = env::var_os("APM_SPEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../shared/spec"));
    let dir = spec.join("intake-v2");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut out = String::from(
        "/// The embedded intake v2 schemas by event kind (empty: built without them).\n",
    );
    out.push_str("pub(crate) const EMBEDDED: &[(&str, &str)] = &[\n");
    let found: Vec<(&str, PathBuf)> = KINDS
        .iter()
        .map(|k| (*k, dir.join(format!("{k}.json"))))
        .filter(|(_, p)| p.is_file())
        .collect();
    if found.len() == KINDS.len() {
        for (kind, path) in &found {
            println!("cargo:rerun-if-changed={}", path.display());
            let path = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let _ = writeln!(
                out,
                "    ({kind:?}, include_str!({:?})),",
                path.display().to_string()
            );
        }
    } else {
        println!(
            "cargo:warning=intake v2 schemas not found at {} (set APM_SPEC_DIR): apm-server-local is built without validation",
            dir.display()
        );
    }
    out.push_str("];\n");
    let target = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("schemas.rs");
    if let Err(e) = fs::write(&target, out) {
        panic!("cannot write {}: {e}", target.display());
    }
}
