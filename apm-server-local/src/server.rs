//! The listener: a std `TcpListener`, one thread per connection (bounded), HTTP/1.1 with
//! keep-alive; routes intake, server information, central configuration and the web page;
//! a reporter thread prints each trace once it settles.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};

use crate::config::ConfigFile;
use crate::http::{read_request, Request, Response};
use crate::intake::{self, Outcome};
use crate::schema::Schemas;
use crate::store::{Completed, Limits, Store};
use crate::trace::Trace;
use crate::{ui, waterfall, CONFIG_PATH, INTAKE_PATH};

/// The version `GET /` reports: one every current agent accepts.
pub const SERVER_VERSION: &str = "8.15.0";
/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 256;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Violations kept for the web page (each with at most 4 KiB of its document).
const MAX_VIOLATIONS: usize = 200;

/// What the server writes to stdout as traces complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A waterfall per trace (ANSI colours when `colour`).
    Waterfall { colour: bool },
    /// Every accepted event as an NDJSON line (`{"<kind>": {…}}`), on arrival.
    Json,
    /// Nothing (a library user reads [`Server::traces`]).
    Quiet,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on, `127.0.0.1:8200` by default.
    pub addr: String,
    /// `Authorization: Bearer <token>` is required when set.
    pub secret_token: Option<String>,
    /// `Authorization: ApiKey <key>` is required when set (either credential is accepted
    /// when both are).
    pub api_key: Option<String>,
    /// Central configuration file (see [`crate::config`]).
    pub config_file: Option<PathBuf>,
    /// Load the schemas from `<dir>/intake-v2` instead of those embedded at build time.
    pub spec_dir: Option<PathBuf>,
    pub output: Output,
    /// Also append every accepted event as NDJSON to this file.
    pub ndjson_file: Option<PathBuf>,
    pub max_traces: usize,
    pub max_bytes: usize,
    /// Silence after which a trace with its root transaction is complete.
    pub settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: "127.0.0.1:8200".into(),
            secret_token: None,
            api_key: None,
            config_file: None,
            spec_dir: None,
            output: Output::Waterfall { colour: false },
            ndjson_file: None,
            max_traces: 1000,
            max_bytes: 64 << 20,
            settle: Duration::from_secs(1),
        }
    }
}

