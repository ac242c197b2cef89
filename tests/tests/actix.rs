//! `apm::actix::ApmMiddleware` on a real actix-web server (127.0.0.1:0, its own thread and
//! actix system) called by real HTTP clients: transaction names from route templates, results
//! and outcomes, request/response context, trace continuation, spans inside handlers, panics,
//! ignore and grouping rules, and concurrent requests without cross-talk.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use common::agent::{self, named, Harness};
use serde_json::Value;

// ---- the application -------------------------------------------------------------------

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
async fn load_user(id: u64) -> String {
    actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    format!("user {id}")
}

async fn user(id: web::Path<u64>) -> String {
    load_user(id.into_inner()).await
}

async fn status(code: web::Path<u16>) -> HttpResponse {
    match actix_web::http::StatusCode::from_u16(code.into_inner()) {
        Ok(code) => HttpResponse::build(code).body("status"),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

async fn fail() -> Result<String, actix_web::Error> {
    Err(actix_web::error::ErrorInternalServerError(
        "database is down",
    ))
}

async fn explode() -> String {
    panic!("handler exploded")
}

/// One step of a concurrent request: a span whose inner span carries the request's number.
#[apm::span(name = "step")]
async fn step(n: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(n % 7)).await;
    let _inner = apm::start_span(format!("inner {n}"), "app");
    actix_web::rt::task::yield_now().await;
}

async fn work(n: web::Path<u64>) -> String {
    let n = n.into_inner();
    apm::set_label("n", n);
    step(n).await;
    format!("{n}")
}

async fn login(body: String) -> String {
    apm::capture_error!(std::io::Error::other("login refused"));
    body
}

/// A response body that streams: after [`REPORT_WAIT`], one message, made under a span.
struct SlowReport {
    wait: std::pin::Pin<Box<actix_web::rt::time::Sleep>>,
    sent: bool,
}

const REPORT_WAIT: Duration = Duration::from_millis(200);

impl actix_web::body::MessageBody for SlowReport {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Stream
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        if self.sent {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(std::future::Future::poll(self.wait.as_mut(), cx));
        self.sent = true;
        let _rendering = apm::start_span("render report", "app");
        std::task::Poll::Ready(Some(Ok(web::Bytes::from_static(b"the report"))))
    }
}

async fn report() -> HttpResponse {
    HttpResponse::Ok().body(SlowReport {
        wait: Box::pin(actix_web::rt::time::sleep(REPORT_WAIT)),
        sent: false,
    })
}

/// Told when the body of `/events` is dropped.
static EVENTS_DROPPED: std::sync::Mutex<Option<mpsc::Sender<()>>> = std::sync::Mutex::new(None);

/// A body that never ends: a line every 10 ms, until it is dropped, which it signals.
struct EndlessEvents(actix_web::rt::time::Interval);

impl actix_web::body::MessageBody for EndlessEvents {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Stream
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        std::task::ready!(self.0.poll_tick(cx));
        std::task::Poll::Ready(Some(Ok(web::Bytes::from_static(b"tick\n"))))
    }
}

impl Drop for EndlessEvents {
    fn drop(&mut self) {
        if let Some(dropped) = EVENTS_DROPPED.lock().ok().and_then(|d| d.clone()) {
            let _ = dropped.send(());
        }
    }
}

async fn events() -> HttpResponse {
    HttpResponse::Ok().body(EndlessEvents(actix_web::rt::time::interval(
        Duration::from_millis(10),
    )))
}

fn app() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(apm::actix::ApmMiddleware::new())
        // A no-op unless `capture_body` is on: every test also shows it changes nothing else.
        .wrap(apm::actix::CaptureBody::new())
        .route("/login", web::post().to(login))
        .route("/users/{id}", web::get().to(user))
        .route("/status/{code}", web::get().to(status))
        .route("/fail", web::get().to(fail))
        .route("/panic", web::get().to(explode))
        .route("/work/{n}", web::get().to(work))
        .route("/health", web::get().to(|| async { "ok" }))
        .route("/report", web::get().to(report))
        .route("/events", web::get().to(events))
        .service(web::scope("/api").route("/items/{item}", web::post().to(|| async { "item" })))
}

// ---- the server and its clients --------------------------------------------------------

