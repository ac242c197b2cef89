//! The agent's HTTP/1.1 client for its own requests to the APM Server: intake, the server
//! information probe and central-configuration polls. One request per connection.
//!
//! The agent needs the whole request (connect, TLS handshake, sending, the answer) bounded by
//! `server_timeout` on the calling thread. minreq enforces its timeout by running every request
//! on a new thread, in whole seconds: a fourth thread for the duration of each request, which
//! also spoils "the agent runs exactly three threads". Here every socket operation gets the
//! time left until the request's deadline instead, and `verify_server_cert` and
//! `server_ca_cert_file` can be honoured.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::util::diag::warn_limited;
use super::endpoint::Endpoint;
use super::proxy::Proxy;

/// An answer's head (status line and headers) longer than this is not an APM Server's.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size line read.
const MAX_LINE: usize = 4 * 1024;
/// Most of the time left one address may take to connect when others remain to be tried.
const PER_ADDRESS: Duration = Duration::from_secs(2);
/// How long resolved addresses are used before the name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Answer bodies are kept up to this size (error messages, server information, central
/// configuration); the rest is not read.
const MAX_BODY: usize = 1024 * 1024;

/// What went wrong with a request, for the agent's log.
#[derive(Debug)]
pub(crate) enum Error {
    /// The deadline passed (connecting, sending or waiting for the answer).
    TimedOut(Duration),
    Io(io::Error),
    /// The answer is not HTTP/1.x as this client understands it.
    BadAnswer(&'static str),
    /// The server URL cannot be used (e.g. `https` without the `https` feature).
    Setup(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TimedOut(t) => write!(f, "no answer within server_timeout ({t:?})"),
            Error::Io(e) => e.fmt(f),
            Error::BadAnswer(why) => write!(f, "not an HTTP answer: {why}"),
            Error::Setup(why) => f.write_str(why),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A request: `path` (with its query) is appended to the server URL's path.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'static str,
    pub(crate) path: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
    /// For the whole request; zero means none.
    pub(crate) timeout: Duration,
}

/// An answer: status, headers (names in lower case) and up to [`MAX_BODY`] of the body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The client for the configured APM Server. One that could not be set up (an `https` URL
/// without the `https` feature, an unreadable `server_ca_cert_file`) fails every request with
/// the reason, which was logged when it was made.
#[derive(Debug)]
pub(crate) struct Server {
    client: Result<Client, String>,
    user_agent: String,
    authorization: Option<String>,
}

impl Server {
    pub(crate) fn new(config: &crate::config::Config) -> Server {
        let tls = TlsOptions {
            verify: config.verify_server_cert,
            ca_cert_file: config.server_ca_cert_file.clone(),
            pinned_cert_file: config.server_cert.clone(),
        };
        let client = Client::new(&config.server_url, &tls);
        match &client {
            Err(why) => warn_limited!("http-client", "cannot reach the APM Server: {why}"),
            Ok(c) => {
                if c.endpoint.tls && !tls.verify {
                    warn_limited!(
                        "http-client",
                        "verify_server_cert is false: the APM Server's certificate is not verified"
                    );
                }
                if let Some(proxy) = &c.proxy {
                    crate::util::diag::once(
                        log::Level::Info,
                        format_args!(
                            "requests to the APM Server go through the proxy {}",
                            proxy.endpoint.host_port()
                        ),
                    );
                }
            }
        }
        Server {
            client,
            user_agent: super::identity::user_agent(config),
            authorization: super::identity::authorization(config),
        }
    }

    /// Whether the server is on this machine by name (see [`Endpoint::is_loopback`]).
    pub(crate) fn is_loopback(&self) -> bool {
        self.client.as_ref().is_ok_and(|c| c.endpoint.is_loopback())
    }

    /// Sends `req` with the agent's `User-Agent` and, when configured, `Authorization`.
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response, Error> {
        self.send_while(req, None)
    }

    /// [`send`](Self::send), calling `idle` every [`IDLE_EVERY`] or so while the socket
    /// keeps this thread waiting (writing the body, waiting for the answer).
    pub(crate) fn send_while(
        &self,
        req: &Request<'_>,
        idle: Option<&mut dyn FnMut()>,
    ) -> Result<Response, Error> {
        let client = self
            .client
            .as_ref()
            .map_err(|why| Error::Setup(why.clone()))?;
        let mut headers = vec![("User-Agent", self.user_agent.as_str())];
        if let Some(auth) = &self.authorization {
            headers.push(("Authorization", auth));
        }
        headers.extend_from_slice(req.headers);
        client.send_while(
            &Request {
                headers: &headers,
                ..*req
            },
            idle,
        )
    }
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify: true,
            ca_cert_file: None,
            pinned_cert_file: None,
        }
    }
}