/// Counters shown by the web page and read by tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub intake_requests: AtomicU64,
    pub events_accepted: AtomicU64,
    pub events_rejected: AtomicU64,
    pub connections_refused: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    opts: Options,
    pub(crate) store: Mutex<Store>,
    /// Notified on every intake request and on shutdown.
    changed: Condvar,
    schemas: Option<Schemas>,
    config: Mutex<ConfigFile>,
    pub(crate) violations: Mutex<std::collections::VecDeque<Value>>,
    ndjson: Option<Mutex<std::fs::File>>,
    pub(crate) stats: Stats,
    shutdown: AtomicBool,
    conns: Mutex<std::collections::HashMap<u64, TcpStream>>,
    open: AtomicUsize,
    next_conn: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// A running local APM Server. Dropping it stops it and joins its threads.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `opts.addr` and starts serving. Says on stderr where the schemas come from, or
    /// that validation is unavailable.
    pub fn start(opts: Options) -> io::Result<Server> {
        let listener = TcpListener::bind(&opts.addr)?;
        let addr = listener.local_addr()?;
        let schemas = match &opts.spec_dir {
            Some(dir) => Schemas::from_dir(dir),
            None => Schemas::embedded(),
        };
        let schemas = match schemas {
            Ok(s) => Some(s),
            Err(why) => {
                eprintln!("apm-server-local: schema validation UNAVAILABLE: {why}");
                None
            }
        };
        let ndjson = match &opts.ndjson_file {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let mut config = ConfigFile::new(opts.config_file.clone());
        if let Some(msg) = config.refresh() {
            eprintln!("apm-server-local: {msg}");
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(Limits {
                max_traces: opts.max_traces.max(1),
                max_bytes: opts.max_bytes,
            })),
            changed: Condvar::new(),
            schemas,
            config: Mutex::new(config),
            violations: Mutex::new(Default::default()),
            ndjson,
            stats: Stats::default(),
            shutdown: AtomicBool::new(false),
            conns: Mutex::new(Default::default()),
            open: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            opts,
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("apm-server-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        let s = Arc::clone(&shared);
        let reporter = thread::Builder::new()
            .name("apm-server-report".into())
            .spawn(move || report_loop(s))?;
        Ok(Server {
            addr,
            shared,
            acceptor: Some(acceptor),
            reporter: Some(reporter),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the agents' server URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the schemas come from, `None` when validation is unavailable.
    pub fn schema_source(&self) -> Option<&str> {
        self.shared.schemas.as_ref().map(Schemas::source)
    }

    /// Every kept trace, oldest first.
    pub fn traces(&self) -> Vec<Trace> {
        self.shared.store.lock().traces()
    }

    /// Schema violations and rejected requests seen (the last 200).
    pub fn violations(&self) -> Vec<Value> {
        self.shared.violations.lock().iter().cloned().collect()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Traces kept and the bytes of their events.
    pub fn memory(&self) -> (usize, usize) {
        let s = self.shared.store.lock();
        (s.trace_count(), s.bytes())
    }

    /// Reports every trace not reported yet, without waiting for it to settle (the demo
    /// calls it once its agent has flushed).
    pub fn complete_all(&self) {
        let done = self.shared.store.lock().complete_all();
        report(&self.shared, done);
    }

    /// Waits until at least `n` events have been accepted, or `timeout`; whether they were.
    /// Woken by each intake request, never by polling.
    pub fn wait_for_events(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut store = self.shared.store.lock();
        loop {
            if self.shared.stats.events_accepted.load(Ordering::Acquire) >= n {
                return true;
            }
            if self
                .shared
                .changed
                .wait_until(&mut store, deadline)
                .timed_out()
            {
                return self.shared.stats.events_accepted.load(Ordering::Acquire) >= n;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _store = self.shared.store.lock();
            self.shared.changed.notify_all();
        }
        // Wake the blocking accept(); if that connect fails the acceptor is left detached
        // rather than joined forever.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        for (_, conn) in self.shared.conns.lock().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        if let Some(reporter) = self.reporter.take() {
            let _ = reporter.join();
        }
        if let Some(acceptor) = self.acceptor.take().filter(|_| woke) {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        if shared.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            let _ = Response::json(503, r#"{"error":"too many connections"}"#)
                .write_to(&mut stream, false);
            continue;
        }
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared.conns.lock().insert(id, clone);
        }
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("apm-server-conn-{id}"))
            .spawn(move || {
                serve_connection(&s, stream);
                s.conns.lock().remove(&id);
                s.open.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.conns.lock().remove(&id);
            shared.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    while !shared.stopping() {
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData && !shared.stopping() {
                    let _ = Response::new(400)
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body(format!("400 Bad Request: {e}"))
                        .write_to(reader.get_mut(), false);
                }
                return;
            }
        };
        shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let response = route(shared, &req);
        // The APM Server closes the connection after every error answer.
        let keep_alive = req.keep_alive() && response.status < 400;
        if response.write_to(reader.get_mut(), keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

fn route(shared: &Shared, req: &Request) -> Response {
    let path = req.path.as_str();
    if path == "/ui" || path.starts_with("/ui/") {
        return ui::handle(shared, req);
    }
    match path {
        INTAKE_PATH => intake_request(shared, req),
        CONFIG_PATH => match authorize(shared, req) {
            Err(r) => r,
            Ok(()) => central_config(shared, req),
        },
        "/" if req.method == "GET" || req.method == "HEAD" => Response::json(
            200,
            json!({
                "build_date": "2024-08-01T00:00:00Z",
                "build_sha": "0000000000000000000000000000000000000000",
                "publish_ready": true,
                "version": SERVER_VERSION,
            })
            .to_string(),
        ),
        _ => Response::new(404)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("404 page not found\n"),
    }
}

/// 401 with the APM Server's message unless the request carries a configured credential.
fn authorize(shared: &Shared, req: &Request) -> Result<(), Response> {
    let o = &shared.opts;
    if o.secret_token.is_none() && o.api_key.is_none() {
        return Ok(());
    }
    let header = req.header("authorization").unwrap_or("");
    let (scheme, value) = header.split_once(' ').unwrap_or(("", ""));
    let expected = match scheme {
        "Bearer" => o.secret_token.as_deref(),
        "ApiKey" => o.api_key.as_deref(),
        _ => {
            return Err(unauthorized(
                "authentication failed: missing or improperly formatted Authorization header: \
                 expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey \
                 base64(API key ID:API key)'",
            ))
        }
    };
    if expected == Some(value.trim()) {
        Ok(())
    } else {
        Err(unauthorized("authentication failed: invalid token"))
    }
}

fn unauthorized(message: &str) -> Response {
    Response::json(401, json!({ "error": message }).to_string())
}

fn intake_request(shared: &Shared, req: &Request) -> Response {
    shared.stats.intake_requests.fetch_add(1, Ordering::Relaxed);
    let refuse = |message: String| {
        note_rejected(shared, req, &message, None);
        Response::json(400, intake::refused(message).to_string())
    };
    if req.method != "POST" {
        return refuse("only POST requests are supported".into());
    }
    if let Err(r) = authorize(shared, req) {
        note_rejected(shared, req, "unauthorized", None);
        return r;
    }
    let content_type = req.header("content-type").unwrap_or("");
    if !content_type.is_empty() && !content_type.contains("application/x-ndjson") {
        return refuse(format!("invalid content type: '{content_type}'"));
    }
    let body = match req.decoded_body() {
        Ok(b) => b,
        Err(e) => return refuse(format!("data decoding error: {e}")),
    };
    let outcome = intake::process(&body, shared.schemas.as_ref());
    let status = outcome.status();
    let verbose = req
        .query
        .as_deref()
        .is_some_and(|q| crate::http::query_param(q, "verbose").is_some());
    // The body only on errors, or when asked with `?verbose`, as the APM Server does.
    let answer = (status >= 400 || verbose).then(|| outcome.body().to_string());
    record(shared, req, outcome);
    match answer {
        Some(body) => Response::json(status, body),
        None => Response::new(status),
    }
}

/// Stores the accepted events, writes NDJSON, and reports violations loudly.
fn record(shared: &Shared, req: &Request, outcome: Outcome) {
    let service = outcome
        .metadata
        .as_ref()
        .and_then(|m| m.pointer("/service/name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    for (kind, line, errors) in &outcome.violations {
        let v = json!({
            "kind": kind, "service": service, "errors": errors, "document": clip(line),
            "user_agent": req.header("user-agent"),
        });
        eprintln!(
            "apm-server-local: SCHEMA VIOLATION: {kind} from {service} rejected:\n  {}\n  {}",
            errors.join("\n  "),
            clip(line)
        );
        push_violation(shared, v);
    }
    // Schema violations were reported above; the other rejected lines here.
    for e in outcome.errors.iter().filter(|e| {
        !outcome
            .violations
            .iter()
            .any(|(_, line, _)| Some(line) == e.document.as_ref())
    }) {
        note_rejected(shared, req, &e.message, e.document.as_deref());
    }
    let accepted = outcome.accepted.len() as u64;
    shared
        .stats
        .events_rejected
        .fetch_add(outcome.errors.len() as u64, Ordering::Relaxed);
    let ndjson = shared.opts.output == Output::Json || shared.ndjson.is_some();
    let mut lines = String::new();
    if ndjson {
        for e in &outcome.accepted {
            lines.push_str(&json!({ &e.kind: e.value }).to_string());
            lines.push('\n');
        }
    }
    if shared.opts.output == Output::Json {
        let mut out = io::stdout().lock();
        let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
    }
    if let Some(file) = &shared.ndjson {
        let _ = file.lock().write_all(lines.as_bytes());
    }
    let now = Instant::now();
    let mut store = shared.store.lock();
    for e in outcome.accepted {
        store.add(e, now);
    }
    shared
        .stats
        .events_accepted
        .fetch_add(accepted, Ordering::AcqRel);
    shared.changed.notify_all();
}

/// A request or line the server refused: said loudly and kept for the web page.
fn note_rejected(shared: &Shared, req: &Request, message: &str, document: Option<&str>) {
    let agent = req.header("user-agent").unwrap_or("?");
    match document {
        Some(d) => eprintln!(
            "apm-server-local: REJECTED ({agent}): {message}\n  {}",
            clip(d)
        ),
        None => eprintln!("apm-server-local: REJECTED ({agent}): {message}"),
    }
    push_violation(
        shared,
        json!({ "kind": "request", "errors": [message], "document": document.map(clip), "user_agent": agent }),
    );
}

/// A document as shown on stderr and kept for the web page: its first 4 KiB.
fn clip(document: &str) -> String {
    const MAX: usize = 4096;
    match (0..=MAX).rev().find(|&i| document.is_char_boundary(i)) {
        Some(cut) if document.len() > MAX => {
            format!("{}… ({} bytes)", &document[..cut], document.len())
        }
        _ => document.to_owned(),
    }
}

fn push_violation(shared: &Shared, v: Value) {
    let mut list = shared.violations.lock();
    if list.len() == MAX_VIOLATIONS {
        list.pop_front();
    }
    list.push_back(v);
}

/// `/config/v1/agents`: `service.name` from the query (GET) or the JSON body (POST).
fn central_config(shared: &Shared, req: &Request) -> Response {
    let service = match req.method.as_str() {
        "GET" => req
            .query
            .as_deref()
            .and_then(|q| crate::http::query_param(q, "service.name")),
        "POST" => serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|b| b.pointer("/service/name")?.as_str().map(str::to_owned)),
        _ => {
            return Response::json(
                405,
                json!({ "error": "only GET and POST requests are supported" }).to_string(),
            )
        }
    };
    let Some(service) = service.filter(|s| !s.is_empty()) else {
        return Response::json(
            400,
            json!({ "error": "service.name is required" }).to_string(),
        );
    };
    let mut config = shared.config.lock();
    if let Some(msg) = config.refresh() {
        eprintln!("apm-server-local: {msg}");
    }
    let (settings, etag) = config.for_service(&service);
    drop(config);
    let etag = format!("\"{etag}\"");
    let matches = req.header("if-none-match").is_some_and(|inm| {
        inm.split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
    });
    let r = if matches {
        Response::new(304)
    } else {
        Response::json(200, settings.to_string())
    };
    r.header("ETag", etag)
        .header("Cache-Control", "max-age=30, must-revalidate")
}

/// Prints the traces that settled, every quarter of the settling time.
fn report_loop(shared: Arc<Shared>) {
    let tick = (shared.opts.settle / 4).max(Duration::from_millis(20));
    loop {
        let done = {
            let mut store = shared.store.lock();
            if shared.stopping() {
                return;
            }
            shared.changed.wait_for(&mut store, tick);
            if shared.stopping() {
                return;
            }
            store.take_completed(Instant::now(), shared.opts.settle)
        };
        report(&shared, done);
    }
}

fn report(shared: &Shared, done: Vec<Completed>) {
    let Output::Waterfall { colour } = shared.opts.output else {
        return;
    };
    if done.is_empty() {
        return;
    }
    let mut text = String::new();
    for c in done {
        if c.update {
            text.push_str("(updated) ");
        }
        text.push_str(&waterfall::render(&c.trace, colour));
    }
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn documents_kept_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(5000);
        let kept = clip(&long);
        assert!(
            kept.len() < 4200 && kept.ends_with("… (10000 bytes)"),
            "{}",
            kept.len()
        );
    }
}
