//! `tower::Layer` for axum, hyper and tonic servers (feature `tower`; `axum` adds route names):
//! a [`tower`](https://docs.rs/tower) middleware that records every HTTP request a server
//! handles as a transaction: axum, hyper, tonic, anything built on `tower::Service` and
//! `http::Request`.
//!
#![cfg_attr(feature = "axum", doc = "```no_run")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use axum::{extract::Path, routing::get, Router};
//!
//! async fn user(Path(id): Path<u64>) -> String {
//!     format!("user {id}")
//! }
//!
//! let _agent = apm::init();
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(user))
//!     // `Router::layer` runs after routing: the transaction is named after the route
//!     // template, `GET /users/{id}`.
//!     .layer(apm::tower::ApmLayer::new());
//! // then serve `app` as usual, e.g. `axum::serve(listener, app).await`
//! ```
//!
//! For each request the service:
//!
//! - skips requests whose path matches `transaction_ignore_urls` or whose `User-Agent`
//!   matches `transaction_ignore_user_agents`: no transaction, the inner service is called
//!   as is;
//! - starts a transaction of type `request` that continues the caller's trace
//!   (`traceparent`, `tracestate`, as `trace_continuation_strategy` says), named after the
//!   method path of a gRPC call (`/package.Service/Method`, for a request whose
//!   `content-type` is `application/grpc*`, as the gRPC instrumentation spec says), else
//!   `<METHOD> <route>`: the route template from axum's `MatchedPath` (feature `axum`), else
//!   `<METHOD> unknown route`, as the HTTP instrumentation spec says; a name matching a
//!   `transaction_name_groups` pattern is replaced by the pattern;
//! - records `context.request` (method, full URL, HTTP version, headers and cookies,
//!   sanitised with `sanitize_field_names`) and `context.response` (status, headers), for
//!   sampled transactions only;
//! - runs the inner service's future inside the transaction, so `#[apm::span]` functions,
//!   spans and `capture_error!` in handlers belong to it;
//! - sets the result `HTTP Nxx` and the outcome from the status (`failure` for 5xx only:
//!   4xx is the client's fault); without a status (the inner service returned `Err`, or the
//!   handler panicked) the outcome is `failure` and no result is set;
//! - for a gRPC response, sets the result to the name of its `grpc-status` and the outcome
//!   the spec gives a server (`failure` for `UNAVAILABLE`, `INTERNAL`, ...; `success` for
//!   `NOT_FOUND`, ...), whether the status comes in the headers (a call that failed at once)
//!   or in the trailers after the messages (tonic's usual answer); a body dropped before its
//!   status is a `CANCELLED` call, one that fails is `UNKNOWN`, and the HTTP ones stand in
//!   if the body ends without a status;
//! - ends the transaction when the server has taken the last frame of the response's body,
//!   or dropped the body (the client went away): a streamed response's time is part of the
//!   transaction, the body is polled inside it (spans started while it streams belong to the
//!   request), and a body that fails or panics makes it a failure. A layer outside this one
//!   that replaces the body (axum drops the body of a `HEAD` response) ends it then;
//! - on a panic in the handler, sends an error event with the panic message, linked to the
//!   transaction, then lets the panic continue (the framework behaves as without the layer).
//!
//! Request bodies are captured only with axum and `CaptureBodyLayer` added outside
//! [`ApmLayer`] (`.layer(ApmLayer::new()).layer(CaptureBodyLayer::new())`): when
//! `capture_body` is not `off`, it buffers small textual bodies (a known
//! `Content-Length` up to its limit, 16 KiB by default) before the handler reads them, and the
//! transaction's `context.request.body` carries them (form fields sanitised). Otherwise the
//! body is sent as `[REDACTED]` (for POST, PUT, PATCH and DELETE; absent for the other
//! methods).
//!
//! Apply the layer with `Router::layer` on the outermost router: a layer around the whole
//! router (outside routing) sees no `MatchedPath` and names every transaction
//! `<METHOD> unknown route`; a layer on a nested router sees the path without the nest's
//! prefix.
//!
//! The responses' bodies are [`ResponseBody`]s wrapping the inner service's. `Router::layer`
//! turns them back into axum's body; where a service must answer with a body type of its own
//! (`axum::serve` of a service wrapped outside the router, for example), map it back:
//! `ServiceBuilder::new().map_response(|r: Response<_>| r.into_response()).layer(ApmLayer::new())`.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::http::header::{HOST, USER_AGENT};
use ::http::{HeaderMap, Request, Response, Version};
use pin_project_lite::pin_project;