/// A client for one APM Server.
pub(crate) struct Client {
    endpoint: Endpoint,
    /// From the environment (`https_proxy`, `http_proxy`, `no_proxy`).
    proxy: Option<Proxy>,
    /// The server's addresses and when they were resolved.
    resolved: Mutex<Option<(Vec<SocketAddr>, Instant)>>,
    #[cfg(feature = "https")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// How an `https` server's certificate is checked. The default verifies it against the
/// built-in roots.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "https"), allow(dead_code))]
pub(crate) struct TlsOptions {
    /// `verify_server_cert`; false accepts any certificate.
    pub(crate) verify: bool,
    /// `server_ca_cert_file`: PEM certificates trusted in place of the built-in roots.
    pub(crate) ca_cert_file: Option<String>,
    /// `server_cert`: the one certificate the server must present.
    pub(crate) pinned_cert_file: Option<String>,
}

impl Client {
    pub(crate) fn new(server_url: &str, tls: &TlsOptions) -> Result<Client, String> {
        Client::with_env(server_url, tls, |name| std::env::var(name).ok())
    }

    /// [`Client::new`] with the environment variables `var` looks up (for the proxy).
    #[cfg_attr(not(feature = "https"), allow(unused_variables))]
    pub(crate) fn with_env(
        server_url: &str,
        tls: &TlsOptions,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Client, String> {
        let endpoint = Endpoint::parse(server_url)?;
        // A proxy this client cannot use (`socks5://`, `https://`, a bad URL) is reported once
        // and skipped: refusing to start would send nothing at all, where going direct may
        // well reach the server.
        let proxy = Proxy::for_target(&endpoint, var).unwrap_or_else(|why| {
            crate::util::diag::warn_once!("{why}; connecting to the APM Server directly");
            None
        });
        #[cfg(feature = "https")]
        let tls = if endpoint.tls {
            Some(tls::client_config(tls)?)
        } else {
            None
        };
        #[cfg(not(feature = "https"))]
        if endpoint.tls {
            return Err(format!(
                "server_url {server_url:?} is https, and this build of the agent has no TLS \
                 (cargo feature `https`)"
            ));
        }
        Ok(Client {
            endpoint,
            proxy,
            resolved: Mutex::new(None),
            #[cfg(feature = "https")]
            tls,
        })
    }

    /// Sends `req` on a new connection and reads the answer, within `req.timeout`.
    #[cfg(test)]
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response, Error> {
        self.send_while(req, None)
    }

    /// Sends `req` on a new connection and reads the answer, within `req.timeout`, calling
    /// `idle` while the socket keeps this thread waiting.
    pub(crate) fn send_while(
        &self,
        req: &Request<'_>,
        idle: Option<&mut dyn FnMut()>,
    ) -> Result<Response, Error> {
        let deadline = Deadline::after(req.timeout);
        let result = self
            .connect(deadline, idle)
            .and_then(|stream| exchange(stream, &self.head(req), req));
        match result {
            Err(Error::Io(e)) if deadline.is_timeout(&e) => Err(Error::TimedOut(req.timeout)),
            other => other,
        }
    }

    fn head(&self, req: &Request<'_>) -> Vec<u8> {
        let mut head = Vec::with_capacity(256);
        // Through a proxy, a plain request names the whole URL (an https one goes through a
        // tunnel, and looks as if sent directly).
        let proxied = self.proxy.as_ref().filter(|_| !self.endpoint.tls);
        let origin = match proxied {
            Some(_) => format!("http://{}", self.endpoint.authority),
            None => String::new(),
        };
        let _ = write!(
            head,
            "{} {origin}{}{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            req.method, self.endpoint.base_path, req.path, self.endpoint.authority
        );
        if let Some(auth) = proxied.and_then(|p| p.authorization.as_deref()) {
            let _ = write!(head, "Proxy-Authorization: {auth}\r\n");
        }
        if !req.body.is_empty() || req.method == "POST" {
            let _ = write!(head, "Content-Length: {}\r\n", req.body.len());
        }
        for (name, value) in req.headers {
            // A value from configuration must not be able to add headers of its own.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Connects to the first address that answers; each but the last may take only its
    /// share of the time left, so that an address that swallows packets (IPv6 routed
    /// nowhere, say) cannot use up the whole deadline.
    fn connect<'h>(
        &self,
        deadline: Deadline,
        idle: Option<&'h mut dyn FnMut()>,
    ) -> Result<Stream<'h>, Error> {
        let mut idle = idle;
        let addrs = self.addresses()?;
        let mut last = None;
        for (i, addr) in addrs.iter().enumerate() {
            let untried = (addrs.len() - i) as u32;
            let attempt = match deadline.left()? {
                Some(left) if untried > 1 => {
                    TcpStream::connect_timeout(addr, (left / untried).min(PER_ADDRESS))
                }
                Some(left) => TcpStream::connect_timeout(addr, left),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(tcp) => {
                    self.worked(*addr);
                    let _ = tcp.set_nodelay(true);
                    let mut timed = Timed {
                        tcp,
                        deadline,
                        idle: None,
                    };
                    if let Some(proxy) = self.proxy.as_ref().filter(|_| self.endpoint.tls) {
                        proxy.tunnel(&mut timed, &self.endpoint)?;
                    }
                    timed.idle = idle.take();
                    return self.secure(timed);
                }
                Err(e) => last = Some(e),
            }
        }
        // Resolve again next time: the server may have moved.
        *self.resolved.lock() = None;
        Err(last.map_or_else(
            || Error::Setup(format!("{} resolves to no address", self.dialled().host)),
            Error::Io,
        ))
    }

    /// The server's addresses, resolved at most once per [`RESOLVE_EVERY`] (and again after
    /// a failure to connect). The system resolver cannot be given a deadline: a slow one
    /// delays this thread's request beyond `server_timeout` (never the application), and the
    /// cache keeps that to one request in a while.
    fn addresses(&self) -> Result<Vec<SocketAddr>, Error> {
        let mut resolved = self.resolved.lock();
        if let Some((addrs, at)) = &*resolved {
            if at.elapsed() < RESOLVE_EVERY {
                return Ok(addrs.clone());
            }
        }
        let dial = self.dialled();
        let addrs: Vec<SocketAddr> = (dial.host.as_str(), dial.port).to_socket_addrs()?.collect();
        *resolved = Some((addrs.clone(), Instant::now()));
        Ok(addrs)
    }

    /// Resolves the name of the host connections go to within `timeout`, and keeps the
    /// addresses for the next requests; `false` when it did not resolve in time. The system
    /// resolver has no deadline of its own: it runs on a short-lived thread, left to finish
    /// alone when it is late (an address needs none).
    pub(crate) fn resolve_within(&self, timeout: Duration) -> bool {
        let dial = self.dialled();
        let addrs = if let Ok(ip) = dial.host.parse::<std::net::IpAddr>() {
            vec![SocketAddr::new(ip, dial.port)]
        } else {
            let (host, port) = (dial.host.clone(), dial.port);
            let (tx, rx) = std::sync::mpsc::channel();
            let resolver = std::thread::Builder::new().spawn(move || {
                let addrs = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>);
                let _ = tx.send(addrs);
            });
            if resolver.is_err() {
                return false;
            }
            match rx.recv_timeout(timeout) {
                Ok(Ok(addrs)) => addrs,
                _ => return false,
            }
        };
        if addrs.is_empty() {
            return false;
        }
        *self.resolved.lock() = Some((addrs, Instant::now()));
        true
    }

