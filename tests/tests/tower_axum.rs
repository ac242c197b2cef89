//! `apm::tower::ApmLayer` on a real axum server (tokio, 127.0.0.1:0) called by real HTTP
//! clients, against the mock APM Server: names, results and outcomes, request and response
//! context, trace continuation, spans and errors inside handlers, the ignore and grouping
//! options, and many concurrent requests.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use apm::FutureExt as _;
use apm_tests::MockServer;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use common::agent::{self, named};
use serde_json::Value;

/// An axum server on its own tokio runtime, stopped when dropped.
struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl Server {
    fn start(app: Router) -> Server {
        Server::start_with(|listener| async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.ok();
        })
    }

    /// Runs what `serve` makes of a listener on 127.0.0.1.
    fn start_with<F>(serve: impl FnOnce(tokio::net::TcpListener) -> F) -> Server
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        runtime.spawn(serve(listener));
        Server {
            runtime: Some(runtime),
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

fn get_status(url: &str) -> u16 {
    client().get(url).send().expect("request").status().as_u16()
}

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
async fn load_user(id: u64) -> u64 {
    {
        // A synchronous span named after the id, child of `load_user`.
        let _s = apm::start_span(format!("row {id}"), "db");
    }
    tokio::time::sleep(Duration::from_millis(3)).await;
    id
}

#[apm::span]
async fn notify(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    id
}

/// `GET /users/{id}`: a label with the id, an `#[apm::span]` async fn and a spawned task
/// carrying the context.
async fn user(Path(id): Path<u64>) -> (HeaderMap, String) {
    apm::set_label("user_id", id.to_string());
    let loaded = load_user(id).await;
    let spawned = tokio::spawn(notify(id).in_current_context())
        .await
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert("x-user", id.to_string().parse().expect("header value"));
    (headers, format!("user {loaded} {spawned}"))
}

async fn fail() -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn not_found_here() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn health() -> &'static str {
    "ok"
}

async fn panics(Path(n): Path<u32>) -> String {
    if n > 0 {
        panic!("handler exploded on {n}");
    }
    String::new()
}

/// The application judges its own outcome and result: they win over the status's.
async fn judged() -> &'static str {
    apm::set_transaction_outcome(apm::Outcome::Failure);
    apm::set_transaction_result("rejected by policy");
    "ok"
}

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route("/users/{id}/orders", get(|| async { "orders" }))
        .route("/fail", get(fail))
        .route("/judged", get(judged))
        .route("/gone/{what}", get(not_found_here))
        .route("/health/live", get(health))
        .route("/panic/{n}", get(panics))
        .layer(apm::tower::ApmLayer::new())
}

fn by_trace<'a>(events: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["trace_id"] == trace_id)
        .collect()
}

#[test]
fn names_results_and_outcomes() {
    let h = agent::start(|c| c);
    let server = Server::start(app());
    assert_eq!(get_status(&server.url("/users/7")), 200);
    assert_eq!(get_status(&server.url("/fail")), 500);
    assert_eq!(get_status(&server.url("/gone/x")), 404);
    assert_eq!(get_status(&server.url("/no/such/path")), 404);
    assert_eq!(get_status(&server.url("/judged")), 200);
    let post = client()
        .post(server.url("/fail"))
        .send()
        .expect("request")
        .status();
    assert_eq!(post.as_u16(), 405);
    drop(server);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 6, "{txs:#?}");
    let judged = named(&txs, "GET /judged");
    assert_eq!(judged["outcome"], "failure");
    assert_eq!(judged["result"], "rejected by policy");
    for tx in &txs {
        assert_eq!(tx["type"], "request");
    }
    let ok = named(&txs, "GET /users/{id}");
    assert_eq!(ok["result"], "HTTP 2xx");
    assert_eq!(ok["outcome"], "success");
    let fail = named(&txs, "GET /fail");
    assert_eq!(fail["result"], "HTTP 5xx");
    assert_eq!(fail["outcome"], "failure");
    // A known route answering 404 keeps its route name (spec: `GET /users/{id}` even when
    // the user does not exist); a 4xx is the client's fault: success.
    let gone = named(&txs, "GET /gone/{what}");
    assert_eq!(gone["result"], "HTTP 4xx");
    assert_eq!(gone["outcome"], "success");
    // No route matched: `<METHOD> unknown route`.
    let unknown = named(&txs, "GET unknown route");
    assert_eq!(unknown["result"], "HTTP 4xx");
    assert_eq!(unknown["outcome"], "success");
    assert_eq!(
        unknown["context"]["request"]["url"]["pathname"],
        "/no/such/path"
    );
    // Method not allowed on a known path.
    let post = named(&txs, "POST /fail");
    assert_eq!(post["result"], "HTTP 4xx");
    assert_eq!(post["context"]["response"]["status_code"], 405);
    h.finish();
}

