//! Exit spans for [reqwest](https://docs.rs/reqwest) requests (feature `reqwest`; the blocking
//! client with `reqwest-blocking`).
//!
//! Send with [`RequestBuilderExt::send_traced`] instead of `send`, or with [`execute`] instead
//! of `Client::execute`. Inside a transaction each request becomes an exit span, as
//! `specs/agents/tracing-instrumentation-http.md` ("HTTP client spans") asks:
//!
//! - type `external`, subtype `http`, no action; name `<METHOD> <host>`, the host followed by
//!   `:<port>` when the URL names a port other than its scheme's default (the rule of the
//!   Python agent's HTTP clients), e.g. `GET api.example.com`, `POST 10.0.0.7:8080`;
//! - `context.http`: method, URL (its `user:password@` is removed when sent) and the
//!   response's `status_code`; `service.target` (`http`, `host:port`) and `destination` are
//!   inferred from the URL (`specs/agents/tracing-spans-service-target.md`);
//! - outcome `failure` for a status of 400 and above or when no response arrives (connection
//!   refused, timeout, ...), `success` otherwise (`outcome.feature`, "HTTP transaction and span
//!   outcome", client column);
//! - the request carries `traceparent` (this span as the parent) and `tracestate`, so the
//!   callee continues the trace. An unsampled transaction still propagates its context.
//! - the span ends when the response's headers arrive (reading the body is not timed) or when
//!   the request fails.
//!
//! Outside any transaction nothing is recorded, no header is added and nothing is allocated:
//! the request is sent exactly as `send` would send it. The application always gets reqwest's
//! own result, unchanged. A request that reqwest cannot build (an invalid URL or header) is
//! not sent, so it gets no span.
//!
//! ```no_run
//! use apm::reqwest::RequestBuilderExt as _;
//!
//! # async fn f() -> Result<(), reqwest::Error> {
//! let client = reqwest::Client::new();
//! let body = client
//!     .get("http://inventory.internal/items/7")
//!     .send_traced()
//!     .await?
//!     .text()
//!     .await?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::future::Future;

use super::facade::{spans_recorded_here, IdleSpan, OverLimitExit};
use crate::{Outcome, Span};

/// Sends `reqwest::RequestBuilder`s with an exit span (see the [module documentation](self)).
/// The blocking client has its own [`blocking::RequestBuilderExt`].
pub trait RequestBuilderExt: sealed::Sealed {
    /// Like `send`, with an exit span around the request and the trace context in its
    /// headers. The span starts (and the headers are written) when this is called, in the
    /// caller's context; the returned future is `Send + 'static`, so it can be spawned.
    fn send_traced(
        self,
    ) -> impl Future<Output = ::reqwest::Result<::reqwest::Response>> + Send + 'static;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::reqwest::RequestBuilder {}
    #[cfg(feature = "reqwest-blocking")]
    impl Sealed for ::reqwest::blocking::RequestBuilder {}
}

impl RequestBuilderExt for ::reqwest::RequestBuilder {
    fn send_traced(
        self,
    ) -> impl Future<Output = ::reqwest::Result<::reqwest::Response>> + Send + 'static {
        let (client, request) = self.build_split();
        let sending = request.map(|request| execute(&client, request));
        async move {
            match sending {
                Ok(sending) => sending.await,
                Err(e) => Err(e),
            }
        }
    }
}

/// `client.execute(request)` with an exit span around it, for code that builds its
/// `reqwest::Request`s itself. The span starts and the headers are written now, in the
/// caller's context; the returned future is `Send + 'static`.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = reqwest::Client::new();
/// let request = reqwest::Request::new(reqwest::Method::GET, "http://billing.internal/".parse()?);
/// let response = apm::reqwest::execute(&client, request).await?;
/// # Ok(()) }
/// ```
pub fn execute(
    client: &::reqwest::Client,
    mut request: ::reqwest::Request,
) -> impl Future<Output = ::reqwest::Result<::reqwest::Response>> + Send + 'static {
    let span: Option<Exit<Span>> = start(request.method(), request.url());
    if let Some(exit) = &span {
        ExitSpan::inject(&exit.span, request.headers_mut());
    }
    let response = client.execute(request);
    async move {
        let result = response.await;
        if let Some(mut span) = span {
            end(&mut span, result.as_ref().map(::reqwest::Response::status));
        }
        result
    }
}

