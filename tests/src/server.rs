//! The in-process APM Server: a std `TcpListener` on 127.0.0.1:0, one thread per connection,
//! configurable misbehaviour, and a condvar so tests wait for what they expect instead of
//! sleeping.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::{json, Value};

use crate::http::{read_request, Request, Response};
use crate::record::{check_intake, Event, Recorded, RecordedRequest};
use crate::Trace;
use crate::{CONFIG_PATH, INTAKE_PATH};

/// Ways the server can misbehave, for the agent's failure-path tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave like an APM Server.
    #[default]
    None,
    /// Read the request, then answer bytes that are not HTTP and close.
    Garbage,
    /// Close every new connection right after accepting it, reading nothing (and close
    /// already open connections before their next answer).
    CloseImmediately,
    /// Read the first bytes of a request (its head, part of its body), then reset the
    /// connection.
    ResetMidBody,
    /// Read the whole request, then close without answering.
    CloseBeforeAnswer,
}

/// Bytes sent in [`Fault::Garbage`] mode.
pub const GARBAGE: &[u8] = b"\x00\x01SSH-2.0-definitely-not-http\r\n\xff\xfe";

#[derive(Debug, Clone)]
struct Behaviour {
    intake_status: u16,
    intake_body: String,
    intake_delay: Duration,
    server_version: String,
    /// The status of `GET /` (server information); 200 answers with the version.
    info_status: u16,
    /// The `Authorization` value intake and configuration requests must carry (`None`: any).
    authorization: Option<String>,
    config_status: u16,
    config_body: Value,
    config_etag: String,
    config_max_age: Option<u32>,
    fault: Fault,
    keep_payloads: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            intake_status: 202,
            intake_body: String::new(),
            intake_delay: Duration::ZERO,
            server_version: "8.15.0".into(),
            info_status: 200,
            authorization: None,
            config_status: 200,
            config_body: json!({}),
            config_etag: "mock-0".into(),
            config_max_age: Some(30),
            fault: Fault::None,
            keep_payloads: true,
        }
    }
}

/// Error body of a non-2xx intake answer, shaped like the APM Server's.
fn intake_error_body(status: u16) -> String {
    json!({
        "accepted": 0,
        "errors": [{ "message": format!("mock APM Server configured to answer {status}") }],
    })
    .to_string()
}

#[derive(Debug)]
struct Shared {
    state: Mutex<Recorded>,
    /// Notified (under `state`) on every recorded request and on shutdown.
    changed: Condvar,
    behaviour: Mutex<Behaviour>,
    shutdown: AtomicBool,
    /// Clones of the open connections, so drop can unblock their reads.
    conns: Mutex<HashMap<u64, TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
    next_conn: AtomicU64,
    /// Serve HTTPS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Holds an intake answer back until `intake_delay` after `since`. The delay is read
    /// again whenever the behaviour changes, so lowering it releases answers already held.
    /// `false` when the server shuts down meanwhile.
    fn hold_intake(&self, since: Instant) -> bool {
        let mut state = self.state.lock();
        loop {
            if self.stopping() {
                return false;
            }
            let until = since + self.behaviour.lock().intake_delay;
            if Instant::now() >= until {
                return true;
            }
            self.changed.wait_until(&mut state, until);
        }
    }
}

