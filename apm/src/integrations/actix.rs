//! actix-web 4 middleware: one transaction per request (feature `actix-web`).
//!
//! [`ApmMiddleware`] starts a transaction of type `request` for every request that
//! `transaction_ignore_urls` / `transaction_ignore_user_agents` do not exclude, continuing the
//! trace of its `traceparent` / `tracestate` headers. The transaction is named after the
//! route template (`GET /users/{id}`), or `GET unknown route` when no route matches, and then
//! grouped by `transaction_name_groups`. It records `context.request` and `context.response`
//! (sanitised when sent), the result (`HTTP 2xx` …) and the outcome (5xx is a failure, 4xx is
//! not). The rest of the chain and the handler run inside the transaction, so
//! `#[apm::span]` functions they call are its children.
//!
//! A handler that panics, a 5xx response carrying an error (a handler's `Err`), and an `Err`
//! coming out of the inner service are captured as error events and end the transaction with
//! outcome `failure`; the panic itself goes on unwinding as before.
//!
//! The transaction ends when the response's body has been sent whole, or dropped (the client
//! went away): a streamed body's time is part of the transaction, the body is polled inside it
//! (spans started while it streams belong to the request), and a body that fails or panics
//! makes it a failure. The responses' bodies are [`ResponseBody`]s wrapping the inner
//! service's; where a response with actix's `BoxBody` is needed, `map_into_boxed_body()` gives
//! it.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//!
//! #[apm::span(kind = "db", subtype = "postgresql")]
//! async fn load_user(id: u64) -> String {
//!     format!("user {id}")
//! }
//!
//! async fn user(id: web::Path<u64>) -> String {
//!     load_user(id.into_inner()).await
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let _agent = apm::init(); // reads ELASTIC_APM_* from the environment
//!     actix_web::rt::System::new().block_on(async {
//!         HttpServer::new(|| {
//!             App::new()
//!                 .wrap(apm::actix::ApmMiddleware::new())
//!                 .route("/users/{id}", web::get().to(user))
//!         })
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//!     })
//! }
//! ```
//!
//! Request bodies are recorded only with [`CaptureBody`] wrapped outside the middleware and
//! `capture_body` not `off`; otherwise `context.request.body` is `[REDACTED]` (for POST, PUT,
//! PATCH and DELETE; absent for the other methods).

use std::any::Any;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use ::actix_web::body::{BodySize, MessageBody};
use ::actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use ::actix_web::http::header::{HeaderMap, USER_AGENT};
use ::actix_web::http::Version;
use ::actix_web::web::Bytes;
use pin_project_lite::pin_project;

use super::facade::{
    name_buffer, PendingEnd, ServerInstrumented as Instrumented, ServerTransaction,
};
use super::server::{HandlerPanic, ServerPolicy};
use crate::web::{self, rewrite};
use crate::{HeaderSource, Transaction};

/// The transaction type of HTTP requests (tracing-instrumentation-http.md).
const KIND: &str = "request";

/// actix-web middleware tracing each request as a transaction: `App::new().wrap(ApmMiddleware::new())`.
///
/// Wrap the `App` (not a single resource) so that unknown routes are traced too. See the
/// [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApmMiddleware {
    _private: (),
}

impl ApmMiddleware {
    /// The middleware; what it records is configured through the agent (`apm::init`).
    pub fn new() -> ApmMiddleware {
        ApmMiddleware { _private: () }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ApmMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error>,
{
    type Response = ServiceResponse<ResponseBody<B>>;
    type Error = ::actix_web::Error;
    type Transform = ApmService<S>;
    type InitError = ();
    type Future = Ready<Result<ApmService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ApmService { service }))
    }
}

/// The service [`ApmMiddleware`] wraps around the rest of the chain.
#[derive(Debug)]
pub struct ApmService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for ApmService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error>,
{
    type Response = ServiceResponse<ResponseBody<B>>;
    type Error = ::actix_web::Error;
    type Future = ApmFuture<S::Future>;