#[test]
fn request_and_response_context() {
    let h = agent::start(|c| c);
    let server = Server::start(app());
    let response = client()
        .get(server.url("/users/42?verbose=1&x=y"))
        .header("Authorization", "Bearer s3cret")
        .header("Cookie", "session_id=abc; theme=dark")
        .header("X-Custom", "custom value")
        .header("User-Agent", "tower-axum-test/1.0")
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().expect("body"), "user 42 42");
    drop(server);
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "GET /users/{id}");
    let req = &tx["context"]["request"];
    assert_eq!(req["method"], "GET");
    assert_eq!(req["http_version"], "1.1");
    let url = &req["url"];
    let port = url["port"].as_u64().expect("port");
    assert_eq!(
        url["full"],
        format!("http://127.0.0.1:{port}/users/42?verbose=1&x=y")
    );
    assert_eq!(url["protocol"], "http:");
    assert_eq!(url["hostname"], "127.0.0.1");
    assert_eq!(url["pathname"], "/users/42");
    assert_eq!(url["search"], "verbose=1&x=y");
    let headers = &req["headers"];
    assert_eq!(headers["authorization"], "[REDACTED]");
    assert_eq!(headers["x-custom"], "custom value");
    assert_eq!(headers["user-agent"], "tower-axum-test/1.0");
    assert!(headers.get("cookie").is_none(), "{headers:#}");
    assert_eq!(req["cookies"]["session_id"], "[REDACTED]");
    assert_eq!(req["cookies"]["theme"], "dark");
    assert_eq!(req["socket"]["remote_address"], "127.0.0.1");
    // Bodies are not captured, and a GET claims none (a POST's would be `[REDACTED]`).
    assert!(req.get("body").is_none(), "{req:#}");
    let resp = &tx["context"]["response"];
    assert_eq!(resp["status_code"], 200);
    assert_eq!(resp["headers"]["x-user"], "42");
    assert_eq!(resp["headers"]["content-type"], "text/plain; charset=utf-8");
    assert_eq!(tx["context"]["tags"]["user_id"], "42");
    h.finish();
}

