//! The intake v2 JSON schemas: embedded at build time (see `build.rs`) or loaded from a spec
//! directory at run time, compiled once, and applied to every event received.

use std::path::Path;

use serde_json::Value;

/// Longest schema error message reported, in bytes.
const MAX_MESSAGE: usize = 300;

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

/// The event kinds with a schema.
pub const KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

/// One compiled validator per event kind.
#[derive(Debug)]
pub struct Schemas {
    by_kind: Vec<(String, jsonschema::Validator)>,
    /// Where they came from, for the startup banner.
    source: String,
}

impl Schemas {
    /// The schemas embedded when the binary was built; `Err` says why there are none.
    pub fn embedded() -> Result<Schemas, String> {
        if EMBEDDED.is_empty() {
            return Err("this binary was built without the intake v2 schemas \
                        (build with APM_SPEC_DIR set, or pass --spec-dir)"
                .into());
        }
        let texts = EMBEDDED.iter().map(|(k, t)| (k.to_string(), t.to_string()));
        Schemas::compile(texts, "embedded at build time".into())
    }

    /// `<dir>/intake-v2/{kind}.json` for the five event kinds.
    pub fn from_dir(dir: &Path) -> Result<Schemas, String> {
        let dir = dir.join("intake-v2");
        let mut texts = Vec::new();
        for kind in KINDS {
            let path = dir.join(format!("{kind}.json"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            texts.push((kind.to_owned(), text));
        }
        Schemas::compile(texts.into_iter(), dir.display().to_string())
    }

    /// The schemas declare no `$schema`; they use `if`/`then` (draft 7) and nothing newer.
    fn compile(
        texts: impl Iterator<Item = (String, String)>,
        source: String,
    ) -> Result<Schemas, String> {
        let mut by_kind = Vec::new();
        for (kind, text) in texts {
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("schema {kind}.json is not JSON: {e}"))?;
            let validator = jsonschema::draft7::new(&schema)
                .map_err(|e| format!("schema {kind}.json does not compile: {e}"))?;
            by_kind.push((kind, validator));
        }
        Ok(Schemas { by_kind, source })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every schema error for `event` (the object under the NDJSON line's key), as
    /// `<instance path>: <message> (schema <path>)`; `None` when `kind` has no schema.
    pub fn errors(&self, kind: &str, event: &Value) -> Option<Vec<String>> {
        let (_, validator) = self.by_kind.iter().find(|(k, _)| k == kind)?;
        // A valid event (the usual case) costs one pass and no allocation.
        if validator.is_valid(event) {
            return Some(Vec::new());
        }
        Some(
            validator
                .iter_errors(event)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/".to_owned() } else { at };
                    // Some messages (`anyOf`) quote the whole instance.
                    let mut msg = e.to_string();
                    if msg.len() > MAX_MESSAGE {
                        let cut = (0..=MAX_MESSAGE).rev().find(|&i| msg.is_char_boundary(i));
                        msg.truncate(cut.unwrap_or(0));
                        msg.push('…');
                    }
                    format!("{at}: {msg} (schema {})", e.schema_path())
                })
                .collect(),
        )
    }
}
