//! One intake v2 request body, decoded, split into events and checked the way the APM Server
//! checks it (apm-data's stream processor): the first line must be metadata, each other line
//! one known event kind, no line over the permitted size; events failing their schema are
//! rejected one by one, the others accepted. Pure: the server turns the [`Outcome`] into an
//! answer and stores the events.

use serde_json::{json, Map, Value};

use crate::schema::Schemas;

/// The APM Server's default `max_event_size` (300 KiB): a longer line is rejected.
pub const MAX_EVENT_SIZE: usize = 300 * 1024;

/// Event kinds the APM Server accepts after the metadata line (`log` included).
const EVENT_KINDS: [&str; 5] = ["transaction", "span", "error", "metricset", "log"];

/// One rejected line or request, as the APM Server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeError {
    pub message: String,
    /// The offending line (truncated when too large), when there is one.
    pub document: Option<String>,
}

/// An accepted event, with the request's metadata service merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub kind: String,
    pub value: Value,
    /// Size of its line, for the memory bound.
    pub bytes: usize,
}

/// What became of one request body.
#[derive(Debug, Default)]
pub struct Outcome {
    pub metadata: Option<Value>,
    pub accepted: Vec<Accepted>,
    pub errors: Vec<IntakeError>,
    /// Schema violations, also when the event was rejected for them: `(kind, line, errors)`.
    pub violations: Vec<(String, String, Vec<String>)>,
}

impl Outcome {
    /// 202 when nothing was wrong, else 400 (all of these are `IDResponseErrorsValidate` or
    /// `RequestTooLarge`, which the APM Server answers 400).
    pub fn status(&self) -> u16 {
        if self.errors.is_empty() {
            202
        } else {
            400
        }
    }

    /// `{"accepted": n, "errors": [{"message", "document"}]}`, the APM Server's answer body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "accepted": self.accepted.len() });
        if !self.errors.is_empty() {
            body["errors"] = self.errors.iter().map(error_json).collect();
        }
        body
    }
}

/// `{"message": …, "document": …}` (document only when there is one).
pub fn error_json(e: &IntakeError) -> Value {
    let mut v = json!({ "message": e.message });
    if let Some(d) = &e.document {
        v["document"] = Value::String(d.clone());
    }
    v
}

/// Answer body for a request refused before its stream is read (content type, method,
/// decoding): accepted 0 and one error.
pub fn refused(message: impl Into<String>) -> Value {
    json!({ "accepted": 0, "errors": [{ "message": message.into() }] })
}

/// Splits `body` into lines and checks each; `schemas` `None` skips the schema check.
pub fn process(body: &[u8], schemas: Option<&Schemas>) -> Outcome {
    let mut out = Outcome::default();
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let Some(first) = lines.next() else {
        return out;
    };
    // A bad first line fails the whole request, as the APM Server's does.
    let Some((_, meta)) = check_line(first, true, schemas, &mut out) else {
        return out;
    };
    let service = meta.get("service").cloned();
    out.metadata = Some(meta);
    for line in lines {
        let Some((kind, mut value)) = check_line(line, false, schemas, &mut out) else {
            continue;
        };
        if !EVENT_KINDS.contains(&kind.as_str()) {
            out.errors.push(IntakeError {
                message: format!("{kind}: did not recognize object type"),
                document: Some(lossy(line)),
            });
            continue;
        }
        if let Some(service) = &service {
            merge_service(&mut value, service);
        }
        out.accepted.push(Accepted {
            kind,
            value,
            bytes: line.len(),
        });
    }
    out
}