    #[inline]
    fn poll_ready(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let policy = ServerPolicy::current();
        let user_agent = || req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
        if policy.ignore(req.path(), user_agent) {
            return ApmFuture(Inner::Untraced(self.service.call(req)));
        }
        let name = transaction_name(&policy, req.method().as_str(), req.match_pattern());
        let txn = Transaction::start_with(name, KIND, req.headers());
        if txn.is_sampled() {
            txn.set_request_with(|request| write_request(&req, request));
        }
        // `call` may run application code before returning its future (extractors,
        // other middleware): it runs inside the transaction too.
        let entered = txn.attach();
        let fut = match catch_unwind(AssertUnwindSafe(|| self.service.call(req))) {
            Ok(fut) => fut,
            Err(payload) => {
                record_panic(&txn, payload.as_ref());
                drop(entered);
                txn.end();
                resume_unwind(payload)
            }
        };
        drop(entered);
        let bound = txn.bind_until_handed_over(Observed {
            fut,
            txn: txn.clone(),
        });
        ApmFuture(Inner::Traced(bound))
    }
}

/// `{METHOD} {route template}`, else `{METHOD} unknown route`, then grouped.
fn transaction_name(policy: &ServerPolicy, method: &str, pattern: Option<String>) -> String {
    // Written into a spent name's string (see `tower.rs`).
    let mut name = name_buffer();
    for part in [method, " ", pattern.as_deref().unwrap_or("unknown route")] {
        name.push_str(part);
    }
    policy.regroup(&mut name);
    name
}

/// `context.request` (sanitised on the transport thread), written over `request`'s strings
/// (an earlier request's).
fn write_request(req: &ServiceRequest, request: &mut web::Request) {
    let info = req.connection_info();
    let write_url = |url: &mut String| {
        let query = req.query_string();
        for part in [info.scheme(), "://", info.host(), req.path()] {
            url.push_str(part);
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
    };
    rewrite::request(
        request,
        req.method().as_str(),
        write_url,
        http_version(req.version()),
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        req.peer_addr().map(|addr| addr.ip()),
        ::actix_web::HttpMessage::extensions(req)
            .get::<CapturedBody>()
            .map(|b| b.0.clone()),
    );
}

/// A captured request body, handed from [`CaptureBody`] to the transaction through the
/// request's extensions.
#[derive(Debug, Clone)]
struct CapturedBody(String);

/// Buffers small textual request bodies (a known `Content-Length` up to the limit) when
/// `capture_body` is not `off`, so that the transaction (`transactions`) or errors captured
/// while serving the request (`errors`) record them, form fields sanitised. Wrap it *after*
/// [`ApmMiddleware`] (outermost): `App::new().wrap(ApmMiddleware::new()).wrap(CaptureBody::new())`.
#[derive(Debug, Clone, Copy)]
pub struct CaptureBody {
    limit: usize,
}

impl CaptureBody {
    /// Captures bodies up to 16 KiB.
    pub fn new() -> CaptureBody {
        CaptureBody {
            limit: crate::integrations::server::DEFAULT_BODY_LIMIT,
        }
    }

    /// Captures bodies up to `bytes`.
    pub fn limit(bytes: usize) -> CaptureBody {
        CaptureBody { limit: bytes }
    }
}

impl Default for CaptureBody {
    fn default() -> Self {
        CaptureBody::new()
    }
}

impl<S, B> Transform<S, ServiceRequest> for CaptureBody
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error> + 'static,
    S::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = ::actix_web::Error;
    type Transform = CaptureBodyService<S>;
    type InitError = ();
    type Future = Ready<Result<CaptureBodyService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CaptureBodyService {
            service: std::rc::Rc::new(service),
            limit: self.limit,
        }))
    }
}

/// The service [`CaptureBody`] wraps around the rest of the chain.
#[derive(Debug)]
pub struct CaptureBodyService<S> {
    service: std::rc::Rc<S>,
    limit: usize,
}

fn capturable(req: &ServiceRequest, limit: usize) -> bool {
    use ::actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    crate::integrations::server::body_capturable(
        header(CONTENT_TYPE),
        header(CONTENT_LENGTH),
        limit,
    )
}

impl<S, B> Service<ServiceRequest> for CaptureBodyService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error> + 'static,
    S::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = ::actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, ::actix_web::Error>>>>;

    #[inline]
    fn poll_ready(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if !ServerPolicy::current().capture_body() || !capturable(&req, self.limit) {
            return Box::pin(self.service.call(req));
        }
        let service = std::rc::Rc::clone(&self.service);
        Box::pin(async move {
            // A body that cannot be read within its announced length is the client's
            // failure: the handler would have met the same error.
            let bytes = req.extract::<::actix_web::web::Bytes>().await?;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                ::actix_web::HttpMessage::extensions_mut(&req)
                    .insert(CapturedBody(text.to_owned()));
            }
            req.set_payload(::actix_web::dev::Payload::from(bytes));
            service.call(req).await
        })
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

