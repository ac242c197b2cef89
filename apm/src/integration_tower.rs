//! A [`tower`](https://docs.rs/tower) middleware that records every HTTP request a server
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
//!   (`traceparent`, `tracestate`, as `trace_continuation_strategy` says), named
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
//!   handler panicked) the outcome is `failure` and no result is set. A gRPC response with
//!   its `grpc-status` in the headers (a call that failed at once) gives the status's name as
//!   result and the spec's server outcome (`failure` for `UNAVAILABLE`, `INTERNAL`, ...;
//!   `success` for `NOT_FOUND`, ...); one whose status comes in trailers keeps the HTTP ones;
//! - on a panic in the handler, sends an error event with the panic message, linked to the
//!   transaction, then lets the panic continue (the framework behaves as without the layer).
//!
//! Request bodies are captured only with axum and [`CaptureBodyLayer`] added outside
//! [`ApmLayer`] (`.layer(ApmLayer::new()).layer(CaptureBodyLayer::new())`): when
//! `capture_body` is not `off`, it buffers small textual bodies (a known
//! `Content-Length` up to its limit, 16 KiB by default) before the handler reads them, and the
//! transaction's `context.request.body` carries them (form fields sanitised). Otherwise the
//! body is sent as `[REDACTED]`.
//!
//! Apply the layer with `Router::layer` on the outermost router: a layer around the whole
//! router (outside routing) sees no `MatchedPath` and names every transaction
//! `<METHOD> unknown route`; a layer on a nested router sees the path without the nest's
//! prefix.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::http::header::{HOST, USER_AGENT};
use ::http::{Request, Response, Version};
use pin_project_lite::pin_project;

