//! What the mock server saw: every request, the intake events split by kind, and protocol
//! violations. Pure data plus the NDJSON ingestion rules; the server owns the locking.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use crate::schema::{report, Validators};

/// The event kinds of the intake v2 protocol that the accessors know by name.
pub const KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

/// The APM Server's default `max_event_size` (300 KiB): a longer line is rejected.
pub use apm_server_local::intake::MAX_EVENT_SIZE;

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Position among all requests received since start or [`reset`](crate::MockServer::reset).
    pub index: usize,
    /// The connection it came on, numbered from 0 in the order they were accepted.
    pub connection: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Body as on the wire (de-chunked, still content-encoded).
    pub raw_body: Vec<u8>,
    /// Body with `Content-Encoding` undone (empty when decoding failed: see violations).
    pub body: Vec<u8>,
    /// When the whole request had been read.
    pub arrived: Instant,
    /// Status the server answered (or will answer, after a configured delay); 0 when it
    /// answered garbage or nothing ([`Fault::Garbage`](crate::Fault),
    /// [`Fault::CloseBeforeAnswer`](crate::Fault)).
    pub status: u16,
}

impl RecordedRequest {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    /// The decoded body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Value of query parameter `name` (no percent-decoding beyond `+`/`%XX` of ASCII).
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::http::query_param(self.query.as_deref()?, name)
    }
}

/// One intake event: the object under the single top-level key of an NDJSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `metadata`, `transaction`, `span`, `error`, `metricset` (or another key, e.g. `log`).
    pub kind: String,
    /// The inner object (what the intake JSON schemas describe).
    pub value: Value,
    /// Index of the request it came in ([`RecordedRequest::index`]).
    pub request: usize,
    /// Zero-based line number within that request.
    pub line: usize,
}

/// Everything recorded so far; what [`MockServer::wait_for`](crate::MockServer::wait_for)
/// predicates look at.
#[derive(Debug, Default)]
pub struct Recorded {
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) events: Vec<Event>,
    /// Accepted events per kind, counted even when payloads are discarded.
    pub(crate) counts: BTreeMap<String, usize>,
    pub(crate) violations: Vec<String>,
    pub(crate) dropped_connections: usize,
    /// TLS connections whose handshake failed (e.g. the agent rejected the certificate).
    pub(crate) tls_handshake_failures: usize,
}

impl Recorded {
    pub fn requests(&self) -> &[RecordedRequest] {
        &self.requests
    }

    /// Requests to `POST /intake/v2/events`.
    pub fn intake_requests(&self) -> impl Iterator<Item = &RecordedRequest> {
        self.requests
            .iter()
            .filter(|r| r.path == crate::INTAKE_PATH)
    }

    /// Accepted events of all kinds, in order of arrival.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Accepted events of one kind, in order of arrival.
    pub fn events_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |e| e.kind == kind)
            .map(|e| &e.value)
    }

    /// Number of accepted events of `kind` (also counted when payloads are discarded).
    pub fn count(&self, kind: &str) -> usize {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Connections closed unanswered by [`Fault::CloseImmediately`](crate::Fault).
    pub fn dropped_connections(&self) -> usize {
        self.dropped_connections
    }

    pub fn tls_handshake_failures(&self) -> usize {
        self.tls_handshake_failures
    }

    pub(crate) fn violation(&mut self, msg: String) {
        self.violations.push(msg);
    }

    /// Records what [`check_intake`] found in request `request`: its problems as violations,
    /// and its events when `accept` (the server answers 2xx) and there was no problem (the
    /// server then answers 400); `keep` false counts them without storing (benchmark sink).
    /// Returns the number of violations found in this request.
    pub(crate) fn record_intake(
        &mut self,
        request: usize,
        checked: CheckedIntake,
        accept: bool,
        keep: bool,
    ) -> usize {
        let found = checked.problems.len();
        for (line, problem) in checked.problems {
            match line {
                Some(line) => self.violation(format!("request {request} line {line}: {problem}")),
                None => self.violation(format!("request {request}: {problem}")),
            }
        }
        if accept && found == 0 {
            for (line, kind, value) in checked.events {
                *self.counts.entry(kind.clone()).or_default() += 1;
                if let (true, Some(value)) = (keep, value) {
                    self.events.push(Event {
                        kind,
                        value,
                        request,
                        line,
                    });
                }
            }
        }
        found
    }

    /// [`check_intake`] then [`record_intake`](Self::record_intake), in one call.
    #[cfg(test)]
    pub(crate) fn ingest(
        &mut self,
        request: usize,
        body: &[u8],
        accept: bool,
        keep: bool,
    ) -> usize {
        self.record_intake(request, check_intake(body, None, keep), accept, keep)
    }
}

/// An intake body split into events and checked, before the recordings are locked.
#[derive(Debug, Default)]
pub(crate) struct CheckedIntake {
    /// `(line, kind, inner object)` of each line that parsed; the object only when asked to
    /// keep it.
    events: Vec<(usize, String, Option<Value>)>,
    /// What breaks the protocol, with the line it is on (`None`: the request as a whole).
    problems: Vec<(Option<usize>, String)>,
}