    /// Where connections go: the proxy, if there is one, else the APM Server.
    fn dialled(&self) -> &Endpoint {
        self.proxy.as_ref().map_or(&self.endpoint, |p| &p.endpoint)
    }

    /// Puts the address that answered first for the next requests.
    fn worked(&self, addr: SocketAddr) {
        if let Some((addrs, _)) = &mut *self.resolved.lock() {
            if let Some(i) = addrs.iter().position(|a| *a == addr) {
                addrs[..=i].rotate_right(1);
            }
        }
    }

    #[cfg(feature = "https")]
    fn secure<'h>(&self, timed: Timed<'h>) -> Result<Stream<'h>, Error> {
        match &self.tls {
            Some(config) => tls::wrap(config, &self.endpoint.host, timed),
            None => Ok(Stream::Plain(timed)),
        }
    }

    #[cfg(not(feature = "https"))]
    fn secure<'h>(&self, timed: Timed<'h>) -> Result<Stream<'h>, Error> {
        Ok(Stream::Plain(timed))
    }
}

/// Writes the request and reads the answer.
/// Writes the request and reads the answer. A server may answer (401, 413, 503) and close
/// before it has read the whole body: its answer then says more than the failed write.
fn exchange(mut stream: Stream<'_>, head: &[u8], req: &Request<'_>) -> Result<Response, Error> {
    let sent = stream
        .write_all(head)
        .and_then(|()| stream.write_all(req.body))
        .and_then(|()| stream.flush());
    let answer = read_response(&mut BufReader::new(stream), req.method == "HEAD");
    match (sent, answer) {
        (Err(e), Err(_)) => Err(e.into()),
        (_, answer) => answer,
    }
}