/// Parses one line into `(kind, inner object)` and validates it; records the error and
/// returns `None` when the line is rejected. The first line must be metadata.
fn check_line(
    line: &[u8],
    first: bool,
    schemas: Option<&Schemas>,
    out: &mut Outcome,
) -> Option<(String, Value)> {
    let reject = |out: &mut Outcome, message: String, document: String| {
        out.errors.push(IntakeError {
            message,
            document: Some(document),
        });
    };
    if line.len() > MAX_EVENT_SIZE {
        let document = lossy(&line[..line.len().min(64)]);
        reject(out, "event exceeded the permitted size.".into(), document);
        return None;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            reject(out, format!("data read error: {e}"), lossy(line));
            return None;
        }
    };
    let Some((kind, inner)) = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        reject(
            out,
            "did not recognize object type: expected one event object per line".into(),
            lossy(line),
        );
        return None;
    };
    let kind = match kind.as_str() {
        "m" => "metadata".to_owned(),
        k => k.to_owned(),
    };
    if first != (kind == "metadata") {
        let message = if first {
            "\"metadata\" or \"m\" required".to_owned()
        } else {
            format!("{kind}: did not recognize object type")
        };
        reject(out, message, lossy(line));
        return None;
    }
    if !inner.is_object() {
        reject(
            out,
            format!("validation error: '{kind}' required"),
            lossy(line),
        );
        return None;
    }
    if let Some(errors) = schemas.and_then(|s| s.errors(&kind, inner)) {
        if !errors.is_empty() {
            reject(
                out,
                format!("validation error: {kind}: {}", errors.join("; ")),
                lossy(line),
            );
            out.violations.push((kind, lossy(line), errors));
            return None;
        }
    }
    Some((kind, inner.clone()))
}

/// Gives the event the metadata's service where it names none, as the APM Server merges
/// metadata into every event.
fn merge_service(event: &mut Value, service: &Value) {
    let Some(obj) = event.as_object_mut() else {
        return;
    };
    let context = obj
        .entry("context")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(context) = context.as_object_mut() else {
        return;
    };
    let own = context
        .entry("service")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Some(own), Some(meta)) = (own.as_object_mut(), service.as_object()) {
        for (k, v) in meta {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Outcome {
        process(lines.join("\n").as_bytes(), None)
    }

    const META: &str =
        r#"{"metadata":{"service":{"name":"svc","agent":{"name":"rust","version":"1"}}}}"#;

    #[test]
    fn events_are_accepted_with_the_metadata_service() {
        let o = run(&[
            META,
            r#"{"transaction":{"id":"a"}}"#,
            r#"{"span":{"id":"b","context":{"service":{"name":"own"}}}}"#,
            "",
        ]);
        assert_eq!(o.status(), 202);
        assert_eq!(o.accepted.len(), 2);
        assert_eq!(o.accepted[0].value["context"]["service"]["name"], "svc");
        assert_eq!(o.accepted[1].value["context"]["service"]["name"], "own");
        assert_eq!(o.body(), json!({"accepted": 2}));
    }

    #[test]
    fn the_apm_servers_answers_to_malformed_streams() {
        let o = run(&[r#"{"not": "metadata"}"#]);
        assert_eq!(o.status(), 400);
        assert_eq!(
            o.body(),
            json!({"accepted": 0, "errors": [{"message": "\"metadata\" or \"m\" required", "document": "{\"not\": \"metadata\"}"}]})
        );
        let o = run(&[
            META,
            r#"{"tennis-court": {"name": "Centre Court, Wimbledon"}}"#,
            r#"{"span":{}}"#,
        ]);
        assert_eq!(
            o.body(),
            json!({"accepted": 1, "errors": [{"message": "tennis-court: did not recognize object type", "document": "{\"tennis-court\": {\"name\": \"Centre Court, Wimbledon\"}}"}]})
        );
        let o = run(&[r#"{"metadata": null}"#]);
        assert_eq!(o.errors[0].message, "validation error: 'metadata' required");
        let big = format!("{{\"metadata\":\"{}\"}}", "x".repeat(MAX_EVENT_SIZE));
        let o = run(&[&big]);
        assert_eq!(o.errors[0].message, "event exceeded the permitted size.");
        let o = run(&[META, "{ \"invalid-json\" }"]);
        assert!(
            o.errors[0].message.starts_with("data read error"),
            "{:?}",
            o.errors
        );
        assert_eq!(process(b"", None).status(), 202);
    }
}
