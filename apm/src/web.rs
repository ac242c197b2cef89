//! What a web framework integration records about a request and its response
//! (`context.request`, `context.response` of the transaction). Sanitised (`sanitize_field_names`)
//! and shaped for the intake protocol on the transport thread, not here.

/// An incoming HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full URL (scheme, host, port, path, query) as the server saw it.
    pub url: String,
    /// `1.1`, `2`, …
    pub http_version: Option<String>,
    /// Every header, in order (cookies are taken from the `Cookie` header).
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub remote_address: Option<String>,
    /// The body, when `capture_body` allows it; otherwise sent as `[REDACTED]`.
    pub body: Option<String>,
}

impl Request {
    /// A request with its method and full URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            ..Request::default()
        }
    }

    /// Sets the HTTP version (`1.1`, `2`).
    pub fn http_version(mut self, version: impl Into<String>) -> Request {
        self.http_version = Some(version.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the peer's address.
    pub fn remote_address(mut self, address: impl Into<String>) -> Request {
        self.remote_address = Some(address.into());
        self
    }

    /// Sets the captured body.
    pub fn body(mut self, body: impl Into<String>) -> Request {
        self.body = Some(body.into());
        self
    }
}

/// The response to an HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    pub status_code: u16,
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// A response with its status.
    pub fn new(status_code: u16) -> Response {
        Response {
            status_code,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// `HTTP 2xx` … for a status code, as the spec names transaction results.
pub fn result_for_status(status: u16) -> &'static str {
    match status / 100 {
        1 => "HTTP 1xx",
        2 => "HTTP 2xx",
        3 => "HTTP 3xx",
        4 => "HTTP 4xx",
        5 => "HTTP 5xx",
        _ => "HTTP",
    }
}

/// The outcome of a server transaction with this status (5xx is a failure, 4xx is not: the
/// client erred, not the service).
pub fn outcome_for_status(status: u16) -> crate::Outcome {
    if status >= 500 {
        crate::Outcome::Failure
    } else {
        crate::Outcome::Success
    }
}

/// The name of a gRPC status code (`grpc-status`), as a gRPC transaction's result.
pub fn grpc_status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// The outcome of a gRPC server transaction with this status (spec `outcome.feature`): a
/// failure for the codes that say the service failed, a success for those that blame the
/// caller.
pub fn grpc_server_outcome(code: u32) -> crate::Outcome {
    match code {
        // UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED,
        // INTERNAL, UNAVAILABLE, DATA_LOSS; and codes gRPC does not define, which read as
        // UNKNOWN.
        0 | 1 | 3 | 5 | 6 | 7 | 11 | 12 | 16 => crate::Outcome::Success,
        _ => crate::Outcome::Failure,
    }
}

/// The live rules a server integration applies to each request: `transaction_ignore_urls`,
/// `transaction_ignore_user_agents`, `transaction_name_groups`, `capture_body`.
#[derive(Debug, Default)]
pub(crate) struct ServerPolicy {
    #[cfg(feature = "enable")]
    ignore_urls: crate::wildcard::WildcardList,
    #[cfg(feature = "enable")]
    ignore_user_agents: crate::wildcard::WildcardList,
    #[cfg(feature = "enable")]
    name_groups: Vec<(String, crate::wildcard::WildcardMatcher)>,
    capture_body: bool,
}

#[cfg(feature = "enable")]
impl ServerPolicy {
    pub(crate) fn from_config(c: &crate::Config) -> ServerPolicy {
        use crate::config::CaptureBody;
        use crate::wildcard::{WildcardList, WildcardMatcher};
        ServerPolicy {
            ignore_urls: WildcardList::parse(&c.transaction_ignore_urls),
            ignore_user_agents: WildcardList::parse(&c.transaction_ignore_user_agents),
            name_groups: c
                .transaction_name_groups
                .iter()
                .map(|p| (p.clone(), WildcardMatcher::new(p)))
                .collect(),
            // Bodies are read whenever something may send them; the serialiser keeps them out of
            // the events `capture_body` excludes.
            capture_body: c.capture_body != CaptureBody::Off,
        }
    }
}

#[allow(dead_code)] // used by the server integrations (optional features)
impl ServerPolicy {
    /// The rules in force now (nothing ignored when the agent is off).
    pub(crate) fn current() -> std::sync::Arc<ServerPolicy> {
        #[cfg(feature = "enable")]
        if let Some(t) = crate::tracer::get() {
            return t.server_policy();
        }
        std::sync::Arc::new(ServerPolicy::default())
    }

    /// Whether a request to `path` from `user_agent` is not to be traced.
    pub(crate) fn ignore(&self, path: &str, user_agent: Option<&str>) -> bool {
        #[cfg(feature = "enable")]
        {
            self.ignore_urls.any_match(path)
                || user_agent.is_some_and(|ua| self.ignore_user_agents.any_match(ua))
        }
        #[cfg(not(feature = "enable"))]
        {
            let _ = (path, user_agent);
            true
        }
    }

    /// The group a transaction name falls in (`transaction_name_groups`), if any.
    pub(crate) fn group<'a>(&'a self, name: &str) -> Option<&'a str> {
        #[cfg(feature = "enable")]
        {
            self.name_groups
                .iter()
                .find(|(_, m)| m.matches(name))
                .map(|(p, _)| p.as_str())
        }
        #[cfg(not(feature = "enable"))]
        {
            let _ = name;
            None
        }
    }

    /// Whether request bodies are read (`capture_body` is not `off`).
    pub(crate) fn capture_body(&self) -> bool {
        self.capture_body
    }
}