/// When a request must be over, if it has a timeout.
#[derive(Debug, Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline((!timeout.is_zero()).then(|| Instant::now() + timeout))
    }

    /// The time left (`None`: no deadline), or a timeout error once it has passed.
    fn left(self) -> io::Result<Option<Duration>> {
        let Some(at) = self.0 else { return Ok(None) };
        match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    fn is_timeout(self, e: &io::Error) -> bool {
        self.0.is_some()
            && matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            )
    }
}

/// How often a socket wait gives way to the caller's idle work, when it has some.
/// The transport's queue (1 000 events by default) fills in 2 ms at 500 000 events/s.
pub(crate) const IDLE_EVERY: Duration = Duration::from_millis(1);

/// A socket whose every read and write may take only the time left until the deadline; with
/// `idle`, each wait is cut in slices of [`IDLE_EVERY`], with `idle` called between them.
struct Timed<'h> {
    tcp: TcpStream,
    deadline: Deadline,
    idle: Option<&'h mut dyn FnMut()>,
}

impl std::fmt::Debug for Timed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed")
            .field("tcp", &self.tcp)
            .field("deadline", &self.deadline)
            .field("idle", &self.idle.is_some())
            .finish()
    }
}

impl Timed<'_> {
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.left()?;
        let wait = match (left, self.idle.is_some()) {
            (Some(left), true) => Some(left.min(IDLE_EVERY)),
            (None, true) => Some(IDLE_EVERY),
            (left, false) => left,
        };
        if wait.is_some() {
            self.tcp.set_read_timeout(wait)?;
            self.tcp.set_write_timeout(wait)?;
        }
        Ok(())
    }

    /// Runs `op` on the socket; a slice that ran out with time left runs the idle work and
    /// tries again.
    fn wait(&mut self, mut op: impl FnMut(&mut TcpStream) -> io::Result<usize>) -> io::Result<usize> {
        loop {
            self.arm()?;
            match op(&mut self.tcp) {
                Err(e)
                    if self.idle.is_some()
                        && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    self.deadline.left()?;
                    if let Some(idle) = self.idle.as_mut() {
                        idle();
                    }
                }
                other => return other,
            }
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(|tcp| tcp.read(buf))
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait(|tcp| tcp.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream<'h> {
    Plain(Timed<'h>),
    #[cfg(feature = "https")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Timed<'h>>>),
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "https")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "https")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            #[cfg(feature = "https")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Reads one answer (skipping interim `1xx` ones): its head, then a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length` or the end of the connection.
fn read_response(r: &mut impl BufRead, head_only: bool) -> Result<Response, Error> {
    let mut budget = MAX_HEAD;
    let (status, headers) = loop {
        let status_line = head_line(r, &mut budget)?;
        let status = parse_status(&status_line)?;
        let mut headers = Vec::new();
        loop {
            let line = head_line(r, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(Error::BadAnswer("a header line without ':'"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = response.header("content-length").map(str::to_owned);
    response.body = if chunked {
        read_chunked(r)?
    } else if let Some(length) = length {
        let length: usize = length
            .parse()
            .map_err(|_| Error::BadAnswer("a Content-Length that is not a number"))?;
        let mut body = Vec::with_capacity(length.min(MAX_BODY));
        r.take(length.min(MAX_BODY) as u64).read_to_end(&mut body)?;
        if body.len() < length.min(MAX_BODY) {
            return Err(Error::BadAnswer(
                "the body is shorter than its Content-Length",
            ));
        }
        body
    } else {
        read_to_close(r)?
    };
    Ok(response)
}

/// One line of the head without its line ending, counted against the head's budget.
fn head_line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, Error> {
    let mut line = Vec::new();
    let n = r.take(*budget as u64).read_until(b'\n', &mut line)?;
    *budget -= n;
    if !line.ends_with(b"\n") {
        return Err(Error::BadAnswer(if *budget == 0 {
            "its head is too long"
        } else {
            "the connection closed in the middle of the head"
        }));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// `HTTP/1.1 202 Accepted` → 202.
fn parse_status(line: &str) -> Result<u16, Error> {
    let rest = line.strip_prefix("HTTP/1.").ok_or(Error::BadAnswer(
        "the first line is not an HTTP/1.x status line",
    ))?;
    // `1 202 Accepted`: the minor version, a space, three digits, then a space or the end.
    let bytes = rest.as_bytes();
    let framed = bytes.get(1) == Some(&b' ') && matches!(bytes.get(5), None | Some(b' '));
    let code = rest.get(2..5).filter(|_| framed);
    code.and_then(|c| c.parse().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or(Error::BadAnswer("the status line has no valid status code"))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let line = chunk_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| Error::BadAnswer("a chunk size that is not hexadecimal"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            while !head_line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        let keep = size.min(MAX_BODY.saturating_sub(body.len()));
        let before = body.len();
        r.take(keep as u64).read_to_end(&mut body)?;
        if body.len() - before < keep {
            return Err(Error::BadAnswer(
                "the connection closed in the middle of a chunk",
            ));
        }
        if keep < size {
            // Enough kept: the rest is not needed, and the connection is not reused.
            return Ok(body);
        }
        if !chunk_line(r)?.is_empty() {
            return Err(Error::BadAnswer("a chunk longer than its size"));
        }
    }
}

/// A chunk-size line, or the line ending after a chunk. Each is bounded on its own, so that
/// many small chunks are fine.
fn chunk_line(r: &mut impl BufRead) -> Result<String, Error> {
    let mut budget = MAX_LINE;
    head_line(r, &mut budget)
}

/// A body without framing ends with the connection. A TLS peer that closes without
/// `close_notify` ends it too: the answer's head has been read already.
fn read_to_close(r: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    match r.take(MAX_BODY as u64).read_to_end(&mut body) {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(body),
        Err(e) => Err(e.into()),
    }
}

#[cfg(feature = "https")]
mod tls;

/// Reads `data` as an answer, body and head-only (`crate::fuzz`).
#[cfg(any(test, fuzzing))]
pub(crate) fn read_any_answer(data: &[u8]) {
    let _ = read_response(&mut &data[..], false);
    let _ = read_response(&mut &data[..], true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Response, Error> {
        read_response(&mut &raw[..], false)
    }

    #[test]
    fn a_proxy_the_client_cannot_use_is_skipped_not_fatal() {
        let tls = TlsOptions {
            verify: true,
            ca_cert_file: None,
            pinned_cert_file: None,
        };
        for proxy in ["socks5://proxy:1080", "https://proxy:443", "http://proxy:port"] {
            let client = Client::with_env("http://apm.example:8200", &tls, |name| {
                (name == "HTTP_PROXY").then(|| proxy.to_owned())
            })
            .unwrap_or_else(|e| panic!("{proxy}: {e}"));
            assert_eq!(client.proxy, None, "{proxy}");
        }
        let client = Client::with_env("http://apm.example:8200", &tls, |name| {
            (name == "HTTP_PROXY").then(|| "http://proxy:3128".to_owned())
        })
        .expect("a usable proxy");
        assert!(client.proxy.is_some());
    }

    #[test]
    fn endpoints_from_server_urls() {
        let parts = |url: &str| {
            let e = Endpoint::parse(url).unwrap();
            (e.tls, e.host, e.port, e.authority, e.base_path)
        };
        let expect = |tls, host: &str, port, authority: &str, path: &str| {
            (tls, host.into(), port, authority.into(), path.into())
        };
        assert_eq!(
            parts("http://localhost:8200"),
            expect(false, "localhost", 8200, "localhost:8200", "")
        );
        assert_eq!(
            parts("HTTPS://user:pw@apm.example.com/prefix/?q=1#f"),
            expect(true, "apm.example.com", 443, "apm.example.com", "/prefix")
        );
        assert_eq!(
            parts("http://[::1]:8200/"),
            expect(false, "::1", 8200, "[::1]:8200", "")
        );
        assert_eq!(parts("http://[::1]"), expect(false, "::1", 80, "[::1]", ""));
        for bad in [
            "localhost:8200",
            "ftp://x",
            "http://",
            "http://:80",
            "http://h:port",
            "http://[::1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        let loopback = |url| Endpoint::parse(url).unwrap().is_loopback();
        assert!(loopback("http://localhost:8200"));
        assert!(loopback("http://127.0.0.1:8200/"));
        assert!(loopback("https://[::1]:8200"));
        assert!(loopback("http://user:pw@LOCALHOST"));
        assert!(!loopback("https://apm.example.com:443"));
        assert!(!loopback("http://10.0.0.1:8200"));
    }

    #[test]
    fn request_heads_carry_host_length_and_clean_headers() {
        let client =
            Client::with_env("http://apm:8200/base", &TlsOptions::default(), |_| None).unwrap();
        let head = client.head(&Request {
            method: "POST",
            path: "/intake/v2/events",
            headers: &[("Authorization", "Bearer x\r\nX-Injected: 1")],
            body: b"abc",
            timeout: Duration::ZERO,
        });
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /base/intake/v2/events HTTP/1.1\r\nHost: apm:8200\r\nConnection: close\r\n\
             Content-Length: 3\r\nAuthorization: Bearer xX-Injected: 1\r\n\r\n"
        );
    }

    #[test]
    fn bodies_framed_by_length_chunks_or_close() {
        let r =
            parse(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nETag: \"x\"\r\n\r\nokIGNORED")
                .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"ok"[..]));
        assert_eq!(r.header("etag"), Some("\"x\""));
        assert!(r.is_success());

        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"abcde");

        let r = parse(b"HTTP/1.0 503 Service Unavailable\nServer: x\n\nqueue is full").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"queue is full"[..]));
        assert!(!r.is_success());

        let r = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
    }

    #[test]
    fn answers_that_are_not_http_are_errors() {
        for raw in [
            &b""[..],
            b"\x00\x01SSH-2.0-definitely-not-http\r\n\xff\xfe",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 202",
            b"HTTP/1.1 202 Accepted\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            assert!(
                matches!(parse(raw), Err(Error::BadAnswer(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let endless = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert!(matches!(parse(&endless), Err(Error::BadAnswer(m)) if m.contains("too long")));
    }

    #[test]
    fn bodies_beyond_the_limit_are_cut() {
        let big = [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 10
            )
            .as_bytes(),
            &vec![b'x'; MAX_BODY + 10],
        ]
        .concat();
        assert_eq!(parse(&big).unwrap().body.len(), MAX_BODY);
    }

    fn get(client: &Client, timeout: Duration) -> Result<Response, Error> {
        client.send(&Request {
            method: "GET",
            path: "/",
            headers: &[],
            body: &[],
            timeout,
        })
    }

    /// Sends a GET with a 300 ms deadline to `url` and asserts it timed out in about that
    /// time (the slack is for a busy machine).
    fn times_out(url: &str) {
        let client = Client::new(url, &TlsOptions::default()).unwrap();
        let started = Instant::now();
        let result = get(&client, Duration::from_millis(300));
        let took = started.elapsed();
        assert!(matches!(result, Err(Error::TimedOut(_))), "{result:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn plain_requests_through_a_proxy_name_the_whole_url() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("http://u:p@{}", proxy.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (conn, _) = proxy.accept().unwrap();
            let mut reader = BufReader::new(conn);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
            reader.get_mut().write_all(answer).unwrap();
            head
        });
        // The APM Server's name does not resolve: only the proxy can have answered.
        let client = Client::with_env(
            "http://apm.invalid:8200/base",
            &TlsOptions::default(),
            |name| (name == "http_proxy").then(|| proxy_url.clone()),
        )
        .unwrap();
        let answer = get(&client, Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, 202);
        let head = seen.join().unwrap();
        assert_eq!(head[0], "GET http://apm.invalid:8200/base/ HTTP/1.1");
        assert!(
            head.contains(&"Host: apm.invalid:8200".to_owned()),
            "{head:?}"
        );
        assert!(
            head.contains(&"Proxy-Authorization: Basic dTpw".to_owned()),
            "{head:?}"
        );
    }

    #[test]
    fn a_deadline_bounds_waiting_for_a_silent_server() {
        // The kernel accepts the connection; nobody ever reads or answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        times_out(&format!("http://{}", listener.local_addr().unwrap()));
    }

    #[test]
    fn a_deadline_bounds_the_whole_answer_not_each_read() {
        // Answers one byte every 20 ms, forever: every read succeeds in time, the answer never
        // ends.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let trickle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            for byte in b"HTTP/1.1 200 OK\r\nX: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
            {
                std::thread::sleep(Duration::from_millis(20));
                if conn.write_all(&[*byte]).is_err() {
                    return;
                }
            }
        });
        times_out(&url);
        trickle.join().unwrap();
    }

    #[cfg(feature = "https")]
    #[test]
    fn a_deadline_bounds_a_tls_handshake_that_never_ends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        times_out(&format!("https://{}", listener.local_addr().unwrap()));
    }

    #[test]
    fn many_small_chunks_and_a_close_without_close_notify_are_fine() {
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20_000 {
            raw.extend_from_slice(b"1\r\nx\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(parse(&raw).unwrap().body.len(), 20_000);

        // rustls reports a peer that closed without `close_notify` as `UnexpectedEof`.
        struct Abrupt<'a>(&'a [u8]);
        impl Read for Abrupt<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.0.read(buf)
            }
        }
        let raw = b"HTTP/1.1 200 OK\r\n\r\n{\"version\":\"8.15.0\"}";
        let r = read_response(&mut BufReader::new(Abrupt(raw)), false).unwrap();
        assert_eq!(r.body, b"{\"version\":\"8.15.0\"}");
    }
}