/// The blocking client (feature `reqwest-blocking`).
#[cfg(feature = "reqwest-blocking")]
pub mod blocking {
    /// Sends `reqwest::blocking::RequestBuilder`s with an exit span (see [`super`]).
    pub trait RequestBuilderExt: super::sealed::Sealed {
        /// Like `send`, with an exit span around the request (on this thread, a child of the
        /// current span or transaction) and the trace context in its headers.
        fn send_traced(self) -> ::reqwest::Result<::reqwest::blocking::Response>;
    }

    impl RequestBuilderExt for ::reqwest::blocking::RequestBuilder {
        fn send_traced(self) -> ::reqwest::Result<::reqwest::blocking::Response> {
            let (client, request) = self.build_split();
            execute(&client, request?)
        }
    }

    /// `client.execute(request)` with an exit span around it (see [`super`]).
    ///
    /// ```no_run
    /// use apm::reqwest::blocking::RequestBuilderExt as _;
    ///
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = reqwest::blocking::Client::new();
    /// // With the builder:
    /// let status = client.get("http://billing.internal/").send_traced()?.status();
    /// // With a request built by hand:
    /// let request = client.get("http://billing.internal/").build()?;
    /// let response = apm::reqwest::blocking::execute(&client, request)?;
    /// # Ok(()) }
    /// ```
    pub fn execute(
        client: &::reqwest::blocking::Client,
        mut request: ::reqwest::blocking::Request,
    ) -> ::reqwest::Result<::reqwest::blocking::Response> {
        let span: Option<super::Exit<crate::SpanGuard>> =
            super::start(request.method(), request.url());
        if let Some(exit) = &span {
            super::ExitSpan::inject(&exit.span, request.headers_mut());
        }
        let result = client.execute(request);
        if let Some(mut span) = span {
            super::end(
                &mut span,
                result.as_ref().map(::reqwest::blocking::Response::status),
            );
        }
        result
    }
}