/// actix-web's own header map (actix-web 4 does not use `http` 1's).
impl HeaderSource for HeaderMap {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        for value in self.get_all(name) {
            if let Ok(value) = value.to_str() {
                each(value);
            }
        }
    }
}

/// The future of [`ApmService`]: the rest of the chain, inside the request's transaction,
/// which the response's body then ends.
#[must_use = "futures do nothing unless polled"]
pub struct ApmFuture<F>(Inner<F>);

enum Inner<F> {
    /// An ignored request (or the agent compiled out): passed through untouched.
    Untraced(F),
    Traced(Instrumented<Observed<F>>),
}

impl<F> fmt::Debug for ApmFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let traced = matches!(self.0, Inner::Traced(_));
        f.debug_struct("ApmFuture")
            .field("traced", &traced)
            .finish_non_exhaustive()
    }
}

impl<F, B> Future for ApmFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, ::actix_web::Error>>,
{
    type Output = Result<ServiceResponse<ResponseBody<B>>, ::actix_web::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the variant's future: `ApmFuture` has no `Drop`, and
        // the enum is never replaced nor its fields moved out of once pinned.
        match unsafe { &mut self.get_unchecked_mut().0 } {
            Inner::Untraced(fut) => unsafe { Pin::new_unchecked(fut) }
                .poll(cx)
                .map_ok(|res| res.map_body(|_, body| ResponseBody::untraced(body))),
            Inner::Traced(fut) => {
                let mut fut = unsafe { Pin::new_unchecked(fut) };
                let (out, txn) = std::task::ready!(fut.as_mut().poll(cx));
                let pending = fut.take_pending_end();
                Poll::Ready(match out {
                    Ok(res) => Ok(res
                        .map_body(|_, body| ResponseBody::traced(body, BodyEnd { txn, pending }))),
                    // No response from the chain: the transaction ends now.
                    Err(err) => {
                        pending.end();
                        Err(err)
                    }
                })
            }
        }
    }
}

/// What a traced response's body ends: the transaction.
struct BodyEnd {
    txn: Transaction,
    pending: PendingEnd,
}

pin_project! {
    /// The body of a response from [`ApmService`]: the request's transaction ends when this
    /// body has been sent whole or is dropped. It is polled inside the transaction.
    pub struct ResponseBody<B> {
        // First: when the body is dropped, the transaction ends before the inner body goes.
        end: Option<BodyEnd>,
        #[pin]
        inner: B,
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("traced", &self.end.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    fn untraced(inner: B) -> ResponseBody<B> {
        ResponseBody { end: None, inner }
    }

    fn traced(inner: B, end: BodyEnd) -> ResponseBody<B> {
        ResponseBody {
            end: Some(end),
            inner,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body; the transaction ends now if it has not.
    pub fn into_inner(self) -> B {
        let ResponseBody { end, inner } = self;
        if let Some(end) = end {
            end.pending.end();
        }
        inner
    }
}

impl<B: MessageBody> MessageBody for ResponseBody<B> {
    type Error = B::Error;

    #[inline]
    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let inner = this.inner;
        let Some(BodyEnd { txn, pending }) = this.end.as_mut() else {
            return inner.poll_next(cx);
        };
        let poll = pending.run(
            || match catch_unwind(AssertUnwindSafe(|| inner.poll_next(cx))) {
                Ok(poll) => poll,
                Err(payload) => {
                    record_panic(txn, payload.as_ref());
                    resume_unwind(payload)
                }
            },
        );
        match &poll {
            // The response broke off.
            Poll::Ready(Some(Err(_))) => {
                txn.integration_failed();
                *this.end = None;
            }
            Poll::Ready(None) => *this.end = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        poll
    }

    /// A body that is whole already is sent as it is; the transaction ends then.
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        let ResponseBody { end, inner } = self;
        match inner.try_into_bytes() {
            Ok(bytes) => Ok(bytes),
            Err(inner) => Err(ResponseBody { end, inner }),
        }
    }
}

/// The rest of the chain, observed: records the response, and a panic, on the transaction
/// (it runs inside the transaction's context, so captured errors are linked to it).
struct Observed<F> {
    fut: F,
    txn: Transaction,
}

impl<F, B> Future for Observed<F>
where
    F: Future<Output = Result<ServiceResponse<B>, ::actix_web::Error>>,
{
    /// With the transaction, for the response's body to end.
    type Output = (F::Output, Transaction);

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: `Observed` has no `Drop` and `fut` is never
        // moved; `txn` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        // The panic is resumed right away: nothing observes state it may have broken.
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                record_outcome(&this.txn, &out);
                Poll::Ready((out, this.txn.clone()))
            }
            Err(payload) => {
                record_panic(&this.txn, payload.as_ref());
                resume_unwind(payload)
            }
        }
    }
}