/// An in-process APM Server on `127.0.0.1:<ephemeral port>`, as strict as the real one: every
/// intake line is checked as it arrives (stream rules, event size, known kinds, and the intake
/// v2 JSON Schemas), in every request, whatever the answer, payloads kept or not.
///
/// Dropping it closes every connection, joins every thread, and then panics with the list of
/// [violations](Self::violations) if there were any (unless the thread is already panicking:
/// it then prints them), so that a test fails on an invalid event without asking. A test that
/// sends invalid data on purpose says so with [`expect_violations`](Self::expect_violations).
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    /// Set by [`expect_violations`](Self::expect_violations).
    violations_expected: AtomicBool,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and starts serving. Panics if the loopback cannot be bound (a test
    /// environment problem, not something to recover from).
    pub fn start() -> MockServer {
        MockServer::start_on("127.0.0.1:0").expect("mock APM Server: bind 127.0.0.1:0")
    }

    /// Binds `addr` (e.g. `127.0.0.2:0`, another loopback address) and starts serving; `None`
    /// when it cannot be bound here, so the caller can skip.
    pub fn start_on(addr: &str) -> Option<MockServer> {
        MockServer::serve(addr, None)
    }

    /// Serves HTTPS on `127.0.0.1:0` with the PEM certificate chain and private key given;
    /// [`url`](Self::url) then names the host `localhost`. Panics on an unusable certificate.
    pub fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> MockServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .expect("mock APM Server: certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("mock APM Server: key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("mock APM Server: TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("mock APM Server: certificate and key");
        MockServer::serve("127.0.0.1:0", Some(Arc::new(config)))
            .expect("mock APM Server: bind 127.0.0.1:0")
    }

    fn serve(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Option<MockServer> {
        // The schemas are compiled once per process, here rather than on a connection's
        // thread: a failure to find or compile them (under CI) fails the caller.
        crate::schema::validators();
        let listener = TcpListener::bind(addr).ok()?;
        let addr = listener.local_addr().ok()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Recorded::default()),
            changed: Condvar::new(),
            behaviour: Mutex::new(Behaviour::default()),
            shutdown: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            handlers: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(0),
            tls,
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("mock-apm-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .ok()?
        };
        Some(MockServer {
            addr,
            tls: shared.tls.is_some(),
            shared,
            acceptor: Some(acceptor),
            violations_expected: AtomicBool::new(false),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` when serving TLS), to use as the
    /// agent's server URL.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // ---- behaviour (each takes effect for the next request) ----

    fn configure(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.behaviour.lock());
        // Under the state lock, so that an answer being held sees the change.
        let _state = self.shared.state.lock();
        self.shared.changed.notify_all();
    }

    /// Status of intake answers; non-2xx ones carry an APM-Server-like JSON error body and their
    /// events are not recorded as accepted.
    pub fn set_intake_status(&self, status: u16) {
        let body = if (200..300).contains(&status) {
            String::new()
        } else {
            intake_error_body(status)
        };
        self.set_intake_response(status, body);
    }

    /// Status and body of intake answers.
    pub fn set_intake_response(&self, status: u16, body: impl Into<String>) {
        let body = body.into();
        self.configure(|b| {
            b.intake_status = status;
            b.intake_body = body;
        });
    }

    /// Waits this long before answering each intake request (the request is recorded on
    /// arrival). Interrupted when the server is dropped.
    pub fn set_intake_delay(&self, delay: Duration) {
        self.configure(|b| b.intake_delay = delay);
    }

    /// Version reported by `GET /` (default `8.15.0`).
    /// Makes `GET /` (server information) answer `status` with an error body instead of the
    /// version (200 restores it).
    pub fn set_server_info_status(&self, status: u16) {
        self.configure(|b| b.info_status = status);
    }

    /// Requires `Authorization: <value>` (e.g. `Bearer s3cr3t`, `ApiKey k3y`) on intake and
    /// configuration requests, answering 401 otherwise, as a secured APM Server does.
    pub fn require_authorization(&self, value: impl Into<String>) {
        let value = value.into();
        self.configure(|b| b.authorization = Some(value));
    }

    pub fn set_server_version(&self, version: impl Into<String>) {
        let version = version.into();
        self.configure(|b| b.server_version = version);
    }

    /// Central configuration served by `/config/v1/agents`: the JSON body, its ETag (sent
    /// quoted) and `Cache-Control: max-age` (`None`: no header).
    pub fn set_central_config(
        &self,
        body: Value,
        etag: impl Into<String>,
        max_age_secs: Option<u32>,
    ) {
        let etag = etag.into();
        self.configure(|b| {
            b.config_body = body;
            b.config_etag = etag;
            b.config_max_age = max_age_secs;
        });
    }

    /// Status of `/config/v1/agents` answers (e.g. 403, 404 or 503); default 200.
    pub fn set_central_config_status(&self, status: u16) {
        self.configure(|b| b.config_status = status);
    }

    pub fn set_fault(&self, fault: Fault) {
        self.configure(|b| b.fault = fault);
    }

    /// `false` turns the server into a counting sink (for benchmarks): events are counted by
    /// kind and checked, but neither bodies nor events are kept.
    pub fn set_keep_payloads(&self, keep: bool) {
        self.configure(|b| b.keep_payloads = keep);
    }

    /// Restores the default behaviour (recordings are kept; see [`MockServer::reset`]).
    pub fn reset_behaviour(&self) {
        self.configure(|b| *b = Behaviour::default());
    }

    // ---- recordings ----

    /// Forgets everything recorded so far (behaviour is kept). Request indices restart at 0.
    pub fn reset(&self) {
        *self.shared.state.lock() = Recorded::default();
    }

    /// Runs `f` on the recordings under the lock.
    pub fn with_recorded<R>(&self, f: impl FnOnce(&Recorded) -> R) -> R {
        f(&self.shared.state.lock())
    }

    /// Waits until `pred` holds or `timeout` passes; returns whether it held. Re-evaluated on
    /// every recorded request, never by polling.
    pub fn wait_for(&self, mut pred: impl FnMut(&Recorded) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state: MutexGuard<'_, Recorded> = self.shared.state.lock();
        loop {
            if pred(&state) {
                return true;
            }
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return pred(&state);
            }
        }
    }

    /// Waits for at least `n` accepted transactions.
    pub fn wait_for_transactions(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.count("transaction") >= n, timeout)
    }

    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.count("span") >= n, timeout)
    }

    pub fn wait_for_errors(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.count("error") >= n, timeout)
    }

    pub fn wait_for_metricsets(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.count("metricset") >= n, timeout)
    }

    /// Waits for at least `n` requests of any kind.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.requests().len() >= n, timeout)
    }

    /// Waits for at least `n` intake requests (answered with any status).
    pub fn wait_for_intake_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.intake_requests().count() >= n, timeout)
    }

    fn kind(&self, kind: &str) -> Vec<Value> {
        self.with_recorded(|s| s.events_of(kind).cloned().collect())
    }

    /// Accepted transactions (the inner objects), in order of arrival.
    pub fn transactions(&self) -> Vec<Value> {
        self.kind("transaction")
    }

    pub fn spans(&self) -> Vec<Value> {
        self.kind("span")
    }

    pub fn errors(&self) -> Vec<Value> {
        self.kind("error")
    }

    pub fn metricsets(&self) -> Vec<Value> {
        self.kind("metricset")
    }

    /// One metadata object per accepted intake request.
    pub fn metadata(&self) -> Vec<Value> {
        self.kind("metadata")
    }

    /// Accepted events of every kind with their request index and line.
    pub fn events(&self) -> Vec<Event> {
        self.with_recorded(|s| s.events().to_vec())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_recorded(|s| s.requests().to_vec())
    }

    /// Protocol violations seen so far (metadata not first or repeated, bad JSON, an unknown
    /// kind, an oversize event, an event its schema rejects, bad encoding or Content-Type,
    /// malformed HTTP).
    pub fn violations(&self) -> Vec<String> {
        self.with_recorded(|s| s.violations().to_vec())
    }

    /// Declares that the test sends invalid data on purpose (to see it rejected): violations
    /// then do not fail it when the server is dropped; instead, the drop panics if there was
    /// none (when the intake schemas are present), since the test's bad data never arrived.
    pub fn expect_violations(&self) {
        self.violations_expected.store(true, Ordering::Relaxed);
    }

    /// The verdict of the drop: violations unless expected, or none although expected.
    fn check_violations(&self) {
        let violations = self.violations();
        let expected = self.violations_expected.load(Ordering::Relaxed);
        if thread::panicking() {
            if !expected && !violations.is_empty() {
                eprintln!(
                    "the stand-in APM Server also saw {} violation(s):\n  {}",
                    violations.len(),
                    violations.join("\n  ")
                );
            }
            return;
        }
        if !expected {
            assert!(
                violations.is_empty(),
                "the stand-in APM Server saw {} violation(s) (a test sending invalid data on \
                 purpose calls `expect_violations`):\n  {}",
                violations.len(),
                violations.join("\n  ")
            );
        } else if crate::schema::validators().is_some() {
            assert!(
                !violations.is_empty(),
                "`expect_violations` was called, but the stand-in APM Server saw no violation"
            );
        }
    }

    /// Received traces, grouped by `trace_id`, in order of first arrival.
    pub fn traces(&self) -> Vec<Trace> {
        self.with_recorded(|s| {
            let get = |k| s.events_of(k).cloned().collect::<Vec<_>>();
            Trace::build(&get("transaction"), &get("span"), &get("error"))
        })
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        {
            // Set under the state lock so a handler between its check and its wait still
            // sees the flag or the notification.
            let _state = self.shared.state.lock();
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.changed.notify_all();
        }
        // Wake the blocking accept(); if that connect fails the acceptor is left detached
        // rather than joined forever.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(acceptor) = self.acceptor.take() {
            if woke {
                let _ = acceptor.join();
            }
        }
        for (_, conn) in self.shared.conns.lock().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        let handlers = std::mem::take(&mut *self.shared.handlers.lock());
        for h in handlers {
            let _ = h.join();
        }
        self.check_violations();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let Ok(stream) = conn else { continue };
        if shared.behaviour.lock().fault == Fault::CloseImmediately {
            drop(stream);
            let mut state = shared.state.lock();
            state.dropped_connections += 1;
            shared.changed.notify_all();
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared.conns.lock().insert(id, clone);
        }
        let handler = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("mock-apm-conn-{id}"))
                .spawn(move || {
                    match shared.tls.clone() {
                        Some(config) => serve_tls(&shared, config, stream, id),
                        None => serve_connection(&shared, stream, id),
                    }
                    shared.conns.lock().remove(&id);
                })
        };
        let mut handlers = shared.handlers.lock();
        handlers.retain(|h| !h.is_finished());
        if let Ok(h) = handler {
            handlers.push(h);
        }
    }
}

/// Completes the TLS handshake (a client that rejects the certificate is counted, not a
/// violation), then serves the connection.
fn serve_tls(shared: &Shared, config: Arc<rustls::ServerConfig>, mut tcp: TcpStream, id: u64) {
    let Ok(mut conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            let mut state = shared.state.lock();
            state.tls_handshake_failures += 1;
            shared.changed.notify_all();
            return;
        }
    }
    serve_connection(shared, rustls::StreamOwned::new(conn, tcp), id);
}

/// Serves the requests of connection number `id`.
fn serve_connection(shared: &Shared, stream: impl Read + Write, id: u64) {
    let mut reader = BufReader::new(stream);
    while !shared.stopping() {
        if shared.behaviour.lock().fault == Fault::ResetMidBody {
            // A few hundred bytes: the head and the start of the body, not all of it.
            let mut start = [0u8; 300];
            let _ = reader.get_mut().read(&mut start);
            hung_up(shared);
            return;
        }
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                // Malformed HTTP is the agent's bug; a peer hanging up mid-request is not.
                if e.kind() == io::ErrorKind::InvalidData && !shared.stopping() {
                    let msg = format!("malformed HTTP request: {e}");
                    shared.state.lock().violation(msg);
                    let _ = Response::json(400, json!({ "error": e.to_string() }).to_string())
                        .write_to(reader.get_mut(), false);
                }
                return;
            }
        };
        let behaviour = shared.behaviour.lock().clone();
        if behaviour.fault == Fault::CloseImmediately {
            // Switched on while this connection was open: hang up on its next request.
            let mut state = shared.state.lock();
            state.dropped_connections += 1;
            shared.changed.notify_all();
            return;
        }
        if behaviour.fault == Fault::CloseBeforeAnswer {
            // Recorded and checked all the same; the answer is never sent.
            drop(handle(shared, req, &behaviour, id));
            hung_up(shared);
            return;
        }
        let keep_alive = req.keep_alive();
        let is_intake = req.path == INTAKE_PATH;
        let arrived = Instant::now();
        let response = handle(shared, req, &behaviour, id);
        if behaviour.fault == Fault::Garbage {
            let writer = reader.get_mut();
            let _ = writer.write_all(GARBAGE).and_then(|()| writer.flush());
            return;
        }
        if is_intake && !behaviour.intake_delay.is_zero() && !shared.hold_intake(arrived) {
            return;
        }
        if response.write_to(reader.get_mut(), keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// A connection the server hung up on, by its fault.
fn hung_up(shared: &Shared) {
    let mut state = shared.state.lock();
    state.dropped_connections += 1;
    shared.changed.notify_all();
}

/// Records `req`, which came on connection number `connection`, and computes the answer.
fn handle(shared: &Shared, req: Request, b: &Behaviour, connection: u64) -> Response {
    let arrived = Instant::now();
    let decoded = req.decoded_body();
    let (body, decode_error) = match decoded {
        Ok(body) => (body, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let authorized = b
        .authorization
        .as_deref()
        .is_none_or(|required| req.path == "/" || req.header("authorization") == Some(required));
    let intake = req.method == "POST" && req.path == INTAKE_PATH;
    // A garbage answer accepts nothing, whatever the configured status; nor does a refusal.
    let accept =
        intake && authorized && b.fault == Fault::None && (200..300).contains(&b.intake_status);
    // Every intake line is checked as it arrives, whatever the answer will be.
    let checked = (intake && decode_error.is_none()).then(|| {
        check_intake(
            &body,
            crate::schema::validators(),
            accept && b.keep_payloads,
        )
    });
    let mut state = shared.state.lock();
    let index = state.requests.len();
    if let Some(e) = &decode_error {
        state.violation(format!("request {index}: cannot decode body: {e}"));
    }
    if intake {
        let content_type = req.header("content-type").unwrap_or_default();
        if !content_type.starts_with("application/x-ndjson") {
            state.violation(format!(
                "request {index}: Content-Type {content_type:?}, not application/x-ndjson"
            ));
        }
    }
    let violations = checked.map_or(0, |checked| {
        state.record_intake(index, checked, accept, b.keep_payloads)
    });
    let response = match (req.method.as_str(), req.path.as_str()) {
        (_, _) if decode_error.is_some() => {
            Response::json(400, r#"{"error":"cannot decode body"}"#)
        }
        (_, _) if !authorized => Response::json(401, r#"{"error":"unauthorized"}"#),
        ("POST", INTAKE_PATH) => {
            if accept && violations > 0 {
                // What the APM Server does with a malformed stream.
                Response::json(400, intake_error_body(400))
            } else if b.intake_body.is_empty() {
                Response::new(b.intake_status)
            } else {
                Response::json(b.intake_status, b.intake_body.clone())
            }
        }
        (_, INTAKE_PATH) => Response::new(405).header("Allow", "POST"),
        ("GET", "/") if b.info_status != 200 => Response::json(
            b.info_status,
            json!({ "error": format!("mock APM Server configured to answer {}", b.info_status) })
                .to_string(),
        ),
        ("GET", "/") => Response::json(
            200,
            json!({
                "build_date": "2024-08-01T00:00:00Z",
                "build_sha": "0000000000000000000000000000000000000000",
                "publish_ready": true,
                "version": b.server_version,
            })
            .to_string(),
        ),
        ("GET", CONFIG_PATH) | ("POST", CONFIG_PATH) => central_config(&req, b),
        _ => Response::json(404, r#"{"error":"404 page not found"}"#),
    };

    state.requests.push(RecordedRequest {
        index,
        connection,
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        raw_body: if b.keep_payloads {
            req.body
        } else {
            Vec::new()
        },
        body: if b.keep_payloads { body } else { Vec::new() },
        arrived,
        status: if matches!(b.fault, Fault::Garbage | Fault::CloseBeforeAnswer) {
            0
        } else {
            response.status
        },
    });
    shared.changed.notify_all();
    response
}

fn central_config(req: &Request, b: &Behaviour) -> Response {
    if b.config_status != 200 {
        return Response::json(
            b.config_status,
            json!({ "error": format!("mock APM Server configured to answer {}", b.config_status) })
                .to_string(),
        );
    }
    let etag = format!("\"{}\"", b.config_etag.trim_matches('"'));
    let with_cache = |r: Response| match b.config_max_age {
        Some(secs) => r.header("Cache-Control", format!("max-age={secs}, must-revalidate")),
        None => r,
    };
    let matches = req.header("if-none-match").is_some_and(|inm| {
        inm.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|t| t == "*" || t == b.config_etag.trim_matches('"'))
    });
    if matches {
        with_cache(Response::new(304).header("ETag", etag))
    } else {
        with_cache(Response::json(200, b.config_body.to_string()).header("ETag", etag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const T: Duration = Duration::from_secs(10);
    const META: &str =
        r#"{"metadata":{"service":{"name":"svc","agent":{"name":"rust","version":"0"}}}}"#;
    /// The smallest events their schemas accept.
    const TX: &str = r#"{"transaction":{"id":"t1","trace_id":"A","type":"request","duration":1.5,"span_count":{"started":1}}}"#;
    const SPAN: &str = r#"{"span":{"id":"s1","trace_id":"A","parent_id":"t1","name":"q","type":"db","duration":1.0,"start":0.5}}"#;
    const ERROR: &str =
        r#"{"error":{"id":"e1","trace_id":"A","parent_id":"s1","log":{"message":"m"}}}"#;
    /// A transaction its schema rejects (no type, span count or duration), well formed
    /// otherwise.
    const BAD_TX: &str = r#"{"transaction":{"id":"t1","trace_id":"A"}}"#;

    /// A raw keep-alive client: writes bytes, reads one response.
    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            crate::http::header(&self.headers, name)
        }
    }

    impl Client {
        fn connect(server: &MockServer) -> Client {
            let s = TcpStream::connect(server.addr()).expect("connect");
            s.set_read_timeout(Some(T)).expect("timeout");
            Client {
                reader: BufReader::new(s.try_clone().expect("clone")),
                writer: s,
            }
        }

        fn send(&mut self, raw: &[u8]) -> Reply {
            self.writer.write_all(raw).expect("write");
            self.read()
        }

        fn read(&mut self) -> Reply {
            let r = crate::http::read_response(&mut self.reader).expect("response");
            Reply {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }
        }
    }

    fn post(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
        let content_type = if extra.to_ascii_lowercase().contains("content-type") {
            ""
        } else {
            "Content-Type: application/x-ndjson\r\n"
        };
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{content_type}{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    fn ndjson(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\n");
        s.push('\n');
        s.into_bytes()
    }

    #[test]
    fn intake_without_the_ndjson_content_type_is_a_violation() {
        let server = MockServer::start();
        server.expect_violations();
        let mut c = Client::connect(&server);
        let body = ndjson(&[META]);
        c.send(&post(
            INTAKE_PATH,
            "Content-Type: application/json\r\n",
            &body,
        ));
        let violations = server.violations();
        assert!(
            violations
                .iter()
                .any(|v| v.contains("not application/x-ndjson")),
            "{violations:?}"
        );
    }

    #[test]
    fn intake_over_keep_alive_with_chunked_and_gzip() {
        let server = MockServer::start();
        let mut c = Client::connect(&server);

        let body = ndjson(&[META, TX]);
        let r = c.send(&post(
            INTAKE_PATH,
            "Content-Type: application/x-ndjson\r\n",
            &body,
        ));
        assert_eq!(r.status, 202);
        assert!(r.body.is_empty());

        // Same connection: chunked.
        let body = ndjson(&[META, SPAN]);
        let (a, b) = body.split_at(10);
        let mut raw = format!(
            "POST {INTAKE_PATH} HTTP/1.1\r\nContent-Type: application/x-ndjson\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for part in [a, b] {
            raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            raw.extend_from_slice(part);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(c.send(&raw).status, 202);

        // Same connection: gzip.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&ndjson(&[META, ERROR])).expect("gz");
        let r = c.send(&post(
            INTAKE_PATH,
            "Content-Encoding: gzip\r\n",
            &gz.finish().expect("gz"),
        ));
        assert_eq!(r.status, 202);

        assert!(server.wait_for_errors(1, T));
        assert_eq!(server.metadata().len(), 3);
        assert_eq!(server.transactions()[0]["id"], "t1");
        assert_eq!(server.spans()[0]["id"], "s1");
        assert!(server.violations().is_empty(), "{:?}", server.violations());
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[2].header("content-encoding"), Some("gzip"));
        assert_ne!(reqs[2].raw_body, reqs[2].body);
        assert!(reqs[0].arrived <= reqs[2].arrived);
        assert_eq!(
            server
                .events()
                .iter()
                .map(|e| e.request)
                .collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2]
        );

        let traces = server.traces();
        assert_eq!(traces.len(), 1);
        let span = &traces[0].roots[0].children[0];
        assert_eq!(span.id, "s1");
        assert_eq!(span.errors[0].id, "e1");
    }

    #[test]
    fn metadata_violations_are_recorded_and_answered_400() {
        let server = MockServer::start();
        server.expect_violations();
        let mut c = Client::connect(&server);
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[TX])));
        assert_eq!(r.status, 400);
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, META])));
        assert_eq!(r.status, 400);
        let v = server.violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("request 0") && v[0].contains("not metadata"));
        assert!(v[1].contains("request 1") && v[1].contains("repeated"));
        // The connection survives a rejected request.
        assert_eq!(c.send(b"GET / HTTP/1.1\r\n\r\n").status, 200);
    }

    #[test]
    fn bad_encoding_and_malformed_http_are_violations() {
        let server = MockServer::start();
        server.expect_violations();
        let mut c = Client::connect(&server);
        let r = c.send(&post(
            INTAKE_PATH,
            "Content-Encoding: gzip\r\n",
            b"not gzip",
        ));
        assert_eq!(r.status, 400);
        let r = Client::connect(&server).send(b"NONSENSE\r\n\r\n");
        assert_eq!(r.status, 400);
        assert!(
            server.wait_for(|s| s.violations().len() == 2, T),
            "{:?}",
            server.violations()
        );
    }

    #[test]
    fn server_info_and_unknown_paths() {
        let server = MockServer::start();
        let mut c = Client::connect(&server);
        let r = c.send(b"GET / HTTP/1.1\r\n\r\n");
        let info: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(info["version"], "8.15.0");
        assert_eq!(info["publish_ready"], true);
        server.set_server_version("7.17.1");
        let r = c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).expect("json")["version"],
            "7.17.1"
        );
        assert_eq!(c.send(b"GET /nope HTTP/1.1\r\n\r\n").status, 404);
        assert_eq!(
            c.send(b"GET /intake/v2/events HTTP/1.1\r\n\r\n").status,
            405
        );
    }

    #[test]
    fn central_config_etag_and_304() {
        let server = MockServer::start();
        server.set_central_config(json!({"transaction_sample_rate": "0.5"}), "v1", Some(5));
        let mut c = Client::connect(&server);
        let get = |extra: &str| {
            format!("GET {CONFIG_PATH}?service.name=svc&service.environment=prod HTTP/1.1\r\n{extra}\r\n")
                .into_bytes()
        };
        let r = c.send(&get(""));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert_eq!(
            r.header("cache-control"),
            Some("max-age=5, must-revalidate")
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).expect("json")["transaction_sample_rate"],
            "0.5"
        );

        let r = c.send(&get("If-None-Match: \"v1\"\r\n"));
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert_eq!(
            r.header("cache-control"),
            Some("max-age=5, must-revalidate")
        );

        server.set_central_config(json!({"transaction_sample_rate": "0.1"}), "v2", None);
        let r = c.send(&get("If-None-Match: \"v1\"\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag"), Some("\"v2\""));
        assert_eq!(r.header("cache-control"), None);

        server.set_central_config_status(503);
        assert_eq!(c.send(&get("")).status, 503);

        let reqs = server.requests();
        assert_eq!(reqs[0].query_param("service.name").as_deref(), Some("svc"));
        assert_eq!(reqs[1].header("If-None-Match"), Some("\"v1\""));
    }

    #[test]
    fn error_status_rejects_events() {
        let server = MockServer::start();
        server.set_intake_status(503);
        let mut c = Client::connect(&server);
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, SPAN])));
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).expect("json error body");
        assert!(body["errors"][0]["message"].is_string());
        assert_eq!(server.spans().len(), 0);
        assert_eq!(server.requests()[0].status, 503);
        server.reset_behaviour();
        assert_eq!(
            c.send(&post(INTAKE_PATH, "", &ndjson(&[META, SPAN])))
                .status,
            202
        );
        assert_eq!(server.spans().len(), 1);
        server.reset();
        assert!(server.requests().is_empty() && server.spans().is_empty());
    }

    #[test]
    fn delay_is_interrupted_by_drop() {
        let server = MockServer::start();
        server.set_intake_delay(Duration::from_secs(600));
        let mut c = Client::connect(&server);
        c.writer
            .write_all(&post(INTAKE_PATH, "", &ndjson(&[META])))
            .expect("write");
        // Recorded on arrival, before the delay.
        assert!(server.wait_for_intake_requests(1, T));
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        // The client sees the connection closed, not an answer.
        let mut rest = Vec::new();
        assert!(matches!(c.reader.read_to_end(&mut rest), Ok(0) | Err(_)));
    }

    #[test]
    fn garbage_and_close_faults() {
        let server = MockServer::start();
        server.set_fault(Fault::Garbage);
        let mut c = Client::connect(&server);
        c.writer
            .write_all(&post(INTAKE_PATH, "", &ndjson(&[META, SPAN])))
            .expect("write");
        let mut got = Vec::new();
        c.reader.read_to_end(&mut got).expect("read garbage");
        assert_eq!(got, GARBAGE);
        assert_eq!(server.spans().len(), 0);
        assert_eq!(server.requests()[0].status, 0);

        server.set_fault(Fault::None);
        let mut open = Client::connect(&server);
        assert_eq!(open.send(b"GET / HTTP/1.1\r\n\r\n").status, 200);

        server.set_fault(Fault::CloseImmediately);
        let mut c = Client::connect(&server);
        let mut got = Vec::new();
        // Reset or EOF: either way no byte of an answer.
        let _ = c.reader.read_to_end(&mut got);
        assert!(got.is_empty());
        // An already open connection hangs up on its next request.
        open.writer
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("write");
        let _ = open.reader.read_to_end(&mut got);
        assert!(got.is_empty());
        assert!(server.wait_for(|s| s.dropped_connections() == 2, T));
    }

    #[test]
    fn drop_closes_idle_keep_alive_connections() {
        let server = MockServer::start();
        let mut c = Client::connect(&server);
        assert_eq!(c.send(b"GET / HTTP/1.1\r\n\r\n").status, 200);
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut rest = Vec::new();
        assert!(matches!(c.reader.read_to_end(&mut rest), Ok(0) | Err(_)));
    }

    #[test]
    fn connection_close_is_honoured() {
        let server = MockServer::start();
        let mut c = Client::connect(&server);
        let r = c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(r.header("connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(c.reader.read_to_end(&mut rest).expect("eof"), 0);
    }

    #[test]
    fn discarding_payloads_still_counts() {
        let server = MockServer::start();
        server.set_keep_payloads(false);
        let mut c = Client::connect(&server);
        c.send(&post(INTAKE_PATH, "", &ndjson(&[META, TX])));
        assert!(server.wait_for_transactions(1, T));
        assert!(server.transactions().is_empty());
        assert!(server.requests()[0].body.is_empty());
    }

    #[test]
    fn waiters_wake_on_requests_from_other_threads() {
        let server = MockServer::start();
        let url_addr = server.addr();
        let sender = thread::spawn(move || {
            let s = TcpStream::connect(url_addr).expect("connect");
            let mut c = Client {
                reader: BufReader::new(s.try_clone().expect("clone")),
                writer: s,
            };
            for i in 0..5 {
                let tx = TX.replace("\"t1\"", &format!("\"t{i}\""));
                c.send(&post(INTAKE_PATH, "", &ndjson(&[META, &tx])));
            }
        });
        assert!(server.wait_for_transactions(5, T));
        assert!(!server.wait_for_transactions(6, Duration::from_millis(10)));
        sender.join().expect("sender");
    }

    #[test]
    fn schema_violations_are_found_in_rejected_and_discarded_requests() {
        if crate::schema::validators().is_none() {
            return;
        }
        let server = MockServer::start();
        server.expect_violations();
        let mut c = Client::connect(&server);
        // Accepted: the invalid event makes the answer 400, as the APM Server's is.
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, TX, BAD_TX])));
        assert_eq!(r.status, 400);
        server.set_intake_status(503);
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, BAD_TX])));
        assert_eq!(r.status, 503);
        server.reset_behaviour();
        server.require_authorization("Bearer right");
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, BAD_TX])));
        assert_eq!(r.status, 401);
        server.reset_behaviour();
        server.set_keep_payloads(false);
        let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, BAD_TX])));
        assert_eq!(r.status, 400);
        let v = server.violations();
        assert_eq!(v.len(), 4, "{v:?}");
        for (request, violation) in v.iter().enumerate() {
            let line = if request == 0 { 2 } else { 1 };
            assert!(
                violation.starts_with(&format!("request {request} line {line}: "))
                    && violation.contains("violates intake-v2/transaction.json")
                    && violation.contains("\"span_count\""),
                "{violation}"
            );
        }
        assert_eq!(server.with_recorded(|r| r.count("transaction")), 0);
    }

    /// The message a panic carried.
    fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    #[test]
    fn dropping_the_server_fails_on_violations_unless_expected() {
        let send_bad = |expect: bool| {
            let server = MockServer::start();
            if expect {
                server.expect_violations();
            }
            let mut c = Client::connect(&server);
            c.send(&post(INTAKE_PATH, "", &ndjson(&[TX])));
        };
        let panic = std::panic::catch_unwind(|| send_bad(false)).expect_err("a failed drop");
        let message = panic_message(panic);
        assert!(
            message.contains("1 violation(s)") && message.contains("request 0: first line"),
            "{message}"
        );
        send_bad(true);

        // Expected, but nothing came: the test's bad data never arrived.
        if crate::schema::validators().is_some() {
            let panic = std::panic::catch_unwind(|| {
                let server = MockServer::start();
                server.expect_violations();
                let mut c = Client::connect(&server);
                let r = c.send(&post(INTAKE_PATH, "", &ndjson(&[META, TX])));
                assert_eq!(r.status, 202);
            })
            .expect_err("a failed drop");
            let message = panic_message(panic);
            assert!(message.contains("saw no violation"), "{message}");
        }
    }
}