/// Splits an intake body into events and checks it as the APM Server does: every request
/// starts with one `{"metadata": …}` line, and only that one; each line is JSON of one known
/// kind within the event size; and, with `schemas`, each event validates against its kind's
/// schema. The events' objects are kept only when `keep`: a server that discards payloads
/// holds no more than one event's at a time.
pub(crate) fn check_intake(body: &[u8], schemas: Option<&Validators>, keep: bool) -> CheckedIntake {
    let mut out = CheckedIntake::default();
    let Ok(text) = std::str::from_utf8(body) else {
        out.problems
            .push((None, "intake body is not UTF-8".to_owned()));
        return out;
    };
    let mut seen_any = false;
    for (line_no, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let first = !seen_any;
        seen_any = true;
        let mut problem = |p: String| out.problems.push((Some(line_no), p));
        if line.len() > MAX_EVENT_SIZE {
            problem(format!(
                "{} bytes, over the server's {MAX_EVENT_SIZE}",
                line.len()
            ));
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problem(format!("invalid JSON ({e}): {line}"));
                continue;
            }
        };
        let Value::Object(object) = value else {
            problem(format!("not an object with exactly one key: {line}"));
            continue;
        };
        if object.len() != 1 {
            problem(format!("not an object with exactly one key: {line}"));
            continue;
        }
        let Some((kind, inner)) = object.into_iter().next() else {
            continue;
        };
        match (first, kind == "metadata") {
            (true, false) => out
                .problems
                .push((None, format!("first line is {kind:?}, not metadata"))),
            (false, true) => out.problems.push((
                Some(line_no),
                "metadata repeated after the first line".to_owned(),
            )),
            _ => {}
        }
        let mut problem = |p: String| out.problems.push((Some(line_no), p));
        // The real server also takes `log` lines; anything else it rejects.
        if !KINDS.contains(&kind.as_str()) && kind != "log" {
            problem(format!("unknown event kind {kind:?}"));
        }
        if !inner.is_object() {
            problem(format!("{kind} is not an object"));
        } else if let Some(errors) = schemas.and_then(|s| s.errors(&kind, &inner)) {
            if !errors.is_empty() {
                problem(report(&kind, &inner, &errors));
            }
        }
        out.events.push((line_no, kind, keep.then_some(inner)));
    }
    if !seen_any {
        out.problems
            .push((None, "empty intake body (no metadata line)".to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest(lines: &[&str]) -> Recorded {
        let mut r = Recorded::default();
        r.ingest(0, lines.join("\n").as_bytes(), true, true);
        r
    }

    #[test]
    fn well_formed_stream_has_no_violation() {
        let r = ingest(&[
            r#"{"metadata":{"service":{"name":"s"}}}"#,
            r#"{"transaction":{"id":"a"}}"#,
            r#"{"span":{"id":"b"}}"#,
            "",
        ]);
        assert!(r.violations().is_empty(), "{:?}", r.violations());
        assert_eq!(r.count("metadata"), 1);
        assert_eq!(r.count("transaction"), 1);
        assert_eq!(r.events_of("span").count(), 1);
        assert_eq!(r.events()[2].line, 2);
    }

    #[test]
    fn missing_or_repeated_metadata_is_a_violation() {
        let r = ingest(&[r#"{"transaction":{"id":"a"}}"#]);
        assert_eq!(r.violations().len(), 1, "{:?}", r.violations());
        assert!(r.violations()[0].contains("not metadata"));

        let r = ingest(&[r#"{"metadata":{}}"#, r#"{"span":{}}"#, r#"{"metadata":{}}"#]);
        assert_eq!(r.violations().len(), 1);
        assert!(r.violations()[0].contains("repeated"));

        let r = ingest(&[]);
        assert!(r.violations()[0].contains("empty"));
    }

    #[test]
    fn malformed_lines_are_violations_not_panics() {
        let r = ingest(&[
            r#"{"metadata":{}}"#,
            "{ \"invalid-json\" }",
            r#"{"a":{},"b":{}}"#,
            "[]",
        ]);
        assert_eq!(r.violations().len(), 3, "{:?}", r.violations());
        let mut r = Recorded::default();
        assert_eq!(r.ingest(0, &[0xff, 0xfe], true, true), 1);
    }

    #[test]
    fn events_are_checked_against_their_kinds_schema() {
        let Some(schemas) = crate::schema::validators() else {
            return;
        };
        let body = b"{\"metadata\":{}}\n{\"span\":{}}\n{\"log\":{}}\n";
        let checked = check_intake(body, Some(schemas), true);
        // Metadata without its service, a span without its required fields; `log` has no
        // schema here.
        let lines: Vec<_> = checked.problems.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [Some(0), Some(1)], "{:?}", checked.problems);
        assert!(checked.problems[0]
            .1
            .contains("violates intake-v2/metadata.json"));
        assert!(checked.problems[1]
            .1
            .contains("violates intake-v2/span.json"));
        assert_eq!(checked.events.len(), 3);
    }

    #[test]
    fn rejected_or_discarded_events() {
        let body = b"{\"metadata\":{}}\n{\"span\":{}}\n";
        let mut r = Recorded::default();
        r.ingest(0, body, false, true);
        assert_eq!(r.count("span"), 0);
        r.ingest(1, body, true, false);
        assert_eq!(r.count("span"), 1);
        assert!(r.events().is_empty());
    }

    #[test]
    fn query_params() {
        let req = RecordedRequest {
            index: 0,
            connection: 0,
            method: "GET".into(),
            path: "/config/v1/agents".into(),
            query: Some("service.name=my+svc&service.environment=prod%2Deu&flag".into()),
            headers: vec![],
            raw_body: vec![],
            body: vec![],
            arrived: Instant::now(),
            status: 200,
        };
        assert_eq!(req.query_param("service.name").as_deref(), Some("my svc"));
        assert_eq!(
            req.query_param("service.environment").as_deref(),
            Some("prod-eu")
        );
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("nope"), None);
    }
}
