//! Central configuration served from a local JSON file, re-read when it changes:
//!
//! ```json
//! { "*": { "transaction_sample_rate": "0.5" }, "shop": { "log_level": "debug" } }
//! ```
//!
//! Each key is a service name (`*`: every service), each value the settings (strings, as
//! Kibana stores them) sent to it; a service's own settings override `*`'s. The ETag is a
//! hash of the settings sent, so an agent's `If-None-Match` gets a 304 until they change.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{Map, Value};

#[derive(Debug)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    /// Modification time and length of the version read last.
    seen: Option<(SystemTime, u64)>,
    settings: Map<String, Value>,
}

impl ConfigFile {
    pub fn new(path: Option<PathBuf>) -> ConfigFile {
        ConfigFile {
            path,
            seen: None,
            settings: Map::new(),
        }
    }

    /// Re-reads the file when its modification time or size changed. A file that cannot be
    /// read or parsed keeps the previous settings; the message says why.
    pub fn refresh(&mut self) -> Option<String> {
        let path = self.path.as_ref()?;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let first = self.seen.take().is_some() || self.settings.is_empty();
                return first.then(|| format!("config file {}: {e}", path.display()));
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.seen == Some(stamp) {
            return None;
        }
        self.seen = Some(stamp);
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(Value::Object(settings)) => {
                self.settings = settings;
                Some(format!("config file {} loaded", path.display()))
            }
            Ok(_) => Some(format!(
                "config file {}: expected a JSON object of service name → settings; keeping the previous settings",
                path.display()
            )),
            Err(e) => Some(format!(
                "config file {}: {e}; keeping the previous settings",
                path.display()
            )),
        }
    }

    /// The settings for `service` and their ETag.
    pub fn for_service(&self, service: &str) -> (Value, String) {
        let mut out = Map::new();
        for key in ["*", service] {
            if let Some(Value::Object(m)) = self.settings.get(key) {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => Value::String(s.clone()),
                        other => Value::String(other.to_string()),
                    };
                    out.insert(k.clone(), v);
                }
            }
        }
        let body = Value::Object(out);
        let mut h = DefaultHasher::new();
        body.to_string().hash(&mut h);
        (body, format!("{:016x}", h.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_service_over_wildcard_and_reload() {
        let dir =
            std::env::temp_dir().join(format!("apm-server-local-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"*": {"a": "1", "b": 0.5}, "shop": {"a": "2"}}"#).expect("write");
        let mut c = ConfigFile::new(Some(path.clone()));
        assert!(c.refresh().expect("message").contains("loaded"));
        let (shop, etag) = c.for_service("shop");
        assert_eq!(shop, serde_json::json!({"a": "2", "b": "0.5"}));
        let (other, other_etag) = c.for_service("other");
        assert_eq!(other["a"], "1");
        assert_ne!(etag, other_etag);
        assert!(c.refresh().is_none());
        std::fs::write(&path, "not json, longer than before").expect("write");
        assert!(c.refresh().expect("message").contains("keeping"));
        assert_eq!(c.for_service("shop").1, etag);
        std::fs::write(&path, r#"{"shop": {"a": "3"}}"#).expect("write");
        c.refresh();
        assert_eq!(c.for_service("shop").0["a"], "3");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
