//! Exit spans for [minreq](https://docs.rs/minreq) requests (feature `minreq-client`).
//!
//! A `minreq::Request` cannot tell its method or URL, so this module creates the request
//! itself: [`send`] takes the method and the URL, lets a closure add headers, body, timeout
//! and so on to the `minreq::Request`, then sends it inside an exit span:
//!
//! ```no_run
//! let response = apm::minreq::send(minreq::Method::Post, "http://billing.internal/charge", |r| {
//!     r.with_header("content-type", "application/json")
//!         .with_body(r#"{"order":7}"#)
//!         .with_timeout(5)
//! })?;
//! # Ok::<(), minreq::Error>(())
//! ```
//!
//! Inside a transaction the request becomes an exit span, child of the current span or
//! transaction on this thread, as `specs/agents/tracing-instrumentation-http.md` ("HTTP
//! client spans") asks:
//!
//! - type `external`, subtype `http`, no action; name `<METHOD> <host>`, the host followed by
//!   `:<port>` when the URL names a port other than its scheme's default (the rule of the
//!   Python agent's HTTP clients), e.g. `GET api.example.com`, `POST 10.0.0.7:8080`;
//! - `context.http`: method, URL (its `user:password@` is removed when sent; query
//!   parameters added with `with_param` are not part of it) and `status_code`;
//!   `service.target` (`http`, `host:port`) and `destination` are inferred from the URL
//!   (`specs/agents/tracing-spans-service-target.md`);
//! - outcome `failure` for a status of 400 and above or when no response arrives (connection
//!   refused, timeout, ...), `success` otherwise (`outcome.feature`, "HTTP transaction and span
//!   outcome", client column);
//! - the request carries `traceparent` (this span as the parent) and `tracestate`, so the
//!   callee continues the trace; an unsampled transaction still propagates its context.
//!
//! Outside any transaction nothing is recorded, no header is added and nothing is allocated
//! beyond the request itself. The application always gets minreq's own result, unchanged.

use std::borrow::Cow;

use super::facade::{spans_recorded_here, IdleSpan, OverLimitExit};
use crate::{Outcome, SpanGuard};

/// Creates a request with `method` and `url`, lets `build` complete it, then sends it inside
/// an exit span. The span covers the whole exchange, body included, as `minreq`'s `send`
/// reads the body before returning; [`send_lazy`] ends it when the headers arrive.
pub fn send(
    method: ::minreq::Method,
    url: impl Into<String>,
    build: impl FnOnce(::minreq::Request) -> ::minreq::Request,
) -> Result<::minreq::Response, ::minreq::Error> {
    traced(method, url.into(), build, ::minreq::Request::send, |r| {
        r.status_code
    })
}

/// Like [`send`] with `minreq`'s `send_lazy`: the span ends when the response's headers
/// arrive, and the body is read from the returned `ResponseLazy` afterwards.
///
/// ```no_run
/// use std::io::Read as _;
///
/// let mut response =
///     apm::minreq::send_lazy(minreq::Method::Get, "http://files.internal/a", |r| r)?;
/// let mut body = Vec::new();
/// response.read_to_end(&mut body)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_lazy(
    method: ::minreq::Method,
    url: impl Into<String>,
    build: impl FnOnce(::minreq::Request) -> ::minreq::Request,
) -> Result<::minreq::ResponseLazy, ::minreq::Error> {
    traced(
        method,
        url.into(),
        build,
        ::minreq::Request::send_lazy,
        |r| r.status_code,
    )
}

/// A `GET` of `url` with nothing added: `minreq::get(url).send()` inside an exit span.
///
/// ```no_run
/// let body = apm::minreq::get("http://inventory.internal/items/7")?.as_str()?.to_owned();
/// # Ok::<(), minreq::Error>(())
/// ```
pub fn get(url: impl Into<String>) -> Result<::minreq::Response, ::minreq::Error> {
    send(::minreq::Method::Get, url, |r| r)
}

