//! What the mock server saw: every request, the intake events split by kind, and protocol
//! violations. Pure data plus the NDJSON ingestion rules; the server owns the locking.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

/// The event kinds of the intake v2 protocol that the accessors know by name.
pub const KINDS: [&str; 5] = ["metadata", "transaction", "span", "error", "metricset"];

/// The APM Server's default `max_event_size` (300 KiB): a longer line is rejected.
pub use apm_server_local::intake::MAX_EVENT_SIZE;

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Position among all requests received since start or [`reset`](crate::MockServer::reset).
    pub index: usize,
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
    /// answered garbage ([`Fault::Garbage`](crate::Fault)).
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

    /// Splits an intake body into events and checks the stream rules: every request starts
    /// with one `{"metadata": …}` line, and only that one. Returns the number of violations
    /// found in this request. Events are kept only when `accept` (the server answers 2xx);
    /// `keep` false counts them without storing (benchmark sink).
    pub(crate) fn ingest(
        &mut self,
        request: usize,
        body: &[u8],
        accept: bool,
        keep: bool,
    ) -> usize {
        let before = self.violations.len();
        let Ok(text) = std::str::from_utf8(body) else {
            self.violation(format!("request {request}: intake body is not UTF-8"));
            return 1;
        };
        let mut seen_any = false;
        for (line_no, line) in text.split('\n').enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let first = !seen_any;
            seen_any = true;
            if line.len() > MAX_EVENT_SIZE {
                self.violation(format!(
                    "request {request} line {line_no}: {} bytes, over the server's {MAX_EVENT_SIZE}",
                    line.len()
                ));
            }
            let value: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    self.violation(format!(
                        "request {request} line {line_no}: invalid JSON ({e}): {line}"
                    ));
                    continue;
                }
            };
            let Some((kind, inner)) = value
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.iter().next())
            else {
                self.violation(format!(
                    "request {request} line {line_no}: not an object with exactly one key: {line}"
                ));
                continue;
            };
            match (first, kind == "metadata") {
                (true, false) => self.violation(format!(
                    "request {request}: first line is {kind:?}, not metadata"
                )),
                (false, true) => self.violation(format!(
                    "request {request} line {line_no}: metadata repeated after the first line"
                )),
                _ => {}
            }
            // The real server also takes `log` lines; anything else it rejects.
            if !KINDS.contains(&kind.as_str()) && kind != "log" {
                self.violation(format!(
                    "request {request} line {line_no}: unknown event kind {kind:?}"
                ));
            }
            if !inner.is_object() {
                self.violation(format!(
                    "request {request} line {line_no}: {kind} is not an object"
                ));
            }
            if accept {
                *self.counts.entry(kind.clone()).or_default() += 1;
                if keep {
                    self.events.push(Event {
                        kind: kind.clone(),
                        value: inner.clone(),
                        request,
                        line: line_no,
                    });
                }
            }
        }
        if !seen_any {
            self.violation(format!(
                "request {request}: empty intake body (no metadata line)"
            ));
        }
        self.violations.len() - before
    }
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