#[test]
fn incoming_traceparent_is_continued_and_its_sampled_flag_obeyed() {
    let server_mock = MockServer::start();
    // A 7.x server takes unsampled transactions, so the unsampled one is visible.
    server_mock.set_server_version("7.17.1");
    let h = agent::start_with(server_mock, |c| c);
    let server = Server::start(app());
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled_trace = "1bf7651916cd43dd8448eb211c80319d";
    let status = client()
        .get(server.url("/users/1"))
        .header(
            "traceparent",
            format!("00-{sampled_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .expect("request")
        .status();
    assert_eq!(status.as_u16(), 200);
    let status = client()
        .get(server.url("/users/2"))
        .header(
            "traceparent",
            format!("00-{unsampled_trace}-c7ad6b7169203332-00"),
        )
        .send()
        .expect("request")
        .status();
    assert_eq!(status.as_u16(), 200);
    drop(server);
    h.flush();
    let txs = h.transactions();
    let spans = h.spans();
    let sampled = by_trace(&txs, sampled_trace);
    assert_eq!(sampled.len(), 1, "{txs:#?}");
    assert_eq!(sampled[0]["parent_id"], "b7ad6b7169203331");
    assert_eq!(sampled[0]["sampled"], true);
    assert_eq!(by_trace(&spans, sampled_trace).len(), 3);
    let unsampled = by_trace(&txs, unsampled_trace);
    assert_eq!(unsampled.len(), 1, "{txs:#?}");
    assert_eq!(unsampled[0]["parent_id"], "c7ad6b7169203332");
    assert_eq!(unsampled[0]["sampled"], false);
    assert!(unsampled[0]["context"].get("request").is_none());
    assert!(by_trace(&spans, unsampled_trace).is_empty());
    h.finish();
}

#[test]
fn handler_spans_and_spawned_tasks_belong_to_the_request() {
    let h = agent::start(|c| c);
    let server = Server::start(app());
    assert_eq!(get_status(&server.url("/users/5")), 200);
    drop(server);
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "GET /users/{id}");
    let spans = h.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let load = named(&spans, "load_user");
    assert_eq!(load["type"], "db");
    assert_eq!(load["parent_id"], tx["id"]);
    let row = named(&spans, "row 5");
    assert_eq!(row["parent_id"], load["id"]);
    let notify = named(&spans, "notify");
    assert_eq!(notify["parent_id"], tx["id"]);
    for s in &spans {
        assert_eq!(s["transaction_id"], tx["id"]);
        assert_eq!(s["trace_id"], tx["trace_id"]);
    }
    assert_eq!(tx["span_count"]["started"], 3);
    h.finish();
}

#[test]
fn a_panicking_handler_sends_an_error_and_fails_the_transaction() {
    let h = agent::start(|c| c);
    let server = Server::start(app());
    // Without a catch-panic layer, axum drops the connection: the client sees an error
    // (or, with one, a 500).
    match client().get(server.url("/panic/3")).send() {
        Ok(response) => assert_eq!(response.status().as_u16(), 500),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    // The server still serves.
    assert_eq!(get_status(&server.url("/users/1")), 200);
    drop(server);
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "GET /panic/{n}");
    assert_eq!(tx["outcome"], "failure");
    assert!(tx.get("result").is_none(), "{tx:#}");
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let err = &errors[0];
    assert_eq!(err["exception"]["message"], "handler exploded on 3");
    assert_eq!(err["transaction_id"], tx["id"]);
    assert_eq!(err["parent_id"], tx["id"]);
    assert_eq!(err["trace_id"], tx["trace_id"]);
    assert_eq!(err["transaction"]["name"], "GET /panic/{n}");
    assert_eq!(named(&txs, "GET /users/{id}")["outcome"], "success");
    h.finish();
}

#[test]
fn ignored_urls_and_user_agents_are_not_traced() {
    let h = agent::start(|c| {
        c.transaction_ignore_urls(["/health*"])
            .transaction_ignore_user_agents(["kube-probe/*"])
    });
    let server = Server::start(app());
    assert_eq!(get_status(&server.url("/health/live")), 200);
    let probe = client()
        .get(server.url("/users/1"))
        .header("User-Agent", "kube-probe/1.29")
        .send()
        .expect("request")
        .status();
    assert_eq!(probe.as_u16(), 200);
    let traced = client()
        .get(server.url("/users/2"))
        .header("User-Agent", "browser/1")
        .send()
        .expect("request")
        .status();
    assert_eq!(traced.as_u16(), 200);
    drop(server);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 1, "{txs:#?}");
    assert_eq!(txs[0]["context"]["request"]["url"]["pathname"], "/users/2");
    // The ignored request's handler recorded no spans either.
    assert_eq!(h.spans().len(), 3);
    h.finish();
}

#[test]
fn transaction_name_groups_replace_names() {
    let h = agent::start(|c| c.transaction_name_groups(["GET /users/*/orders"]));
    let server = Server::start(app());
    assert_eq!(get_status(&server.url("/users/3/orders")), 200);
    assert_eq!(get_status(&server.url("/users/3")), 200);
    drop(server);
    h.flush();
    let txs = h.transactions();
    assert_eq!(txs.len(), 2, "{txs:#?}");
    named(&txs, "GET /users/*/orders");
    named(&txs, "GET /users/{id}");
    h.finish();
}