/// What the integration needs of a span handle: [`Span`] (async: the span is not current
/// anywhere while the request runs on the runtime) and [`SpanGuard`](crate::SpanGuard) (blocking: the span is
/// current on the calling thread, so its time is the parent's child time) have the same
/// methods but no common trait.
trait ExitSpan: Sized {
    fn start(name: String) -> Self;
    /// A handle that records nothing (headers still come from the current context).
    fn idle() -> Self;
    fn is_recording(&self) -> bool;
    /// Makes a recording span an HTTP exit span.
    fn start_http(&mut self, method: Cow<'static, str>, url: &str);
    fn inject(&self, headers: &mut ::http::HeaderMap);
    fn set_http_status(&mut self, status: u16);
    fn set_outcome(&mut self, outcome: Outcome);
}

macro_rules! impl_exit_span {
    ($handle:ty, $start:path) => {
        impl ExitSpan for $handle {
            fn start(name: String) -> Self {
                $start(name, "external")
            }
            fn idle() -> Self {
                <$handle as IdleSpan>::idle()
            }
            fn is_recording(&self) -> bool {
                <$handle>::is_recording(self)
            }
            fn start_http(&mut self, method: Cow<'static, str>, url: &str) {
                self.set_subtype("http");
                self.set_exit();
                self.set_http_request(method, url);
            }
            fn inject(&self, headers: &mut ::http::HeaderMap) {
                <$handle>::inject(self, headers);
            }
            fn set_http_status(&mut self, status: u16) {
                <$handle>::set_http_status(self, status);
            }
            fn set_outcome(&mut self, outcome: Outcome) {
                <$handle>::set_outcome(self, outcome);
            }
        }
    };
}

impl_exit_span!(Span, Span::start);
#[cfg(feature = "reqwest-blocking")]
impl_exit_span!(crate::SpanGuard, crate::start_span);

/// A request's exit span; past `transaction_max_spans`, an idle one (for the headers) and
/// the timing that counts the request in its transaction's `dropped_spans_stats`.
struct Exit<S> {
    span: S,
    over_limit: Option<OverLimitExit>,
}

impl<S: ExitSpan> Exit<S> {
    fn set_outcome(&mut self, outcome: Outcome) {
        self.span.set_outcome(outcome);
        if let Some(o) = &mut self.over_limit {
            o.set_outcome(outcome);
        }
    }
}

/// Starts the exit span of a request; `None` outside any transaction (then no header is
/// written and nothing allocated).
fn start<S: ExitSpan>(method: &::reqwest::Method, url: &::reqwest::Url) -> Option<Exit<S>> {
    if crate::Context::current().is_empty() {
        return None;
    }
    if !spans_recorded_here() {
        // Unsampled: headers only, no name built.
        return Some(Exit {
            span: S::idle(),
            over_limit: None,
        });
    }
    let method = method_name(method);
    let mut span = S::start(span_name(&method, url));
    let over_limit = if span.is_recording() {
        span.start_http(method, url.as_str());
        None
    } else {
        OverLimitExit::start_http(url.as_str())
    };
    let mut exit = Exit { span, over_limit };
    // Until a response or an error decides it: a request dropped before either (a cancelled
    // future) ends with outcome `unknown`, as the HTTP client spec says.
    exit.set_outcome(Outcome::Unknown);
    Some(exit)
}

/// Records the response status (or the failure to get one); the span ends when dropped.
fn end<S: ExitSpan>(exit: &mut Exit<S>, status: Result<::reqwest::StatusCode, &::reqwest::Error>) {
    match status {
        Ok(status) => {
            exit.span.set_http_status(status.as_u16());
            exit.set_outcome(if status.as_u16() >= 400 {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
        Err(e) => {
            // An error can carry a status (a redirect loop, for one).
            if let Some(status) = e.status() {
                exit.span.set_http_status(status.as_u16());
            }
            exit.set_outcome(Outcome::Failure);
        }
    }
}

/// The method as a `'static` string for the standard methods (no allocation).
fn method_name(method: &::reqwest::Method) -> Cow<'static, str> {
    match method.as_str() {
        "GET" => Cow::Borrowed("GET"),
        "POST" => Cow::Borrowed("POST"),
        "PUT" => Cow::Borrowed("PUT"),
        "DELETE" => Cow::Borrowed("DELETE"),
        "HEAD" => Cow::Borrowed("HEAD"),
        "OPTIONS" => Cow::Borrowed("OPTIONS"),
        "PATCH" => Cow::Borrowed("PATCH"),
        "CONNECT" => Cow::Borrowed("CONNECT"),
        "TRACE" => Cow::Borrowed("TRACE"),
        other => Cow::Owned(other.to_owned()),
    }
}

/// `<METHOD> <host>[:<port>]`: `Url::port` is `None` for the scheme's default port.
fn span_name(method: &str, url: &::reqwest::Url) -> String {
    use std::fmt::Write as _;
    let host = url.host_str().unwrap_or_default();
    let mut name = String::with_capacity(method.len() + 1 + host.len() + 6);
    name.push_str(method);
    name.push(' ');
    name.push_str(host);
    if let Some(port) = url.port() {
        // Writing to a `String` cannot fail.
        let _ = write!(name, ":{port}");
    }
    name
}

/// `exception.code` of a reqwest error that carries a status (`error_for_status`).
#[cfg(feature = "enable")]
pub(crate) fn error_code(
    e: &(dyn std::error::Error + 'static),
) -> Option<super::facade::ErrorCode> {
    let status = super::facade::downcast::<::reqwest::Error>(e)?.status()?;
    Some(super::facade::ErrorCode::Status(status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: ::reqwest::Method, url: &str) -> String {
        let url: ::reqwest::Url = url.parse().expect("a valid URL");
        span_name(&method_name(&method), &url)
    }

    #[test]
    fn names_are_method_and_host_with_a_non_default_port() {
        assert_eq!(
            name(::reqwest::Method::GET, "https://a.example/x"),
            "GET a.example"
        );
        assert_eq!(
            name(::reqwest::Method::GET, "https://a.example:443/x"),
            "GET a.example"
        );
        assert_eq!(
            name(::reqwest::Method::POST, "http://u:p@10.0.0.7:8080/x?y"),
            "POST 10.0.0.7:8080"
        );
        assert_eq!(
            name(::reqwest::Method::PUT, "http://[::1]:81/"),
            "PUT [::1]:81"
        );
        let purge = ::reqwest::Method::from_bytes(b"PURGE").expect("a valid method");
        assert_eq!(name(purge, "http://cache/"), "PURGE cache");
    }

    #[test]
    fn futures_are_send_and_static() {
        fn send_static<T: Send + 'static>(_: &T) {}
        let client = ::reqwest::Client::new();
        send_static(&client.get("http://127.0.0.1:9/").send_traced());
        let request = ::reqwest::Request::new(
            ::reqwest::Method::GET,
            "http://127.0.0.1:9/".parse().expect("a valid URL"),
        );
        send_static(&execute(&client, request));
    }
}