use super::facade::{
    name_buffer, PendingEnd, ServerInstrumented as Instrumented, ServerTransaction,
};
use super::server::{HandlerPanic, ServerPolicy};
use crate::web::{self, rewrite};
use crate::Transaction;

/// The transaction type of server requests (spec: HTTP transactions are of type `request`).
const KIND: &str = "request";

/// A [`tower_layer::Layer`] that traces each request of the service it wraps (see the
/// [module documentation](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApmLayer {
    _private: (),
}

impl ApmLayer {
    /// The layer, with the agent's configuration deciding what is traced and how.
    pub fn new() -> ApmLayer {
        ApmLayer { _private: () }
    }
}

impl<S> ::tower_layer::Layer<S> for ApmLayer {
    type Service = ApmService<S>;

    fn layer(&self, inner: S) -> ApmService<S> {
        ApmService { inner }
    }
}

/// The service made by [`ApmLayer`]: traces each request, then calls `S`.
#[derive(Debug, Clone)]
pub struct ApmService<S> {
    inner: S,
}

impl<S> ApmService<S> {
    /// Wraps `inner` (the same as `ApmLayer::new().layer(inner)`).
    pub fn new(inner: S) -> ApmService<S> {
        ApmService { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> ::tower_service::Service<Request<ReqBody>> for ApmService<S>
where
    S: ::tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = ServerPolicy::current();
        let user_agent = || req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
        if policy.ignore(req.uri().path(), user_agent) {
            return ResponseFuture {
                state: State::Untraced {
                    fut: self.inner.call(req),
                },
            };
        }
        let name = transaction_name(&req, &policy);
        let txn = Transaction::start_with(name, KIND, req.headers());
        if txn.is_sampled() {
            txn.set_request_with(|request| write_request_context(&req, request));
        }
        // `call` itself may do work (a `service_fn`, a middleware's synchronous part): it runs
        // inside the transaction too.
        let fut = {
            let _entered = txn.attach();
            self.inner.call(req)
        };
        ResponseFuture {
            state: State::Traced {
                fut: txn.bind_until_handed_over(Recorded {
                    fut,
                    txn: txn.clone(),
                }),
                txn,
            },
        }
    }
}

pin_project! {
    /// The response future of [`ApmService`]: the inner service's future, run inside the
    /// request's transaction, which the response's body then ends.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        // Ignored by `transaction_ignore_urls` / `transaction_ignore_user_agents`.
        Untraced { #[pin] fut: F },
        Traced { #[pin] fut: Instrumented<Recorded<F>>, txn: Transaction },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Untraced { fut } => fut
                .poll(cx)
                .map_ok(|response| response.map(ResponseBody::untraced)),
            StateProj::Traced { mut fut, txn } => {
                let result = std::task::ready!(fut.as_mut().poll(cx));
                let pending = fut.take_pending_end();
                Poll::Ready(match result {
                    Ok(response) => {
                        let end = BodyEnd {
                            awaiting_grpc_status: record_response(txn, &response),
                            txn: txn.clone(),
                            pending,
                        };
                        Ok(response.map(|body| ResponseBody::traced(body, end)))
                    }
                    // No response, no status: a failure (spec `outcome.feature`, status "not
                    // available"); the transaction ends here.
                    Err(e) => {
                        txn.integration_failed();
                        pending.end();
                        Err(e)
                    }
                })
            }
        }
    }
}

pin_project! {
    /// The inner future, polled inside the transaction: reports a panic before it goes on.
    #[derive(Debug)]
    struct Recorded<F> {
        #[pin]
        fut: F,
        txn: Transaction,
    }
}

impl<F: Future> Future for Recorded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        reporting_panics(this.txn, || this.fut.poll(cx))
    }
}

/// Runs `poll` (inside the transaction's context); a panic is sent as an error linked to the
/// transaction, which fails, and then goes on unwinding (the framework sees it as without the
/// layer).
fn reporting_panics<T>(txn: &Transaction, poll: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(poll)) {
        Ok(polled) => polled,
        Err(payload) => {
            let panic = HandlerPanic::from_payload(&*payload);
            crate::capture_error!(panic);
            txn.integration_failed();
            resume_unwind(payload)
        }
    }
}

/// What a traced response's body ends: the transaction, with its result and outcome if they
/// still wait for a gRPC status from the trailers.
#[derive(Debug)]
struct BodyEnd {
    txn: Transaction,
    /// The HTTP status of a gRPC response whose status has not come yet.
    awaiting_grpc_status: Option<u16>,
    /// Ends the transaction when dropped (after `Drop::drop` below).
    pending: PendingEnd,
}