fn traced<R>(
    method: ::minreq::Method,
    url: String,
    build: impl FnOnce(::minreq::Request) -> ::minreq::Request,
    send: impl FnOnce(::minreq::Request) -> Result<R, ::minreq::Error>,
    status: impl FnOnce(&R) -> i32,
) -> Result<R, ::minreq::Error> {
    if crate::Context::current().is_empty() {
        return send(build(::minreq::Request::new(method, url)));
    }
    let name = method_name(&method);
    // Unsampled: headers only, no name built.
    let mut span = if spans_recorded_here() {
        crate::start_span(span_name(&name, &url), "external")
    } else {
        SpanGuard::idle()
    };
    // Past `transaction_max_spans`: no span, but counted in `dropped_spans_stats`.
    let mut over_limit = None;
    if span.is_recording() {
        span.set_subtype("http");
        span.set_exit();
        span.set_http_request(name, url.as_str());
    } else if spans_recorded_here() {
        over_limit = OverLimitExit::start_http(&url);
    }
    let request = inject(&span, build(::minreq::Request::new(method, url)));
    let result = send(request);
    let outcome = match &result {
        Ok(response) => {
            let code = status(response);
            if let Ok(code) = u16::try_from(code) {
                span.set_http_status(code);
            }
            if code >= 400 {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        }
        Err(_) => Outcome::Failure,
    };
    span.set_outcome(outcome);
    if let Some(o) = &mut over_limit {
        o.set_outcome(outcome);
    }
    result
}

/// Adds `traceparent` and `tracestate` to a request (`with_header` consumes it, so the
/// headers are collected first; minreq takes ownership of the value strings anyway).
fn inject(span: &SpanGuard, request: ::minreq::Request) -> ::minreq::Request {
    // Room for every header `inject` writes (`traceparent`, `tracestate`, and a spare).
    let mut headers: [Option<(&'static str, String)>; 4] = Default::default();
    let mut next = headers.iter_mut();
    span.inject(&mut |name: &'static str, value: &str| {
        if let Some(slot) = next.next() {
            *slot = Some((name, value.to_owned()));
        }
    });
    headers
        .into_iter()
        .flatten()
        .fold(request, |r, (name, value)| r.with_header(name, value))
}

/// The method as a `'static` string for the standard methods (no allocation).
fn method_name(method: &::minreq::Method) -> Cow<'static, str> {
    use ::minreq::Method as M;
    Cow::Borrowed(match method {
        M::Get => "GET",
        M::Head => "HEAD",
        M::Post => "POST",
        M::Put => "PUT",
        M::Delete => "DELETE",
        M::Connect => "CONNECT",
        M::Options => "OPTIONS",
        M::Trace => "TRACE",
        M::Patch => "PATCH",
        M::Custom(other) => return Cow::Owned(other.clone()),
    })
}

/// `<METHOD> <host>[:<port>]`, the port only when it is not the scheme's default.
fn span_name(method: &str, url: &str) -> String {
    let host = host(url);
    let mut name = String::with_capacity(method.len() + 1 + host.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(host);
    name
}

/// The authority of `url` without user information, and without the port when it is the
/// scheme's default one (`""` when the URL has none).
fn host(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "";
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        return authority;
    };
    authority.strip_suffix(default_port).unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_method_and_host_with_a_non_default_port() {
        let name = |m: ::minreq::Method, url: &str| span_name(&method_name(&m), url);
        assert_eq!(
            name(::minreq::Method::Get, "https://a.example/x"),
            "GET a.example"
        );
        assert_eq!(
            name(::minreq::Method::Get, "https://a.example:443?x"),
            "GET a.example"
        );
        assert_eq!(
            name(::minreq::Method::Get, "http://a.example:80#x"),
            "GET a.example"
        );
        assert_eq!(
            name(::minreq::Method::Post, "http://u:p@10.0.0.7:8080/x?y=@"),
            "POST 10.0.0.7:8080"
        );
        assert_eq!(
            name(::minreq::Method::Put, "http://[::1]:81/"),
            "PUT [::1]:81"
        );
        assert_eq!(
            name(::minreq::Method::Custom("PURGE".into()), "http://cache"),
            "PURGE cache"
        );
        assert_eq!(name(::minreq::Method::Get, "not a url"), "GET ");
    }
}