/// An actix-web server on its own thread; stopped (gracefully) on drop.
struct Server {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

fn serve() -> Server {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(app)
                .workers(4)
                .disable_signals()
                .bind(("127.0.0.1", 0))?;
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).ok();
            server.await
        })
    });
    let (addr, handle) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the actix-web server did not start");
    Server {
        addr,
        handle,
        thread: Some(thread),
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> u16 {
        let resp = reqwest::blocking::get(self.url(path)).expect("request failed");
        resp.status().as_u16()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        agent::block_on(self.handle.stop(true));
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// Flushes until `n` transactions arrived (a transaction ends as its response is sent, or
/// when actix drops a panicked request, which may be just after the client saw it).
fn transactions(h: &Harness, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        h.flush();
        let txs = h.transactions();
        if txs.len() >= n || Instant::now() > deadline {
            assert_eq!(txs.len(), n, "transactions: {txs:#?}");
            return txs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn transactions_are_named_after_route_templates_with_http_results() {
    let h = agent::start(|c| c);
    let server = serve();
    assert_eq!(server.get("/users/42"), 200);
    assert_eq!(server.get("/status/404"), 404);
    assert_eq!(server.get("/status/503"), 503);
    assert_eq!(server.get("/no/such/thing?x=1"), 404);
    let client = reqwest::blocking::Client::new();
    let resp = client.post(server.url("/api/items/9")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let txs = transactions(&h, 5);
    drop(server);

    let ok = named(&txs, "GET /users/{id}");
    assert_eq!(ok["type"], "request");
    assert_eq!(ok["result"], "HTTP 2xx");
    assert_eq!(ok["outcome"], "success");
    let with_status = |code: u16| -> &Value {
        let found: Vec<&Value> = txs
            .iter()
            .filter(|t| {
                t["name"] == "GET /status/{code}" && t["context"]["response"]["status_code"] == code
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one /status transaction answered {code}: {txs:#?}"
        );
        found[0]
    };
    let client_error = with_status(404);
    assert_eq!(client_error["result"], "HTTP 4xx");
    assert_eq!(
        client_error["outcome"], "success",
        "4xx is the client's fault, not the service's"
    );
    let unknown = named(&txs, "GET unknown route");
    assert_eq!(unknown["result"], "HTTP 4xx");
    assert_eq!(unknown["outcome"], "success");
    let scoped = named(&txs, "POST /api/items/{item}");
    assert_eq!(scoped["result"], "HTTP 2xx");
    let server_error = with_status(503);
    assert_eq!(server_error["result"], "HTTP 5xx");
    assert_eq!(server_error["outcome"], "failure");
    assert!(h.errors().is_empty(), "no error event for plain statuses");
    h.finish();
}

#[test]
fn handler_errors_are_captured_and_fail_the_transaction() {
    let h = agent::start(|c| c);
    let server = serve();
    assert_eq!(server.get("/fail"), 500);
    let txs = transactions(&h, 1);
    drop(server);
    let tx = named(&txs, "GET /fail");
    assert_eq!(tx["result"], "HTTP 5xx");
    assert_eq!(tx["outcome"], "failure");
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["exception"]["message"], "database is down");
    assert_eq!(errors[0]["transaction_id"], tx["id"]);
    assert_eq!(errors[0]["trace_id"], tx["trace_id"]);
    h.finish();
}

#[test]
fn a_panicking_handler_is_reported_and_the_server_goes_on() {
    let h = agent::start(|c| c);
    let server = serve();
    // actix-web drops the connection of a request whose handler panicked.
    assert!(reqwest::blocking::get(server.url("/panic")).is_err());
    assert_eq!(server.get("/users/1"), 200, "the worker survived");
    let txs = transactions(&h, 2);
    drop(server);
    let tx = named(&txs, "GET /panic");
    assert_eq!(tx["outcome"], "failure");
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!(e["exception"]["type"], "HandlerPanic");
    assert_eq!(e["exception"]["message"], "handler exploded");
    assert_eq!(e["transaction_id"], tx["id"]);
    assert_eq!(named(&txs, "GET /users/{id}")["outcome"], "success");
    h.finish();
}

#[test]
fn request_and_response_context_is_recorded_and_sanitised() {
    let h = agent::start(|c| c);
    let server = serve();
    let client = reqwest::blocking::Client::new();
    let resp = client
        .get(server.url("/users/7?expand=orders"))
        .header("Authorization", "Bearer secret-token")
        .header("User-Agent", "actix-test/1.0")
        .header("X-Request-Id", "abc-123")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let txs = transactions(&h, 1);
    let (full, port) = (server.url("/users/7?expand=orders"), server.addr.port());
    drop(server);
    let tx = named(&txs, "GET /users/{id}");
    let req = &tx["context"]["request"];
    assert_eq!(req["method"], "GET");
    assert_eq!(req["http_version"], "1.1");
    let url = &req["url"];
    assert_eq!(url["full"], full);
    assert_eq!(url["protocol"], "http:");
    assert_eq!(url["hostname"], "127.0.0.1");
    assert_eq!(url["port"], port);
    assert_eq!(url["pathname"], "/users/7");
    assert_eq!(url["search"], "expand=orders");
    let headers = &req["headers"];
    assert_eq!(headers["authorization"], "[REDACTED]");
    assert_eq!(headers["user-agent"], "actix-test/1.0");
    assert_eq!(headers["x-request-id"], "abc-123");
    assert_eq!(req["socket"]["remote_address"], "127.0.0.1");
    let resp = &tx["context"]["response"];
    assert_eq!(resp["status_code"], 200);
    assert!(
        resp["headers"]["content-type"]
            .as_str()
            .is_some_and(|v| v.starts_with("text/plain")),
        "{resp:#}"
    );
    h.finish();
}

#[test]
fn an_incoming_traceparent_is_continued() {
    let h = agent::start(|c| c);
    let server = serve();
    let resp = minreq::get(server.url("/users/3"))
        .with_header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .with_header("tracestate", "es=s:1,other=x")
        .send()
        .unwrap();
    assert_eq!(resp.status_code, 200);
    // And one without: a new trace.
    assert_eq!(server.get("/status/200"), 200);
    let txs = transactions(&h, 2);
    drop(server);
    let continued = named(&txs, "GET /users/{id}");
    assert_eq!(continued["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(continued["parent_id"], "b7ad6b7169203331");
    let fresh = named(&txs, "GET /status/{code}");
    assert!(fresh.get("parent_id").is_none());
    assert_ne!(fresh["trace_id"], continued["trace_id"]);
    h.finish();
}

#[test]
fn spans_in_handlers_are_children_of_the_request_transaction() {
    let h = agent::start(|c| c);
    let server = serve();
    assert_eq!(server.get("/users/5"), 200);
    let txs = transactions(&h, 1);
    drop(server);
    let tx = named(&txs, "GET /users/{id}");
    let spans = h.spans();
    let span = named(&spans, "load_user");
    assert_eq!(span["type"], "db");
    assert_eq!(span["subtype"], "postgresql");
    assert_eq!(span["parent_id"], tx["id"]);
    assert_eq!(span["transaction_id"], tx["id"]);
    assert_eq!(span["trace_id"], tx["trace_id"]);
    assert_eq!(tx["span_count"]["started"], 1);
    h.finish();
}

#[test]
fn ignore_rules_skip_requests_and_name_groups_apply() {
    let h = agent::start(|c| {
        c.transaction_ignore_urls(["/health*"])
            .transaction_ignore_user_agents(["kube-probe/*"])
            .transaction_name_groups(["GET /status/*"])
    });
    let server = serve();
    assert_eq!(server.get("/health"), 200);
    let client = reqwest::blocking::Client::new();
    let probe = client
        .get(server.url("/users/1"))
        .header("User-Agent", "kube-probe/1.29")
        .send()
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    assert_eq!(server.get("/users/2"), 200);
    assert_eq!(server.get("/status/201"), 201);
    let txs = transactions(&h, 2);
    drop(server);
    named(&txs, "GET /users/{id}");
    assert_eq!(named(&txs, "GET /status/*")["result"], "HTTP 2xx");
    // The ignored probe's span was not recorded either.
    assert_eq!(h.spans().len(), 1);
    h.finish();
}

#[test]
fn concurrent_requests_do_not_cross_talk() {
    const N: u64 = 100;
    let h = agent::start(|c| c);
    let server = serve();
    let client = reqwest::blocking::Client::new();
    let threads: Vec<_> = (0..N)
        .map(|n| {
            let client = client.clone();
            let url = server.url(&format!("/work/{n}"));
            std::thread::spawn(move || {
                let resp = client.get(url).send().expect("request failed");
                assert_eq!(resp.status().as_u16(), 200);
                assert_eq!(resp.text().unwrap(), n.to_string());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let txs = transactions(&h, N as usize);
    drop(server);
    let spans = h.spans();
    assert_eq!(spans.len(), 2 * N as usize);
    let mut seen = vec![false; N as usize];
    for tx in &txs {
        assert_eq!(tx["name"], "GET /work/{n}");
        let n = tx["context"]["tags"]["n"]
            .as_f64()
            .unwrap_or_else(|| panic!("no label n in {tx:#}")) as u64;
        assert!(!seen[n as usize], "two transactions labelled {n}");
        seen[n as usize] = true;
        let own: Vec<&Value> = spans
            .iter()
            .filter(|s| s["transaction_id"] == tx["id"])
            .collect();
        assert_eq!(own.len(), 2, "spans of request {n}: {own:#?}");
        let step = own.iter().find(|s| s["name"] == "step").expect("step span");
        let inner = own
            .iter()
            .find(|s| s["name"] == format!("inner {n}"))
            .unwrap_or_else(|| panic!("request {n} has someone else's spans: {own:#?}"));
        assert_eq!(step["parent_id"], tx["id"]);
        assert_eq!(inner["parent_id"], step["id"]);
        assert_eq!(inner["trace_id"], tx["trace_id"]);
    }
    assert!(seen.iter().all(|&s| s));
    h.finish();
}

#[test]
fn request_bodies_are_captured_when_capture_body_says_so() {
    use apm::config::CaptureBody;
    let form = "user=ann&password=hunter2&remember=1";
    let kept = "user=ann&password=[REDACTED]&remember=1";
    let redacted = "[REDACTED]";
    for (capture, on_transaction, on_error) in [
        (CaptureBody::All, kept, kept),
        (CaptureBody::Transactions, kept, redacted),
        (CaptureBody::Errors, redacted, kept),
        (CaptureBody::Off, redacted, redacted),
    ] {
        let h = agent::start(|c| c.capture_body(capture));
        let server = serve();
        let echoed = reqwest::blocking::Client::new()
            .post(server.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .expect("request")
            .text()
            .expect("body");
        // The handler reads the whole body either way.
        assert_eq!(echoed, form);
        let txs = transactions(&h, 1);
        drop(server);
        let tx = named(&txs, "POST /login");
        assert_eq!(
            tx["context"]["request"]["body"], on_transaction,
            "capture_body={capture:?}"
        );
        let errors = h.errors();
        assert_eq!(errors.len(), 1, "capture_body={capture:?}");
        assert_eq!(
            errors[0]["context"]["request"]["body"], on_error,
            "capture_body={capture:?}"
        );
        h.finish();
    }
}

/// A response whose body streams after the handler returned: its time is the transaction's,
/// and spans started while it streams belong to the transaction.
#[test]
fn a_streamed_body_is_timed_and_traced_inside_the_transaction() {
    let h = agent::start(|c| c);
    let server = serve();
    let body = reqwest::blocking::get(server.url("/report"))
        .and_then(|r| r.text())
        .expect("the report");
    assert_eq!(body, "the report");
    let txs = transactions(&h, 1);
    let tx = named(&txs, "GET /report");
    let duration = tx["duration"].as_f64().unwrap_or_default();
    assert!(
        duration >= REPORT_WAIT.as_secs_f64() * 1000.0,
        "the transaction lasted {duration} ms, the body took {REPORT_WAIT:?} to stream: {tx:#}"
    );
    let spans = h.spans();
    let rendering = named(&spans, "render report");
    assert_eq!(rendering["transaction_id"], tx["id"]);
    assert_eq!(rendering["parent_id"], tx["id"]);
    drop(server);
    h.finish();
}

/// A client that goes away while the body streams: the server drops the body, and the
/// transaction ends then.
#[test]
fn a_client_leaving_mid_stream_ends_the_transaction() {
    use std::io::Read as _;
    let h = agent::start(|c| c);
    let (dropped, body_gone) = mpsc::channel();
    *EVENTS_DROPPED.lock().expect("the signal's slot") = Some(dropped);
    let server = serve();
    let mut response = reqwest::blocking::get(server.url("/events")).expect("the stream");
    // Three lines: the interval ticks at once, then every 10 ms.
    let mut lines = [0; 15];
    response.read_exact(&mut lines).expect("three lines");
    assert_eq!(&lines, b"tick\ntick\ntick\n");
    drop(response);
    // The body is dropped once a write to the closed connection fails; the transaction has
    // ended by then.
    body_gone
        .recv_timeout(Duration::from_secs(10))
        .expect("the server drops the body of a client that went away");
    let txs = transactions(&h, 1);
    let tx = named(&txs, "GET /events");
    assert_eq!(tx["result"], "HTTP 2xx");
    let duration = tx["duration"].as_f64().unwrap_or_default();
    assert!(duration >= 20.0, "lasted {duration} ms: {tx:#}");
    drop(server);
    h.finish();
}