/// gRPC's codes for a call the client gave up (`CANCELLED`) and for a broken one (`UNKNOWN`).
const GRPC_CANCELLED: u32 = 1;
const GRPC_UNKNOWN: u32 = 2;

impl BodyEnd {
    /// The trailers are the body's last frame: their gRPC status, or none will come.
    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(status) = self.awaiting_grpc_status.take() {
            match grpc_status_code(trailers) {
                Some(code) => set_grpc_status(&self.txn, code),
                None => set_http_status(&self.txn, status),
            }
        }
    }

    /// The body was sent whole without a gRPC status: the HTTP one stands in.
    fn ended(mut self) {
        if let Some(status) = self.awaiting_grpc_status.take() {
            set_http_status(&self.txn, status);
        }
    }

    /// The body broke off: a failure (for gRPC, the client sees `UNKNOWN`).
    fn failed(mut self) {
        if self.awaiting_grpc_status.take().is_some() {
            set_grpc_status(&self.txn, GRPC_UNKNOWN);
        }
        self.txn.integration_failed();
    }
}

impl Drop for BodyEnd {
    /// Dropped before its end: the client went away (for gRPC, a cancelled call).
    fn drop(&mut self) {
        if self.awaiting_grpc_status.take().is_some() {
            set_grpc_status(&self.txn, GRPC_CANCELLED);
        }
    }
}

pin_project! {
    /// The body of a response from [`ApmService`]: the request's transaction ends when this
    /// body has been sent whole or is dropped. It is polled inside the transaction, and a gRPC
    /// status in its trailers gives the transaction's result and outcome.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        // First: when the body is dropped, the transaction ends before the inner body goes.
        end: Option<BodyEnd>,
        #[pin]
        inner: B,
    }
}

/// For layers outside this one that build bodies of their own (tower-http's CORS, timeout,
/// authorization and redirect layers answer some requests themselves).
impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::untraced(B::default())
    }
}

impl<B> ResponseBody<B> {
    fn untraced(inner: B) -> ResponseBody<B> {
        ResponseBody { inner, end: None }
    }

    fn traced(inner: B, end: BodyEnd) -> ResponseBody<B> {
        ResponseBody {
            inner,
            end: Some(end),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body; the transaction ends now if it has not.
    pub fn into_inner(self) -> B {
        let ResponseBody { inner, end } = self;
        drop(end);
        inner
    }
}

impl<B: ::http_body::Body> ::http_body::Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<::http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let inner = this.inner;
        let Some(end) = this.end.as_mut() else {
            return inner.poll_frame(cx);
        };
        let BodyEnd { txn, pending, .. } = end;
        let poll = pending.run(|| reporting_panics(txn, || inner.poll_frame(cx)));
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    end.trailers(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(end) = this.end.take() {
                    end.failed();
                }
            }
            Poll::Ready(None) => {
                if let Some(end) = this.end.take() {
                    end.ended();
                }
            }
            Poll::Pending => {}
        }
        poll
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> ::http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A gRPC call's method path (`/package.Service/Method`, spec
/// `tracing-instrumentation-grpc.md`); else `<METHOD> <route template>`, or
/// `<METHOD> unknown route` (spec `tracing-instrumentation-http.md`); replaced by its
/// `transaction_name_groups` pattern.
fn transaction_name<B>(req: &Request<B>, policy: &ServerPolicy) -> Cow<'static, str> {
    // Written into a spent name's string: once warm, a request's name allocates nothing.
    let mut name = name_buffer();
    if is_grpc(req.headers()) {
        name.push_str(req.uri().path());
    } else {
        let route = matched_route(req).unwrap_or("unknown route");
        for part in [req.method().as_str(), " ", route] {
            name.push_str(part);
        }
    }
    policy.regroup(&mut name);
    Cow::Owned(name)
}

/// The route template the router matched (axum's `MatchedPath`).
#[cfg(feature = "axum")]
fn matched_route<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<::axum::extract::MatchedPath>()
        .map(|m| m.as_str())
}

/// Without a router that says, no route is known.
#[cfg(not(feature = "axum"))]
fn matched_route<B>(_req: &Request<B>) -> Option<&str> {
    None
}