/// The error event of a request handler that panicked: its message is the panic's (server
/// integrations send it, then let the panic go on).
#[cfg(any(feature = "tower", feature = "actix-web"))]
#[derive(Debug)]
pub(crate) struct HandlerPanic(std::borrow::Cow<'static, str>);

#[cfg(any(feature = "tower", feature = "actix-web"))]
impl HandlerPanic {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> HandlerPanic {
        use std::borrow::Cow;
        if let Some(s) = payload.downcast_ref::<&'static str>() {
            HandlerPanic(Cow::Borrowed(s))
        } else if let Some(s) = payload.downcast_ref::<String>() {
            HandlerPanic(Cow::Owned(s.clone()))
        } else {
            HandlerPanic(Cow::Borrowed("handler panicked (non-string payload)"))
        }
    }
}

#[cfg(any(feature = "tower", feature = "actix-web"))]
impl std::fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(any(feature = "tower", feature = "actix-web"))]
impl std::error::Error for HandlerPanic {}

/// Request bodies larger than this are not captured by default (the spec leaves the limit to
/// agents).
#[cfg(any(feature = "axum", feature = "actix-web"))]
pub(crate) const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// Whether a request body is worth buffering for `capture_body`: textual, and of a known,
/// small length (a body of unknown length is never buffered: that could change how it
/// streams to the handler).
#[cfg(any(feature = "axum", feature = "actix-web"))]
pub(crate) fn body_capturable(
    content_type: Option<&str>,
    content_length: Option<&str>,
    limit: usize,
) -> bool {
    let textual = content_type.is_some_and(|t| {
        t.starts_with("text/")
            || t.starts_with("application/json")
            || t.starts_with("application/x-www-form-urlencoded")
            || t.starts_with("application/xml")
    });
    let small = content_length
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= limit);
    textual && small
}

#[cfg(all(test, feature = "enable"))]
mod tests {
    use super::*;

    /// The server columns of `outcome.feature`'s HTTP and gRPC tables, every row (a status
    /// of -1, "no status", is the integrations' business: they have no response then).
    #[test]
    fn server_outcomes_follow_the_outcome_feature() {
        let Some(feature) = crate::spec_fixture::read("gherkin-specs/outcome.feature") else {
            return;
        };
        let word = |o: crate::Outcome| o.as_str();
        let (mut http, mut grpc) = (0, 0);
        for line in feature.lines() {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let [status, _client, server] = cells[..] else {
                continue;
            };
            if let Ok(code) = status.parse::<i32>() {
                if let Ok(code) = u16::try_from(code) {
                    assert_eq!(word(outcome_for_status(code)), server, "HTTP {code}");
                    http += 1;
                }
            } else if let Some(code) = (0..17).find(|&c| grpc_status_name(c) == status) {
                assert_eq!(word(grpc_server_outcome(code)), server, "gRPC {status}");
                grpc += 1;
            }
        }
        assert!(
            http >= 6 && grpc >= 16,
            "{http} HTTP rows, {grpc} gRPC rows"
        );
    }
}