/// Result, outcome and `context.response` of a finished request (tracing-instrumentation-http.md:
/// `HTTP Nxx`; 5xx is a failure, 4xx a success).
fn record_outcome<B>(txn: &Transaction, out: &Result<ServiceResponse<B>, ::actix_web::Error>) {
    match out {
        Ok(res) => {
            let status = res.status().as_u16();
            txn.default_result(web::result_for_status(status));
            txn.default_outcome(web::outcome_for_status(status));
            if txn.is_sampled() {
                txn.set_response_with(|response| {
                    let headers = res.headers().iter();
                    rewrite::response(
                        response,
                        status,
                        headers.map(|(n, v)| (n.as_str(), v.as_bytes())),
                    );
                });
            }
            // A handler's `Err` becomes a response carrying the error: report it when the
            // service is at fault.
            if status >= 500 {
                if let Some(err) = res.response().error() {
                    crate::capture_error!(err);
                }
            }
        }
        Err(err) => {
            // actix-web turns the error into this response after the middleware.
            let status = err.as_response_error().status_code().as_u16();
            txn.default_result(web::result_for_status(status));
            txn.integration_failed();
            if txn.is_sampled() {
                txn.set_response(web::Response::new(status));
            }
            crate::capture_error!(err);
        }
    }
}

/// A panic unwinding out of the chain: an error event with its message, outcome `failure`
/// (no result: no response is sent).
fn record_panic(txn: &Transaction, payload: &(dyn Any + Send)) {
    crate::capture_error!(HandlerPanic::from_payload(payload));
    txn.integration_failed();
}

/// `exception.code` of an actix-web error: the status of the response it makes.
#[cfg(feature = "enable")]
pub(crate) fn error_code(
    e: &(dyn std::error::Error + 'static),
) -> Option<super::facade::ErrorCode> {
    let status = super::facade::downcast::<::actix_web::Error>(e)?
        .as_response_error()
        .status_code();
    Some(super::facade::ErrorCode::Status(status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_source_reads_every_value_case_insensitively() {
        use ::actix_web::http::header::{HeaderName, HeaderValue};
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_static("a=1"),
        );
        map.append(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_static("b=2"),
        );
        let mut seen = Vec::new();
        map.header_values("TraceState", &mut |v| seen.push(v.to_owned()));
        assert_eq!(seen, ["a=1", "b=2"]);
        let mut none = 0;
        map.header_values("not a header name", &mut |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn names_use_the_route_template_or_unknown_route() {
        let policy = ServerPolicy::default();
        assert_eq!(
            transaction_name(&policy, "GET", Some("/users/{id}".to_owned())),
            "GET /users/{id}"
        );
        assert_eq!(
            transaction_name(&policy, "POST", None),
            "POST unknown route"
        );
    }

    #[test]
    fn panic_messages() {
        let payload: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(
            HandlerPanic::from_payload(payload.as_ref()).to_string(),
            "boom"
        );
        let payload: Box<dyn Any + Send> = Box::new(format!("boom {}", 2));
        assert_eq!(
            HandlerPanic::from_payload(payload.as_ref()).to_string(),
            "boom 2"
        );
        let payload: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(
            HandlerPanic::from_payload(payload.as_ref()).to_string(),
            "handler panicked (non-string payload)"
        );
    }

    #[test]
    fn http_versions() {
        assert_eq!(http_version(Version::HTTP_11), Some("1.1"));
        assert_eq!(http_version(Version::HTTP_2), Some("2"));
    }
}