use crate::web::{self, ServerPolicy};
use crate::{Transaction, WithContext};

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
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = ServerPolicy::current();
        let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
        if policy.ignore(req.uri().path(), user_agent) {
            return ResponseFuture {
                state: State::Untraced {
                    fut: self.inner.call(req),
                },
            };
        }
        let name = transaction_name(&req, &policy);
        drop(policy);
        let txn = Transaction::start_with(name, KIND, req.headers());
        if txn.is_sampled() {
            txn.set_request(request_context(&req));
        }
        // `call` itself may do work (a `service_fn`, a middleware's synchronous part): it runs
        // inside the transaction too.
        let fut = {
            let _entered = txn.context().attach();
            self.inner.call(req)
        };
        ResponseFuture {
            state: State::Traced {
                fut: txn.bind(Recorded {
                    fut,
                    txn: txn.clone(),
                }),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ApmService`]: the inner service's future, run inside the
    /// request's transaction, which it ends.
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
        Traced { #[pin] fut: WithContext<Recorded<F>> },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().state.project() {
            StateProj::Untraced { fut } => fut.poll(cx),
            StateProj::Traced { fut } => fut.poll(cx),
        }
    }
}

pin_project! {
    /// The inner future, polled inside the transaction: records the response, or the panic,
    /// before the transaction ends.
    #[derive(Debug)]
    struct Recorded<F> {
        #[pin]
        fut: F,
        txn: Transaction,
    }
}

impl<F, ResBody, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut fut = this.fut;
        let poll = match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                // Still inside the transaction's context: the error is linked to it.
                let panic = crate::web::HandlerPanic::from_payload(&*payload);
                crate::capture_error!(panic);
                this.txn.integration_failed();
                resume_unwind(payload)
            }
        };
        if let Poll::Ready(result) = &poll {
            record_response(this.txn, result);
        }
        poll
    }
}

/// `<METHOD> <route template>`, or `<METHOD> unknown route` (spec
/// `tracing-instrumentation-http.md`), replaced by its `transaction_name_groups` pattern.
fn transaction_name<B>(req: &Request<B>, policy: &ServerPolicy) -> Cow<'static, str> {
    let route = matched_route(req).unwrap_or("unknown route");
    let name = format!("{} {route}", req.method().as_str());
    match policy.group(&name) {
        Some(group) => Cow::Owned(group.to_owned()),
        None => Cow::Owned(name),
    }
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

/// `context.request`: method, full URL, version, headers; no body.
fn request_context<B>(req: &Request<B>) -> web::Request {
    let mut request = web::Request::new(req.method().as_str(), full_url(req));
    request.http_version = http_version(req.version()).map(str::to_owned);
    request.headers = header_pairs(req.headers());
    // axum's `into_make_service_with_connect_info` puts the peer address in the extensions.
    #[cfg(feature = "axum")]
    {
        request.remote_address = req
            .extensions()
            .get::<::axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        request.body = req
            .extensions()
            .get::<body::CapturedBody>()
            .map(|b| b.0.clone());
    }
    request
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

    use crate::web::ServerPolicy;

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
                limit: crate::web::DEFAULT_BODY_LIMIT,
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
        crate::web::body_capturable(header(CONTENT_TYPE), header(CONTENT_LENGTH), limit)
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
fn full_url<B>(req: &Request<B>) -> String {
    let uri = req.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    match host {
        Some(host) => format!("{scheme}://{host}{path_and_query}"),
        None => path_and_query.to_owned(),
    }
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

fn header_pairs(headers: &::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The status of a gRPC response that carries it in its headers: a call that failed at once
/// ("trailers-only", as tonic answers an `Err(Status)`). Otherwise it comes in trailers, after
/// the response: the HTTP status stands in.
fn grpc_status(headers: &::http::HeaderMap) -> Option<u32> {
    let grpc = headers
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if !grpc {
        return None;
    }
    // Present but unreadable: UNKNOWN (2), as gRPC reads it.
    let status = headers.get("grpc-status")?;
    Some(
        status
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2),
    )
}

/// Result, outcome and `context.response` from what the inner service returned.
fn record_response<B, E>(txn: &Transaction, result: &Result<Response<B>, E>) {
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            if txn.is_sampled() {
                let mut context = web::Response::new(status);
                context.headers = header_pairs(response.headers());
                txn.set_response(context);
            }
            match grpc_status(response.headers()) {
                Some(code) => {
                    txn.default_result(web::grpc_status_name(code));
                    txn.default_outcome(web::grpc_server_outcome(code));
                }
                None => {
                    txn.default_result(web::result_for_status(status));
                    txn.default_outcome(web::outcome_for_status(status));
                }
            }
        }
        // No response, no status: a failure (spec `outcome.feature`, status "not available").
        Err(_) => txn.integration_failed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn url_from_host_header_or_absolute_target() {
        let req = Request::builder()
            .uri("/a/b?x=1")
            .header(HOST, "example.com:8080")
            .body(())
            .unwrap_or_default();
        assert_eq!(full_url(&req), "http://example.com:8080/a/b?x=1");
        let req = Request::builder()
            .uri("https://h2.example.com/p")
            .body(())
            .unwrap_or_default();
        assert_eq!(full_url(&req), "https://h2.example.com/p");
        let req = Request::builder().uri("/only").body(()).unwrap_or_default();
        assert_eq!(full_url(&req), "/only");
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
        assert_eq!(
            crate::web::HandlerPanic::from_payload(&*p).to_string(),
            "static"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned 7"));
        assert_eq!(
            crate::web::HandlerPanic::from_payload(&*p).to_string(),
            "owned 7"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert!(crate::web::HandlerPanic::from_payload(&*p)
            .to_string()
            .contains("non-string"));
    }

    #[test]
    fn response_future_is_send_when_the_inner_one_is() {
        let fut = ResponseFuture {
            state: State::Traced {
                fut: Transaction::default().bind(Recorded {
                    fut: std::future::ready(Ok::<_, ()>(Response::new(()))),
                    txn: Transaction::default(),
                }),
            },
        };
        assert_send(&fut);
    }
}