/// `context.request`: method, full URL, version, headers, written over `request`'s strings
/// (an earlier request's); the body only when captured.
fn write_request_context<B>(req: &Request<B>, request: &mut web::Request) {
    // axum's `into_make_service_with_connect_info` puts the peer address in the extensions.
    #[cfg(feature = "axum")]
    let (remote_address, body) = (
        req.extensions()
            .get::<::axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
        req.extensions()
            .get::<body::CapturedBody>()
            .map(|b| b.0.clone()),
    );
    #[cfg(not(feature = "axum"))]
    let (remote_address, body) = (None, None);
    rewrite::request(
        request,
        req.method().as_str(),
        |url| write_full_url(req, url),
        http_version(req.version()),
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        remote_address,
        body,
    );
}

#[cfg(feature = "axum")]
pub use body::{CaptureBody, CaptureBodyLayer};

/// Request body capture for axum (`capture_body`).
#[cfg(feature = "axum")]
mod body {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use ::axum::body::Body;
    use ::http::Request;

    use crate::integrations::server::ServerPolicy;

    /// A captured request body, handed from [`CaptureBody`] to the transaction through the
    /// request's extensions.
    #[derive(Debug, Clone)]
    pub(super) struct CapturedBody(pub(super) String);

    /// Buffers small textual request bodies so that the transaction records them (see the
    /// [module documentation](super)). Add it *outside* `ApmLayer`.
    #[derive(Debug, Clone, Copy)]
    pub struct CaptureBodyLayer {
        limit: usize,
    }

    impl CaptureBodyLayer {
        /// Captures bodies up to 16 KiB.
        pub fn new() -> CaptureBodyLayer {
            CaptureBodyLayer {
                limit: crate::integrations::server::DEFAULT_BODY_LIMIT,
            }
        }

        /// Captures bodies up to `bytes`.
        pub fn limit(bytes: usize) -> CaptureBodyLayer {
            CaptureBodyLayer { limit: bytes }
        }
    }

    impl Default for CaptureBodyLayer {
        fn default() -> Self {
            CaptureBodyLayer::new()
        }
    }

    impl<S> ::tower_layer::Layer<S> for CaptureBodyLayer {
        type Service = CaptureBody<S>;
        fn layer(&self, inner: S) -> CaptureBody<S> {
            CaptureBody {
                inner,
                limit: self.limit,
            }
        }
    }

    /// The service of [`CaptureBodyLayer`].
    #[derive(Debug, Clone)]
    pub struct CaptureBody<S> {
        inner: S,
        limit: usize,
    }

    fn capturable(req: &Request<Body>, limit: usize) -> bool {
        use ::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        crate::integrations::server::body_capturable(
            header(CONTENT_TYPE),
            header(CONTENT_LENGTH),
            limit,
        )
    }

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    impl<S> ::tower_service::Service<Request<Body>> for CaptureBody<S>
    where
        S: ::tower_service::Service<Request<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = BoxFuture<Result<S::Response, S::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: Request<Body>) -> Self::Future {
            if !ServerPolicy::current().capture_body() || !capturable(&req, self.limit) {
                return Box::pin(self.inner.call(req));
            }
            // The ready service is used later, in the future (tower's usual pattern).
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            let limit = self.limit;
            Box::pin(async move {
                let mut inner = ready;
                let (mut parts, body) = req.into_parts();
                // Within the announced length, `to_bytes` only fails when the client breaks
                // off; the handler then gets what the client sent: nothing.
                let bytes = ::axum::body::to_bytes(body, limit)
                    .await
                    .unwrap_or_default();
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    parts.extensions.insert(CapturedBody(text.to_owned()));
                }
                inner
                    .call(Request::from_parts(parts, Body::from(bytes)))
                    .await
            })
        }
    }
}

/// The URL as the client asked for it: the request target when it is absolute (HTTP/2, a
/// proxy request), else `http://` + `Host` + path and query; only path and query when
/// there is no host at all.
/// The full URL (scheme, host, port, path, query), appended to `url`.
fn write_full_url<B>(req: &Request<B>, url: &mut String) {
    let uri = req.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(host) = host {
        for part in [scheme, "://", host] {
            url.push_str(part);
        }
    }
    url.push_str(path_and_query);
}

