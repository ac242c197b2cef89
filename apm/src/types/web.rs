//! What a web framework integration records about a request and its response
//! (`context.request`, `context.response` of the transaction). Sanitised (`sanitize_field_names`)
//! and shaped for the intake protocol on the transport thread, not here.

use super::outcome::Outcome;

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
    /// The body, when `capture_body` allows it; otherwise sent as `[REDACTED]` for a method
    /// that carries a body (POST, PUT, PATCH, DELETE), and not at all for the others.
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
    /// The HTTP status code.
    pub status_code: u16,
    /// Every header, in order.
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
pub fn outcome_for_status(status: u16) -> Outcome {
    if status >= 500 {
        Outcome::Failure
    } else {
        Outcome::Success
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
pub fn grpc_server_outcome(code: u32) -> Outcome {
    match code {
        // UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED,
        // INTERNAL, UNAVAILABLE, DATA_LOSS; and codes gRPC does not define, which read as
        // UNKNOWN.
        0 | 1 | 3 | 5 | 6 | 7 | 11 | 12 | 16 => Outcome::Success,
        _ => Outcome::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server columns of `outcome.feature`'s HTTP and gRPC tables, every row (a status
    /// of -1, "no status", is the integrations' business: they have no response then).
    #[test]
    fn server_outcomes_follow_the_outcome_feature() {
        let Some(feature) = crate::util::spec_fixture::read("gherkin-specs/outcome.feature") else {
            return;
        };
        let word = |o: Outcome| o.as_str();
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
        // Every row: 6 HTTP statuses (and -1) and the 17 gRPC codes (and n/a).
        assert_eq!((http, grpc), (6, 17), "HTTP rows, gRPC rows");
    }
}

/// Writing a request's or a response's context over an earlier one's (server integrations,
/// with the spent contexts `queue/spare.rs` keeps per thread): each string keeps its room, so
/// that once warm nothing is allocated per header.
#[cfg(apm_server)]
pub(crate) mod rewrite {
    /// `slot` becomes `text`.
    pub(crate) fn text(slot: &mut String, text: &str) {
        slot.clear();
        slot.push_str(text);
    }

    /// `slot` becomes what `write` appends to an empty string.
    pub(crate) fn optional_with(slot: &mut Option<String>, write: impl FnOnce(&mut String)) {
        let slot = slot.get_or_insert_with(String::new);
        slot.clear();
        write(slot);
    }

    /// `slot` becomes `text`, or nothing.
    pub(crate) fn optional(slot: &mut Option<String>, text: Option<&str>) {
        match text {
            Some(t) => optional_with(slot, |s| s.push_str(t)),
            None => *slot = None,
        }
    }

    /// `request` becomes the request of these parts, every field written (named without
    /// `..`: a field added to [`Request`](super::Request) must be written here too).
    pub(crate) fn request<'a>(
        request: &mut super::Request,
        method: &str,
        write_url: impl FnOnce(&mut String),
        http_version: Option<&str>,
        header_pairs: impl Iterator<Item = (&'a str, &'a [u8])>,
        remote_address: Option<std::net::IpAddr>,
        captured_body: Option<String>,
    ) {
        let super::Request {
            method: rec_method,
            url,
            http_version: version,
            headers: pairs,
            remote_address: address,
            body,
        } = request;
        text(rec_method, method);
        url.clear();
        write_url(url);
        optional(version, http_version);
        headers(pairs, header_pairs);
        match remote_address {
            Some(ip) => optional_with(address, |s| {
                use std::fmt::Write as _;
                let _ = write!(s, "{ip}");
            }),
            None => *address = None,
        }
        *body = captured_body;
    }

    /// `response` becomes the response of these parts, every field written (named as in
    /// [`request`]).
    pub(crate) fn response<'a>(
        response: &mut super::Response,
        status: u16,
        header_pairs: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) {
        let super::Response {
            status_code,
            headers: pairs,
        } = response;
        *status_code = status;
        headers(pairs, header_pairs);
    }

    /// `pairs` become `headers`, in order; a value that is not UTF-8 is written lossily.
    pub(crate) fn headers<'a>(
        pairs: &mut Vec<(String, String)>,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) {
        let mut written = 0;
        for (name, value) in headers {
            let value = if value.is_ascii() {
                // Nearly every value: ASCII is tested a word at a time, for a fraction of what
                // UTF-8 validation and the lossy conversion's walk cost on every request.
                // SAFETY: ASCII is UTF-8.
                std::borrow::Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(value) })
            } else {
                String::from_utf8_lossy(value)
            };
            match pairs.get_mut(written) {
                Some((n, v)) => {
                    text(n, name);
                    text(v, &value);
                }
                None => pairs.push((name.to_owned(), value.into_owned())),
            }
            written += 1;
        }
        pairs.truncate(written);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn headers_written_over_earlier_ones_keep_their_room_and_only_the_new_pairs() {
            let mut pairs = Vec::new();
            headers(
                &mut pairs,
                [("host", &b"a.example"[..]), ("accept", b"*/*"), ("x", b"1")].into_iter(),
            );
            let room = pairs[0].1.as_ptr();
            headers(
                &mut pairs,
                [
                    ("host", &b"b.example"[..]),
                    ("bad", b"\xff\xfe"),
                    ("text", "caf\u{e9}".as_bytes()),
                ]
                .into_iter(),
            );
            assert_eq!(
                pairs,
                [
                    ("host".to_owned(), "b.example".to_owned()),
                    ("bad".to_owned(), "\u{fffd}\u{fffd}".to_owned()),
                    ("text".to_owned(), "caf\u{e9}".to_owned()),
                ]
            );
            assert_eq!(pairs[0].1.as_ptr(), room, "the value was written in place");
            let mut slot = Some("1.1".to_owned());
            optional(&mut slot, None);
            assert_eq!(slot, None);
            optional(&mut slot, Some("2"));
            assert_eq!(slot.as_deref(), Some("2"));
        }
    }
}