#[test]
fn concurrent_requests_keep_their_own_spans_and_labels() {
    const N: u64 = 200;
    let h = agent::start(|c| c);
    let server = Server::start(app());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(N as usize));
    let threads: Vec<_> = (0..N)
        .map(|id| {
            let url = server.url(&format!("/users/{id}"));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let response = minreq::get(url).with_timeout(30).send().expect("request");
                assert_eq!(response.status_code, 200);
                assert_eq!(response.as_str().expect("utf-8"), format!("user {id} {id}"));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    drop(server);
    h.flush();
    let stats = h.agent().stats();
    assert_eq!(stats.events_dropped_queue_full, 0, "{stats:?}");
    let txs = h.transactions();
    let spans = h.spans();
    assert_eq!(txs.len(), N as usize);
    assert_eq!(spans.len(), 3 * N as usize);
    let mut spans_of: HashMap<&str, Vec<&Value>> = HashMap::new();
    for s in &spans {
        let txn = s["transaction_id"].as_str().expect("transaction_id");
        spans_of.entry(txn).or_default().push(s);
    }
    let mut seen = std::collections::BTreeSet::new();
    for tx in &txs {
        let id = tx["context"]["tags"]["user_id"]
            .as_str()
            .expect("user_id label");
        assert_eq!(
            tx["context"]["request"]["url"]["pathname"],
            format!("/users/{id}"),
            "label and URL of one transaction disagree"
        );
        assert!(seen.insert(id.to_owned()), "two transactions for id {id}");
        let tx_id = tx["id"].as_str().expect("id");
        let own = spans_of.get(tx_id).cloned().unwrap_or_default();
        assert_eq!(own.len(), 3, "transaction {id}: {own:#?}");
        let load = own
            .iter()
            .find(|s| s["name"] == "load_user")
            .expect("load_user span");
        let row = own
            .iter()
            .find(|s| s["name"] == format!("row {id}"))
            .unwrap_or_else(|| panic!("span `row {id}` in transaction {id}: {own:#?}"));
        let notify = own
            .iter()
            .find(|s| s["name"] == "notify")
            .expect("notify span");
        assert_eq!(load["parent_id"], tx["id"]);
        assert_eq!(notify["parent_id"], tx["id"]);
        assert_eq!(row["parent_id"], load["id"]);
        for s in &own {
            assert_eq!(s["trace_id"], tx["trace_id"]);
        }
    }
    assert_eq!(seen.len(), N as usize);
    h.finish();
}

#[test]
fn a_plain_tower_service_is_traced_too() {
    use tower::{Layer as _, ServiceExt as _};
    let h = agent::start(|c| c);
    let service =
        apm::tower::ApmLayer::new().layer(tower::service_fn(|req: axum::http::Request<String>| {
            // Runs in `call`, before the future: inside the transaction too.
            drop(apm::start_span("synchronous part of call", "app"));
            let fail = req.uri().path() == "/err";
            let vouched = req.uri().path() == "/vouched";
            async move {
                if vouched {
                    // The application's outcome wins over the layer's `failure`.
                    apm::set_transaction_outcome(apm::Outcome::Success);
                    return Err(std::io::Error::other("handled by the caller"));
                }
                if fail {
                    Err(std::io::Error::other("no response"))
                } else {
                    Ok(axum::http::Response::new(String::from("fine")))
                }
            }
        }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let request = |path: &str| {
        axum::http::Request::builder()
            .method("PUT")
            .uri(path)
            .header("host", "svc.internal:9000")
            .body(String::new())
            .expect("request")
    };
    let ok = runtime
        .block_on(service.clone().oneshot(request("/ok?a=1")))
        .expect("response");
    assert_eq!(ok.into_body().into_inner(), "fine");
    let err = runtime.block_on(service.clone().oneshot(request("/err")));
    assert!(err.is_err());
    let vouched = runtime.block_on(service.oneshot(request("/vouched")));
    assert!(vouched.is_err());
    h.flush();
    let mut txs = h.transactions();
    let vouched = txs
        .iter()
        .position(|t| t["context"]["request"]["url"]["pathname"] == "/vouched")
        .expect("the /vouched transaction");
    assert_eq!(txs.remove(vouched)["outcome"], "success");
    assert_eq!(txs.len(), 2, "{txs:#?}");
    // No router: no route template.
    for tx in &txs {
        assert_eq!(tx["name"], "PUT unknown route");
    }
    let ok = txs
        .iter()
        .find(|t| t["context"]["request"]["url"]["pathname"] == "/ok")
        .expect("the /ok transaction");
    assert_eq!(
        ok["context"]["request"]["url"]["full"],
        "http://svc.internal:9000/ok?a=1"
    );
    assert_eq!(ok["result"], "HTTP 2xx");
    assert_eq!(ok["outcome"], "success");
    let err = txs
        .iter()
        .find(|t| t["context"]["request"]["url"]["pathname"] == "/err")
        .expect("the /err transaction");
    // No response, no status: failure, and no `HTTP Nxx` result.
    assert_eq!(err["outcome"], "failure");
    assert!(err.get("result").is_none(), "{err:#}");
    assert!(err["context"].get("response").is_none(), "{err:#}");
    let spans = h.spans();
    assert_eq!(spans.len(), 3, "one per call: {spans:#?}");
    for tx in &txs {
        let span = spans
            .iter()
            .find(|s| s["transaction_id"] == tx["id"])
            .expect("the span of `call`");
        assert_eq!(span["name"], "synchronous part of call");
        assert_eq!(span["parent_id"], tx["id"]);
    }
    h.finish();
}

fn login_app() -> Router {
    Router::new()
        .route(
            "/login",
            axum::routing::post(|body: String| async move {
                apm::capture_error!(std::io::Error::other("login refused"));
                body
            }),
        )
        .layer(apm::tower::ApmLayer::new())
        .layer(apm::tower::CaptureBodyLayer::new())
}

fn post_form(server: &Server, body: &'static str) -> String {
    client()
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .expect("request")
        .text()
        .expect("body")
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
        let server = Server::start(login_app());
        // The handler reads the whole body either way.
        assert_eq!(post_form(&server, form), form);
        drop(server);
        h.flush();
        let tx = named(&h.transactions(), "POST /login").clone();
        assert_eq!(
            tx["context"]["request"]["body"], on_transaction,
            "capture_body={capture:?}"
        );
        let errors = h.errors();
        assert_eq!(errors.len(), 1, "capture_body={capture:?}");
        let request = &errors[0]["context"]["request"];
        assert_eq!(request["method"], "POST");
        assert_eq!(request["body"], on_error, "capture_body={capture:?}");
        h.finish();
    }
}

/// A gRPC call that fails at once carries its status in the response headers ("trailers-only",
/// as tonic answers an `Err(Status)`): the transaction's result is the status's name and its
/// outcome follows the spec's server column (`outcome.feature`).
#[test]
fn grpc_statuses_in_response_headers_give_result_and_outcome() {
    use tower::{Layer as _, ServiceExt as _};
    let h = agent::start(|c| c);
    let service =
        apm::tower::ApmLayer::new().layer(tower::service_fn(|req: axum::http::Request<String>| {
            let status = req.uri().path().trim_start_matches("/shop.Cart/");
            let mut response =
                axum::http::Response::builder().header("content-type", "application/grpc");
            if let Ok(code) = status.parse::<u32>() {
                response = response.header("grpc-status", code.to_string());
            }
            let response = response.body(String::new()).expect("response");
            async move { Ok::<_, std::io::Error>(response) }
        }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for method in ["14", "5", "0", "99", "streaming"] {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(format!("/shop.Cart/{method}"))
            .header("content-type", "application/grpc")
            .body(String::new())
            .expect("request");
        runtime
            .block_on(service.clone().oneshot(request))
            .expect("response");
    }
    h.flush();
    let txs = h.transactions();
    let by_path = |method: &str| {
        let path = format!("/shop.Cart/{method}");
        let tx = txs
            .iter()
            .find(|t| t["context"]["request"]["url"]["pathname"] == path.as_str())
            .expect("a transaction per call");
        // Named after the method path, as the gRPC spec says (not `POST unknown route`).
        assert_eq!(tx["name"], path.as_str(), "{tx:#}");
        assert_eq!(tx["type"], "request", "{tx:#}");
        (tx["result"].clone(), tx["outcome"].clone())
    };
    assert_eq!(by_path("14"), ("UNAVAILABLE".into(), "failure".into()));
    assert_eq!(by_path("5"), ("NOT_FOUND".into(), "success".into()));
    assert_eq!(by_path("0"), ("OK".into(), "success".into()));
    // A code gRPC does not define reads as UNKNOWN.
    assert_eq!(by_path("99"), ("UNKNOWN".into(), "failure".into()));
    // The status would come in the trailers, but the body is dropped unsent: the call was
    // cancelled (a success for the server, as the spec says).
    assert_eq!(by_path("streaming"), ("CANCELLED".into(), "success".into()));
    h.finish();
}

/// A response body that streams: it waits (if told to), then sends one message, started
/// under a span, then its trailers (if any).
struct StreamedBody {
    wait: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    message: Option<&'static str>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for StreamedBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if let Some(wait) = self.wait.as_mut() {
            std::task::ready!(std::future::Future::poll(wait.as_mut(), cx));
            self.wait = None;
        }
        if let Some(message) = self.message.take() {
            let _rendering = apm::start_span("render message", "app");
            return Poll::Ready(Some(Ok(http_body::Frame::data(message.into()))));
        }
        Poll::Ready(
            self.trailers
                .take()
                .map(|t| Ok(http_body::Frame::trailers(t))),
        )
    }
}

/// A body that never ends: a line every 10 ms, until it is dropped, which it signals.
struct EndlessBody {
    tick: tokio::time::Interval,
    dropped: std::sync::mpsc::Sender<()>,
}

impl http_body::Body for EndlessBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::ready!(self.tick.poll_tick(cx));
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data("tick\n".into()))))
    }
}