fn http_version(version: Version) -> Option<&'static str> {
    match version {
        Version::HTTP_09 => Some("0.9"),
        Version::HTTP_10 => Some("1.0"),
        Version::HTTP_11 => Some("1.1"),
        Version::HTTP_2 => Some("2"),
        Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(::http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc-status` in headers or trailers; present but unreadable, UNKNOWN (2), as gRPC
/// reads it.
fn grpc_status_code(headers: &HeaderMap) -> Option<u32> {
    let status = headers.get("grpc-status")?;
    Some(
        status
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2),
    )
}

fn set_grpc_status(txn: &Transaction, code: u32) {
    txn.default_result(web::grpc_status_name(code));
    txn.default_outcome(web::grpc_server_outcome(code));
}

fn set_http_status(txn: &Transaction, status: u16) {
    txn.default_result(web::result_for_status(status));
    txn.default_outcome(web::outcome_for_status(status));
}

/// `context.response`, and the result and outcome from the status. A gRPC response carries its
/// status in the headers when the call failed at once ("trailers-only", as tonic answers an
/// `Err(Status)`), else in the trailers after the messages: then this returns the HTTP status,
/// to stand in if none comes.
fn record_response<B>(txn: &Transaction, response: &Response<B>) -> Option<u16> {
    let status = response.status().as_u16();
    if txn.is_sampled() {
        txn.set_response_with(|context| {
            let headers = response.headers().iter();
            rewrite::response(
                context,
                status,
                headers.map(|(n, v)| (n.as_str(), v.as_bytes())),
            );
        });
    }
    if !is_grpc(response.headers()) {
        set_http_status(txn, status);
        return None;
    }
    match grpc_status_code(response.headers()) {
        Some(code) => {
            set_grpc_status(txn, code);
            None
        }
        None => Some(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_context_written_over_an_earlier_one_carries_nothing_of_it() {
        let mut earlier = web::Request::new("POST", "http://old.example/long/path?q=1")
            .http_version("1.0")
            .header("a", "b")
            .header("c", "d")
            .remote_address("10.0.0.1")
            .body("old body");
        let req = Request::builder()
            .uri("/only")
            .version(Version::HTTP_2)
            .header("h", "v")
            .body(())
            .unwrap_or_default();
        let mut fresh = web::Request::default();
        write_request_context(&req, &mut earlier);
        write_request_context(&req, &mut fresh);
        assert_eq!(earlier, fresh);
        assert_eq!(fresh.method, "GET");
        assert_eq!(fresh.headers, [("h".to_owned(), "v".to_owned())]);
    }

    fn url_of<B>(req: &Request<B>) -> String {
        let mut url = String::new();
        write_full_url(req, &mut url);
        url
    }

    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Sync>(_: &T) {}

    #[test]
    fn url_from_host_header_or_absolute_target() {
        let req = Request::builder()
            .uri("/a/b?x=1")
            .header(HOST, "example.com:8080")
            .body(())
            .unwrap_or_default();
        assert_eq!(url_of(&req), "http://example.com:8080/a/b?x=1");
        let req = Request::builder()
            .uri("https://h2.example.com/p")
            .body(())
            .unwrap_or_default();
        assert_eq!(url_of(&req), "https://h2.example.com/p");
        let req = Request::builder().uri("/only").body(()).unwrap_or_default();
        assert_eq!(url_of(&req), "/only");
    }

    #[test]
    fn versions() {
        assert_eq!(http_version(Version::HTTP_10), Some("1.0"));
        assert_eq!(http_version(Version::HTTP_11), Some("1.1"));
        assert_eq!(http_version(Version::HTTP_2), Some("2"));
        assert_eq!(http_version(Version::HTTP_3), Some("3"));
    }

    #[test]
    fn unknown_route_without_matched_path() {
        let req = Request::builder()
            .method("POST")
            .uri("/x")
            .body(())
            .unwrap_or_default();
        assert_eq!(
            transaction_name(&req, &ServerPolicy::default()),
            "POST unknown route"
        );
    }

    #[test]
    fn panic_messages() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(HandlerPanic::from_payload(&*p).to_string(), "static");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned 7"));
        assert_eq!(HandlerPanic::from_payload(&*p).to_string(), "owned 7");
        let p: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert!(HandlerPanic::from_payload(&*p)
            .to_string()
            .contains("non-string"));
    }

    #[test]
    fn response_future_and_body_are_send_when_the_inner_ones_are() {
        let fut = ResponseFuture {
            state: State::Traced {
                fut: Transaction::default().bind_until_handed_over(Recorded {
                    fut: std::future::ready(Ok::<_, ()>(Response::new(()))),
                    txn: Transaction::default(),
                }),
                txn: Transaction::default(),
            },
        };
        assert_send(&fut);
        let mut fut = Box::pin(fut);
        let Poll::Ready(Ok(response)) = fut
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        else {
            panic!("a ready inner future gives a response at once");
        };
        assert_send(&response);
        assert_sync(&response);
    }
}