impl Drop for EndlessBody {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

fn streamed_response(content_type: &str, body: StreamedBody) -> axum::response::Response {
    axum::response::Response::builder()
        .header("content-type", content_type)
        .body(axum::body::Body::new(body))
        .expect("response")
}

/// Flushes until `n` transactions have arrived (a server ends a transaction when it is done
/// with the response's body, which can be just after the client has read it all).
fn wait_for_transactions(h: &agent::Harness, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        h.flush();
        let txs = h.transactions();
        if txs.len() >= n || std::time::Instant::now() > deadline {
            return txs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// tonic answers a call that ran with its messages, then its status in the trailers: the
/// transaction's result and outcome come from that status.
#[test]
fn grpc_statuses_in_trailers_give_result_and_outcome() {
    let h = agent::start(|c| c);
    let app = Router::new()
        .route(
            "/shop.Cart/{status}",
            axum::routing::post(|Path(status): Path<String>| async move {
                let trailers = status.parse::<u32>().ok().map(|code| {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", code.into());
                    trailers
                });
                streamed_response(
                    "application/grpc",
                    StreamedBody {
                        wait: None,
                        message: Some("\0\0\0\0\0"),
                        trailers,
                    },
                )
            }),
        )
        .layer(apm::tower::ApmLayer::new());
    let server = Server::start(app);
    let methods = ["0", "13", "5", "no-status"];
    for method in methods {
        let response = client()
            .post(server.url(&format!("/shop.Cart/{method}")))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .send()
            .expect("call");
        assert_eq!(response.bytes().expect("messages").len(), 5);
    }
    let txs = wait_for_transactions(&h, methods.len());
    // A gRPC call is named after its method path, not the route template (tonic's routes
    // are `/<service>/{*rest}` templates).
    for method in methods {
        named(&txs, &format!("/shop.Cart/{method}"));
    }
    let by_method = |method: &str| {
        let path = format!("/shop.Cart/{method}");
        let tx = txs
            .iter()
            .find(|t| t["context"]["request"]["url"]["pathname"] == path.as_str())
            .unwrap_or_else(|| panic!("a transaction for {path}: {txs:#?}"));
        (
            tx["result"].as_str().unwrap_or_default().to_owned(),
            tx["outcome"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(by_method("0"), ("OK".into(), "success".into()));
    assert_eq!(by_method("13"), ("INTERNAL".into(), "failure".into()));
    assert_eq!(by_method("5"), ("NOT_FOUND".into(), "success".into()));
    // No status came: the HTTP one stands in.
    assert_eq!(
        by_method("no-status"),
        ("HTTP 2xx".into(), "success".into())
    );
    drop(server);
    h.finish();
}

/// A response whose body streams after the handler returned: its time is the transaction's,
/// and spans started while it streams belong to the transaction.
#[test]
fn a_streamed_body_is_timed_and_traced_inside_the_transaction() {
    const WAIT: Duration = Duration::from_millis(200);
    let h = agent::start(|c| c);
    let app = Router::new()
        .route(
            "/report",
            get(|| async {
                streamed_response(
                    "text/plain",
                    StreamedBody {
                        wait: Some(Box::pin(tokio::time::sleep(WAIT))),
                        message: Some("the report"),
                        trailers: None,
                    },
                )
            }),
        )
        .layer(apm::tower::ApmLayer::new());
    let server = Server::start(app);
    let body = client()
        .get(server.url("/report"))
        .send()
        .and_then(|r| r.text())
        .expect("the report");
    assert_eq!(body, "the report");
    let txs = wait_for_transactions(&h, 1);
    let tx = named(&txs, "GET /report");
    let duration = tx["duration"].as_f64().unwrap_or_default();
    assert!(
        duration >= WAIT.as_secs_f64() * 1000.0,
        "the transaction lasted {duration} ms, the body took {WAIT:?} to stream: {tx:#}"
    );
    let spans = h.spans();
    let rendering = named(&spans, "render message");
    assert_eq!(rendering["transaction_id"], tx["id"]);
    assert_eq!(rendering["parent_id"], tx["id"]);
    assert_eq!(tx["span_count"]["started"], 1);
    drop(server);
    h.finish();
}

/// A client that goes away while the body streams: the server drops the body, and the
/// transaction ends then.
#[test]
fn a_client_leaving_mid_stream_ends_the_transaction() {
    use std::io::Read as _;
    let h = agent::start(|c| c);
    let (dropped, body_gone) = std::sync::mpsc::channel();
    let app = Router::new()
        .route(
            "/events",
            get(move || {
                let dropped = dropped.clone();
                async move {
                    let body = EndlessBody {
                        tick: tokio::time::interval(Duration::from_millis(10)),
                        dropped,
                    };
                    axum::response::Response::new(axum::body::Body::new(body))
                }
            }),
        )
        .layer(apm::tower::ApmLayer::new());
    let server = Server::start(app);
    let mut response = client()
        .get(server.url("/events"))
        .send()
        .expect("the stream");
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
    h.flush();
    let txs = h.transactions();
    let tx = named(&txs, "GET /events");
    assert_eq!(tx["result"], "HTTP 2xx");
    // Open while the body streamed, at least until the third line was sent.
    let duration = tx["duration"].as_f64().unwrap_or_default();
    assert!(duration >= 20.0, "lasted {duration} ms: {tx:#}");
    drop(server);
    h.finish();
}

/// A body that fails after its first message, or panics.
struct BrokenBody {
    panics: bool,
    sent: bool,
}

impl http_body::Body for BrokenBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if !self.sent {
            self.sent = true;
            // The application decides while the body streams: it wins over what follows.
            if self.panics {
                apm::set_transaction_result("partly rendered");
            }
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data("part".into()))));
        }
        if self.panics {
            panic!("renderer exploded");
        }
        std::task::Poll::Ready(Some(Err(std::io::Error::other("storage went away"))))
    }
}

/// Polls `body` to its end (or its first error).
fn drain<B: http_body::Body + Unpin>(runtime: &tokio::runtime::Runtime, mut body: B) {
    runtime.block_on(std::future::poll_fn(|cx| loop {
        match std::pin::Pin::new(&mut body).poll_frame(cx) {
            std::task::Poll::Ready(Some(Ok(_))) => continue,
            std::task::Poll::Ready(_) => return std::task::Poll::Ready(()),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        }
    }));
}

/// A body that breaks off fails the transaction (for gRPC: `UNKNOWN`); one that panics is
/// reported as an error of the request and fails it too; what the application sets while
/// the body streams wins.
#[test]
fn a_body_that_fails_or_panics_fails_the_transaction() {
    use tower::{Layer as _, ServiceExt as _};
    let h = agent::start(|c| c);
    let service =
        apm::tower::ApmLayer::new().layer(tower::service_fn(|req: axum::http::Request<String>| {
            let path = req.uri().path().to_owned();
            let content_type = if path.starts_with("/grpc") {
                "application/grpc"
            } else {
                "text/plain"
            };
            let body = BrokenBody {
                panics: path.ends_with("panics"),
                sent: false,
            };
            let response = axum::http::Response::builder()
                .header("content-type", content_type)
                .body(body)
                .expect("response");
            async move { Ok::<_, std::io::Error>(response) }
        }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for path in ["/http/fails", "/grpc/fails", "/http/panics"] {
        let request = axum::http::Request::builder()
            .uri(path)
            .body(String::new())
            .expect("request");
        let response = runtime
            .block_on(service.clone().oneshot(request))
            .expect("response");
        let body = response.into_body();
        let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drain(&runtime, body);
        }));
        assert_eq!(drained.is_err(), path.ends_with("panics"), "{path}");
    }
    h.flush();
    let txs = h.transactions();
    let by_path = |path: &str| {
        let tx = txs
            .iter()
            .find(|t| t["context"]["request"]["url"]["pathname"] == path)
            .unwrap_or_else(|| panic!("a transaction for {path}: {txs:#?}"));
        (tx["result"].clone(), tx["outcome"].clone())
    };
    assert_eq!(
        by_path("/http/fails"),
        ("HTTP 2xx".into(), "failure".into())
    );
    assert_eq!(by_path("/grpc/fails"), ("UNKNOWN".into(), "failure".into()));
    assert_eq!(
        by_path("/http/panics"),
        ("partly rendered".into(), "failure".into())
    );
    let errors = h.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let panicked = txs
        .iter()
        .find(|t| t["context"]["request"]["url"]["pathname"] == "/http/panics")
        .expect("the panicking request");
    assert_eq!(errors[0]["transaction_id"], panicked["id"]);
    assert!(
        errors[0]["exception"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("renderer exploded")),
        "{:#}",
        errors[0]
    );
    h.finish();
}

/// A service wrapped outside the router answers with axum's own body again once its response
/// is mapped back, and is traced all the same.
#[test]
fn a_layer_outside_the_router_maps_its_body_back() {
    use axum::response::IntoResponse as _;
    let h = agent::start(|c| c);
    let router = Router::new().route("/ping", get(|| async { "pong" }));
    let service = tower::ServiceBuilder::new()
        .map_response(|r: axum::http::Response<_>| r.into_response())
        .layer(apm::tower::ApmLayer::new())
        .service(router);
    let server = Server::start_with(|listener| async move {
        let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(service);
        axum::serve(listener, service).await.ok();
    });
    let body = client()
        .get(server.url("/ping"))
        .send()
        .and_then(|r| r.text())
        .expect("pong");
    assert_eq!(body, "pong");
    let txs = wait_for_transactions(&h, 1);
    // Outside the router: no route template.
    assert_eq!(named(&txs, "GET unknown route")["result"], "HTTP 2xx");
    drop(server);
    h.finish();
}
