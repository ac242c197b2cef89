//! The agent's HTTP client for its own requests to the APM Server: intake, the server
//! information probe and central-configuration polls; ureq over connections of the agent's
//! own making, kept alive between requests.
//!
//! What ureq is given: a connector chain (SOCKS and `CONNECT` tunnels are ureq's; TCP is
//! [`socket`]'s, whose waits run the transport's idle work; TLS is [`tls`]'s, which honours
//! `verify_server_cert`, `server_ca_cert_file` and `server_cert`), a resolver with a deadline
//! and a cache ([`resolve`]), and `server_timeout` for each whole request. What it lacks is
//! kept here: the proxy from the environment with `no_proxy` ranges (`super::proxy`), and
//! the absolute URL an HTTP forward proxy wants for plain requests (ureq tunnels them).

use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::endpoint::Endpoint;
use super::proxy::{Protocol, Proxy};
use crate::util::diag::warn_limited;

mod resolve;
mod socket;
#[cfg(feature = "https")]
mod tls;

/// Answer bodies are kept up to this size (error messages, server information, central
/// configuration); the rest is not read.
const MAX_BODY: usize = 1024 * 1024;

/// What went wrong with a request, for the agent's log.
#[derive(Debug)]
pub(crate) enum Error {
    /// The deadline passed (resolving, connecting, sending or waiting for the answer).
    TimedOut(Duration),
    Io(io::Error),
    /// The answer is not HTTP as ureq understands it, or the proxy refused.
    Http(ureq::Error),
    /// The server URL cannot be used (e.g. `https` without the `https` feature).
    Setup(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TimedOut(t) => write!(f, "no answer within server_timeout ({t:?})"),
            Error::Io(e) => e.fmt(f),
            Error::Http(e) => e.fmt(f),
            Error::Setup(why) => f.write_str(why),
        }
    }
}

impl Error {
    fn from_ureq(e: ureq::Error, timeout: Duration) -> Error {
        let timed_out = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            )
        };
        match e {
            ureq::Error::Timeout(_) => Error::TimedOut(timeout),
            ureq::Error::Io(e) if timed_out(&e) => Error::TimedOut(timeout),
            ureq::Error::Io(e) => Error::Io(e),
            e => Error::Http(e),
        }
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

/// What a client for the APM Server sends: what its plain connections write at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Small requests (central configuration): ureq's writes of 16 KiB.
    Small,
    /// Intake bodies: [`BODY_WRITES`] at once.
    Bodies,
}

/// What a plain connection carrying intake bodies writes at once. A body is up to
/// `api_request_size` (768 KiB by default), uncompressed to a server on this machine: in
/// writes of 16 KiB, the kernel's work per write, not the bytes, was most of what sending
/// cost (`BENCHMARKS.md` §12h). Under TLS, rustls writes a record of 16 KiB at a time anyway.
/// The connection's output buffer has this size, which sets the length of the parts its socket
/// writes from the body itself (`socket::DirectBody`); only the transport's connection holds
/// a buffer this large (ureq fills it with zeros when it first writes).
const BODY_WRITES: usize = 256 * 1024;

/// ureq's writes, and what a connection under TLS writes at once: a TLS record's size.
const SMALL_WRITES: usize = 16 * 1024;

impl Writes {
    fn bytes(self) -> usize {
        match self {
            Writes::Small => SMALL_WRITES,
            Writes::Bodies => BODY_WRITES,
        }
    }
}

impl Server {
    /// A client for the configured server, its plain connections writing as `writes` says.
    pub(crate) fn new(config: &crate::config::Config, writes: Writes) -> Server {
        let tls = TlsOptions {
            verify: config.verify_server_cert,
            ca_cert_file: config.server_ca_cert_file.clone(),
            pinned_cert_file: config.server_cert.clone(),
        };
        let client = Client::with_env_writing(
            &config.server_url,
            &tls,
            |name| std::env::var(name).ok(),
            writes.bytes(),
        );
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
                            "requests to the APM Server go through the proxy {}{}",
                            proxy.endpoint.host_port(),
                            if matches!(proxy.protocol, Protocol::Socks(_)) {
                                " (SOCKS)"
                            } else {
                                ""
                            }
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

    /// [`send`](Self::send), calling `idle` every millisecond or so while a socket
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

/// A client for one APM Server: one ureq agent, whose connections are kept alive between
/// requests.
pub(crate) struct Client {
    endpoint: Endpoint,
    /// From the environment (`https_proxy`, `http_proxy`, `no_proxy`).
    proxy: Option<Proxy>,
    /// `scheme://authority/base_path` of every request's URL.
    base_url: String,
    /// `Proxy-Authorization` of plain requests to an HTTP forward proxy.
    forward_authorization: Option<String>,
    agent: ureq::Agent,
    addresses: Arc<resolve::Addresses>,
    /// Connections the socket connector opened.
    opened: Arc<AtomicU64>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("proxy", &self.proxy)
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
    /// [`Client::with_env`] with the process's environment.
    #[cfg(test)]
    pub(crate) fn new(server_url: &str, tls: &TlsOptions) -> Result<Client, String> {
        Client::with_env(server_url, tls, |name| std::env::var(name).ok())
    }

    /// A client for `server_url`, its proxy taken from the environment variables `var` looks
    /// up, its plain connections writing [`Writes::Small`] at once.
    pub(crate) fn with_env(
        server_url: &str,
        tls: &TlsOptions,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Client, String> {
        Client::with_env_writing(server_url, tls, var, Writes::Small.bytes())
    }

    /// [`Client::with_env`], its plain connections writing `plain_writes` bytes at once.
    #[cfg_attr(not(feature = "https"), allow(unused_variables))]
    fn with_env_writing(
        server_url: &str,
        tls: &TlsOptions,
        var: impl Fn(&str) -> Option<String>,
        plain_writes: usize,
    ) -> Result<Client, String> {
        use ureq::unversioned::transport::Connector;

        let endpoint = Endpoint::parse(server_url)?;
        // A proxy this client cannot use (`https://`, a bad URL) is reported once and
        // skipped: refusing to start would send nothing at all, where going direct may well
        // reach the server.
        fn skip<T>(why: String) -> Option<T> {
            crate::util::diag::warn_once!("{why}; connecting to the APM Server directly");
            None
        }
        let proxy = Proxy::for_target(&endpoint, var).unwrap_or_else(skip);
        // Plain requests to an HTTP proxy are sent to it as they are, with the whole URL;
        // everything else goes through ureq's proxy support (a tunnel or SOCKS).
        let forward = proxy
            .clone()
            .filter(|p| p.protocol == Protocol::Http && !endpoint.tls);
        let forward = forward.as_ref();
        let ureq_proxy = match proxy.as_ref().filter(|_| forward.is_none()) {
            Some(p) => p.to_ureq().map_or_else(skip, Some),
            None => None,
        };
        let proxy = proxy.filter(|_| forward.is_some() || ureq_proxy.is_some());
        let addresses = Arc::new(resolve::Addresses::new(
            forward.map(|p| (p.endpoint.host.clone(), p.endpoint.port)),
        ));
        let scheme = if endpoint.tls { "https" } else { "http" };
        let opened = Arc::new(AtomicU64::new(0));
        let connector = socket::SocketConnector {
            forward_origin: forward.map(|_| format!("{scheme}://{}", endpoint.authority).into()),
            opened: Arc::clone(&opened),
            plain_writes,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // The agent's own headers only: `User-Agent` comes with each request.
            .user_agent("")
            .accept("")
            .accept_encoding("")
            .proxy(ureq_proxy)
            // One thread sends through each client: one connection is enough to keep.
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            // What a kept connection holds (per layer: TCP, TLS): room for an answer's head
            // as large as ureq accepts, and writes of 16 KiB, a TLS record's size.
            .input_buffer_size(64 * 1024)
            .output_buffer_size(SMALL_WRITES)
            .max_response_header_size(64 * 1024)
            .build();
        let chain =
            ().chain(ureq::unversioned::transport::SocksConnector::default())
                .chain(ureq::unversioned::transport::ConnectProxyConnector::default())
                .chain(connector);
        #[cfg(feature = "https")]
        let agent = {
            let tls = tls::client_config(tls)?;
            ureq::Agent::with_parts(
                config,
                chain.chain(tls::TlsConnector(tls)),
                resolve::Shared(Arc::clone(&addresses)),
            )
        };
        #[cfg(not(feature = "https"))]
        let agent = {
            if endpoint.tls {
                return Err(format!(
                    "server_url {server_url:?} is https, and this build of the agent has no TLS \
                     (cargo feature `https`)"
                ));
            }
            ureq::Agent::with_parts(config, chain, resolve::Shared(Arc::clone(&addresses)))
        };
        Ok(Client {
            base_url: format!("{scheme}://{}{}", endpoint.authority, endpoint.base_path),
            forward_authorization: forward.and_then(|p| p.authorization.clone()),
            endpoint,
            proxy,
            agent,
            addresses,
            opened,
        })
    }

    /// Sends `req` and reads the answer, within `req.timeout`.
    #[cfg(test)]
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response, Error> {
        self.send_while(req, None)
    }

    /// Sends `req` and reads the answer, within `req.timeout`, calling `idle` while a socket
    /// keeps this thread waiting.
    pub(crate) fn send_while(
        &self,
        req: &Request<'_>,
        idle: Option<&mut dyn FnMut()>,
    ) -> Result<Response, Error> {
        let started = std::time::Instant::now();
        let mut idle = idle;
        let opened = self.opened.load(Relaxed);
        let first = self.exchange(req, req.timeout, idle.as_deref_mut());
        // A kept-alive connection the server closed as the request left fails it without an
        // answer: sent again once, on a new connection, if there is time left.
        let reused = self.opened.load(Relaxed) == opened;
        let left = (!req.timeout.is_zero())
            .then(|| req.timeout.saturating_sub(started.elapsed()))
            .filter(|left| !left.is_zero());
        match first {
            Err(Error::Io(e))
                if reused && closed_early(&e) && (req.timeout.is_zero() || left.is_some()) =>
            {
                self.exchange(req, left.unwrap_or(Duration::ZERO), idle)
                    .map_err(|e| match e {
                        Error::TimedOut(_) => Error::TimedOut(req.timeout),
                        e => e,
                    })
            }
            other => other,
        }
    }

    fn exchange<'i>(
        &self,
        req: &Request<'_>,
        timeout: Duration,
        idle: Option<&mut (dyn FnMut() + 'i)>,
    ) -> Result<Response, Error> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(format!("{}{}", self.base_url, req.path));
        if let Some(auth) = &self.forward_authorization {
            builder = builder.header("Proxy-Authorization", auth.as_str());
        }
        for (name, value) in req.headers {
            // A value from configuration must not be able to add headers of its own.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            builder = builder.header(*name, value);
        }
        let has_body = !req.body.is_empty() || req.method == "POST";
        let result = socket::while_waiting(idle, || {
            let answer = if has_body {
                socket::sending_directly(req.body, |body| {
                    let request = builder
                        .header("Content-Length", req.body.len())
                        .body(ureq::SendBody::from_reader(body))
                        .map_err(ureq::Error::from)?;
                    self.agent.run(self.timed(request, timeout))
                })
            } else {
                let request = builder.body(()).map_err(ureq::Error::from)?;
                self.agent.run(self.timed(request, timeout))
            }?;
            let (parts, body) = answer.into_parts();
            let mut kept = Vec::new();
            body.into_reader()
                .take(MAX_BODY as u64)
                .read_to_end(&mut kept)?;
            Ok::<_, ureq::Error>((parts, kept))
        });
        let (parts, body) = result.map_err(|e| Error::from_ureq(e, req.timeout))?;
        let header = |(name, value): (&ureq::http::HeaderName, &ureq::http::HeaderValue)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        };
        let headers = parts.headers.iter().filter_map(header).collect();
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    /// `request` bounded by `timeout` as a whole (zero: no bound).
    fn timed<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
        timeout: Duration,
    ) -> ureq::http::Request<B> {
        self.agent
            .configure_request(request)
            .timeout_global((!timeout.is_zero()).then_some(timeout))
            .build()
    }

    /// Resolves the name of the host connections go to within `timeout`, and keeps the
    /// addresses for the next requests; `false` when it did not resolve in time.
    pub(crate) fn resolve_within(&self, timeout: Duration) -> bool {
        let dial = self.proxy.as_ref().map_or(&self.endpoint, |p| &p.endpoint);
        self.addresses
            .lookup(&dial.host, dial.port, Some(timeout))
            .is_ok()
    }
}

/// Whether `e` says the connection was closed before any answer came.
fn closed_early(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    fn tls() -> TlsOptions {
        TlsOptions::default()
    }

    /// Reads one request (head and `Content-Length` body); `None` when the peer closed.
    fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
        read_request_and_body(reader).map(|(head, _)| head)
    }

    /// [`read_request`] with the body.
    fn read_request_and_body(reader: &mut BufReader<TcpStream>) -> Option<(Vec<String>, Vec<u8>)> {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.trim_end().is_empty() {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let length = head
            .iter()
            .find_map(|h| {
                h.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((head, body))
    }

    const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

    fn get(client: &Client, timeout: Duration) -> Result<Response, Error> {
        client.send(&Request {
            method: "GET",
            path: "/",
            headers: &[],
            body: &[],
            timeout,
        })
    }

    fn post(client: &Client) -> Result<Response, Error> {
        client.send(&Request {
            method: "POST",
            path: "/intake/v2/events",
            headers: &[("Content-Type", "application/x-ndjson")],
            body: b"{\"metadata\":{}}\n",
            timeout: Duration::from_secs(10),
        })
    }

    /// The answer to a GET from a server that sends `raw` and closes.
    fn answered(raw: &[u8]) -> Result<Response, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let raw = raw.to_vec();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            read_request(&mut reader);
            let _ = reader.get_mut().write_all(&raw);
        });
        let client = Client::new(&url, &tls()).unwrap();
        let answer = get(&client, Duration::from_secs(10));
        server.join().unwrap();
        answer
    }

    #[test]
    fn a_proxy_the_client_cannot_use_is_skipped_not_fatal() {
        for proxy in ["https://proxy:443", "http://proxy:port", "ftp://proxy:21"] {
            let client = Client::with_env("http://apm.example:8200", &tls(), |name| {
                (name == "HTTP_PROXY").then(|| proxy.to_owned())
            })
            .unwrap_or_else(|e| panic!("{proxy}: {e}"));
            assert_eq!(client.proxy, None, "{proxy}");
        }
        for proxy in [
            "http://proxy:3128",
            "socks5://proxy:1080",
            "socks5h://u:p@proxy",
        ] {
            let client = Client::with_env("http://apm.example:8200", &tls(), |name| {
                (name == "HTTP_PROXY").then(|| proxy.to_owned())
            })
            .expect("a usable proxy");
            assert!(client.proxy.is_some(), "{proxy}");
        }
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
    fn requests_carry_host_length_and_clean_headers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            let head = read_request(&mut reader).unwrap();
            reader.get_mut().write_all(ACCEPTED).unwrap();
            head
        });
        let client = Client::new(&format!("http://127.0.0.1:{port}/base/"), &tls()).unwrap();
        let answer = client
            .send(&Request {
                method: "POST",
                path: "/intake/v2/events",
                headers: &[("Authorization", "Bearer x\r\nX-Injected: 1")],
                body: b"abc",
                timeout: Duration::from_secs(10),
            })
            .unwrap();
        assert_eq!(answer.status, 202);
        let head = seen.join().unwrap();
        assert_eq!(head[0], "POST /base/intake/v2/events HTTP/1.1");
        let has = |line: &str| head.iter().any(|h| h.eq_ignore_ascii_case(line));
        assert!(has(&format!("host: 127.0.0.1:{port}")), "{head:?}");
        assert!(has("content-length: 3"), "{head:?}");
        assert!(has("authorization: Bearer xX-Injected: 1"), "{head:?}");
        assert!(
            !head.iter().any(|h| h.starts_with("X-Injected")),
            "{head:?}"
        );
    }

    #[test]
    fn bodies_framed_by_length_chunks_or_close() {
        let r =
            answered(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nETag: \"x\"\r\n\r\nokIGNORED")
                .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"ok"[..]));
        assert_eq!(r.header("etag"), Some("\"x\""));
        assert_eq!(r.header("ETag"), Some("\"x\""));
        assert!(r.is_success());

        let r = answered(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"abcde");

        let r = answered(b"HTTP/1.0 503 Service Unavailable\r\nServer: x\r\n\r\nqueue is full")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"queue is full"[..]));
        assert!(!r.is_success());

        let r = answered(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));

        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20_000 {
            raw.extend_from_slice(b"1\r\nx\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(answered(&raw).unwrap().body.len(), 20_000);
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
            let answer = answered(raw);
            assert!(
                matches!(answer, Err(Error::Io(_) | Error::Http(_))),
                "{:?}: {answer:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let endless = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 128 * 1024]].concat();
        assert!(answered(&endless).is_err());
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
        assert_eq!(answered(&big).unwrap().body.len(), MAX_BODY);
    }

    /// Sends a GET with a 300 ms deadline to `url` and asserts it timed out in about that
    /// time (the slack is for a busy machine).
    fn times_out(url: &str) {
        let client = Client::new(url, &tls()).unwrap();
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
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("http://u:p@{}", proxy.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (conn, _) = proxy.accept().unwrap();
            let mut reader = BufReader::new(conn);
            let mut heads = Vec::new();
            // Two requests on the one kept-alive connection: each names the whole URL.
            while let Some(head) = read_request(&mut reader) {
                reader.get_mut().write_all(ACCEPTED).unwrap();
                heads.push(head);
            }
            heads
        });
        // The APM Server's name does not resolve: only the proxy can have answered.
        let client = Client::with_env("http://apm.invalid:8200/base", &tls(), |name| {
            (name == "http_proxy").then(|| proxy_url.clone())
        })
        .unwrap();
        for _ in 0..2 {
            let answer = get(&client, Duration::from_secs(5)).unwrap();
            assert_eq!(answer.status, 202);
        }
        drop(client);
        let heads = seen.join().unwrap();
        assert_eq!(heads.len(), 2, "{heads:?}");
        for head in heads {
            assert_eq!(head[0], "GET http://apm.invalid:8200/base/ HTTP/1.1");
            let has = |line: &str| head.iter().any(|h| h.eq_ignore_ascii_case(line));
            assert!(has("host: apm.invalid:8200"), "{head:?}");
            assert!(has("proxy-authorization: Basic dTpw"), "{head:?}");
        }
    }

    /// Accepts a connection on `proxy` as a SOCKS5 proxy would and grants the tunnel it asks
    /// for: what comes through it next, and the destination's name and port.
    fn socks5_tunnel(proxy: &TcpListener) -> (BufReader<TcpStream>, String, u16) {
        let (mut conn, _) = proxy.accept().unwrap();
        let mut greeting = [0u8; 2];
        conn.read_exact(&mut greeting).unwrap();
        let mut methods = vec![0u8; usize::from(greeting[1])];
        conn.read_exact(&mut methods).unwrap();
        assert_eq!(greeting[0], 5);
        assert!(methods.contains(&0), "{methods:?}");
        conn.write_all(&[5, 0]).unwrap();
        // CONNECT to a domain name: version, command, reserved, address type 3.
        let mut request = [0u8; 5];
        conn.read_exact(&mut request).unwrap();
        assert_eq!(request[..4], [5, 1, 0, 3]);
        let mut name = vec![0u8; usize::from(request[4])];
        conn.read_exact(&mut name).unwrap();
        let mut port = [0u8; 2];
        conn.read_exact(&mut port).unwrap();
        conn.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).unwrap();
        let name = String::from_utf8(name).unwrap();
        (BufReader::new(conn), name, u16::from_be_bytes(port))
    }

    /// Bodies longer than a connection's writes, each byte telling its place (`seed` tells
    /// the bodies apart).
    fn patterned_body(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i + seed) % 251) as u8).collect()
    }

    /// Posts `bodies` with `client` to a server that `serve` reads them from (one kept-alive
    /// connection); what arrived, in order.
    fn posted_bodies(
        client: &Client,
        bodies: &[Vec<u8>],
        serve: impl FnOnce() -> BufReader<TcpStream> + Send + 'static,
    ) -> Vec<Vec<u8>> {
        let count = bodies.len();
        let server = std::thread::spawn(move || {
            let mut reader = serve();
            (0..count)
                .map(|_| {
                    let (_, body) = read_request_and_body(&mut reader).unwrap();
                    reader.get_mut().write_all(ACCEPTED).unwrap();
                    body
                })
                .collect::<Vec<_>>()
        });
        for body in bodies {
            let answer = client.send(&Request {
                method: "POST",
                path: "/intake/v2/events",
                headers: &[],
                body,
                timeout: Duration::from_secs(10),
            });
            assert_eq!(answer.unwrap().status, 202);
        }
        server.join().unwrap()
    }

    #[test]
    fn a_plain_socket_writes_bodies_from_where_they_lie() {
        for writes in [Writes::Small, Writes::Bodies] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let client = Client::with_env_writing(&url, &tls(), |_| None, writes.bytes()).unwrap();
            let bodies = [
                patterned_body(3 * BODY_WRITES + 12_345, 0),
                patterned_body(17, 1),
                patterned_body(writes.bytes(), 2),
            ];
            socket::parts_written_directly_on_this_thread();
            let arrived = posted_bodies(&client, &bodies, move || {
                BufReader::new(listener.accept().unwrap().0)
            });
            assert!(arrived == bodies, "{writes:?}: the bodies arrived changed");
            // Each part went from the body to the socket, as long as the connection's
            // writes: none was copied into its buffer.
            let parts: usize = bodies
                .iter()
                .map(|b| b.len().div_ceil(writes.bytes()))
                .sum();
            assert_eq!(
                socket::parts_written_directly_on_this_thread(),
                parts,
                "{writes:?}"
            );
        }
    }

    #[test]
    fn a_body_through_a_socks5_tunnel_is_copied_into_its_buffers() {
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("socks5h://{}", proxy.local_addr().unwrap());
        let client = Client::with_env_writing(
            "http://apm.invalid:8200",
            &tls(),
            |name| (name == "ALL_PROXY").then(|| proxy_url.clone()),
            BODY_WRITES,
        )
        .unwrap();
        // First a body through a plain socket on this thread, whose buffers are then the
        // last a socket offered here.
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let plain_url = format!("http://{}", plain.local_addr().unwrap());
        let plain_client =
            Client::with_env_writing(&plain_url, &tls(), |_| None, BODY_WRITES).unwrap();
        let first = [patterned_body(1_000, 5)];
        let arrived = posted_bodies(&plain_client, &first, move || {
            BufReader::new(plain.accept().unwrap().0)
        });
        assert!(arrived == first, "the plain body arrived changed");
        assert_eq!(socket::parts_written_directly_on_this_thread(), 1);
        // Through the tunnel the outermost layer is ureq's socket, which offers nothing: the
        // bodies are copied into its buffers, whole.
        let bodies = [patterned_body(BODY_WRITES + 1_000, 3), patterned_body(5, 4)];
        let arrived = posted_bodies(&client, &bodies, move || socks5_tunnel(&proxy).0);
        assert!(arrived == bodies, "the bodies arrived changed");
        assert_eq!(socket::parts_written_directly_on_this_thread(), 0);
    }

    #[test]
    fn a_request_closed_on_arrival_through_a_new_socks5_tunnel_is_not_sent_again() {
        // Sending again is for a kept-alive connection the server closed as the request left;
        // a tunnel opened for this request was not one.
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("socks5h://{}", proxy.local_addr().unwrap());
        let client = Client::with_env("http://apm.invalid:8200", &tls(), |name| {
            (name == "ALL_PROXY").then(|| proxy_url.clone())
        })
        .unwrap();
        let proxy = std::thread::spawn(move || {
            let (mut reader, _, _) = socks5_tunnel(&proxy);
            read_request(&mut reader).unwrap();
            drop(reader);
            proxy
        });
        assert!(post(&client).is_err());
        let proxy = proxy.join().unwrap();
        // A second attempt would have connected before the first `post` returned.
        proxy.set_nonblocking(true).unwrap();
        assert!(proxy.accept().is_err(), "the request was sent again");
    }

    #[test]
    fn requests_go_through_a_socks5_proxy() {
        // A SOCKS5 proxy that answers the requests of the tunnel itself, and keeps the
        // destination it was asked for.
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("socks5h://{}", proxy.local_addr().unwrap());
        let asked = std::thread::spawn(move || {
            let (mut reader, name, port) = socks5_tunnel(&proxy);
            let head = read_request(&mut reader).unwrap();
            reader.get_mut().write_all(ACCEPTED).unwrap();
            (name, port, head)
        });
        // The APM Server's name does not resolve here: only the proxy can reach it.
        let client = Client::with_env("http://apm.invalid:8200/base", &tls(), |name| {
            (name == "ALL_PROXY").then(|| proxy_url.clone())
        })
        .unwrap();
        assert_eq!(get(&client, Duration::from_secs(5)).unwrap().status, 202);
        let (name, port, head) = asked.join().unwrap();
        assert_eq!((name.as_str(), port), ("apm.invalid", 8200));
        // Through a tunnel the request looks as if sent directly.
        assert_eq!(head[0], "GET /base/ HTTP/1.1");
    }

    #[cfg(feature = "https")]
    #[test]
    fn tunnels_are_asked_for_with_credentials_and_refusals_reported() {
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("http://u:p@{}", proxy.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (conn, _) = proxy.accept().unwrap();
            let mut reader = BufReader::new(conn);
            let head = read_request(&mut reader).unwrap();
            let refusal =
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n";
            reader.get_mut().write_all(refusal).unwrap();
            head
        });
        let client = Client::with_env("https://apm.invalid", &tls(), |name| {
            (name == "HTTPS_PROXY").then(|| proxy_url.clone())
        })
        .unwrap();
        let err = get(&client, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("407"), "{err}");
        let head = seen.join().unwrap();
        assert_eq!(head[0], "CONNECT apm.invalid:443 HTTP/1.1");
        let has = |line: &str| head.iter().any(|h| h.eq_ignore_ascii_case(line));
        assert!(has("proxy-authorization: Basic dTpw"), "{head:?}");
    }

    #[test]
    fn a_deadline_bounds_waiting_for_a_silent_server() {
        // The kernel accepts the connection; nobody ever reads or answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        times_out(&format!("http://{}", listener.local_addr().unwrap()));
    }

    #[test]
    fn a_deadline_bounds_the_whole_answer_not_each_read() {
        // Answers one byte every 20 ms, forever: every read succeeds in time, the answer never
        // ends.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        times_out(&format!("https://{}", listener.local_addr().unwrap()));
    }

    /// A server on 127.0.0.1 that answers every request with 202, closing each connection
    /// after `per_connection` answers (`usize::MAX`: never); sends the number of connections
    /// accepted when the client is gone, and a message after each close.
    fn counting_server(
        per_connection: usize,
    ) -> (String, mpsc::Receiver<()>, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (closed_tx, closed) = mpsc::channel();
        let server = std::thread::spawn(move || {
            let mut accepted = 0;
            listener.set_nonblocking(false).unwrap();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                accepted += 1;
                let mut reader = BufReader::new(conn);
                let mut answered = 0;
                while answered < per_connection {
                    if read_request(&mut reader).is_none() {
                        return accepted;
                    }
                    reader.get_mut().write_all(ACCEPTED).unwrap();
                    answered += 1;
                }
                drop(reader);
                let _ = closed_tx.send(());
            }
            accepted
        });
        (url, closed, server)
    }

    #[test]
    fn consecutive_requests_reuse_one_connection() {
        let (url, _closed, server) = counting_server(usize::MAX);
        let client = Client::new(&url, &tls()).unwrap();
        for _ in 0..5 {
            assert_eq!(post(&client).unwrap().status, 202);
        }
        // The client's connection closes with it: the server's loop ends.
        drop(client);
        assert_eq!(server.join().unwrap(), 1);
    }

    #[test]
    fn a_connection_the_server_closed_while_idle_is_replaced() {
        let (url, closed, server) = counting_server(1);
        let client = Client::new(&url, &tls()).unwrap();
        for _ in 0..3 {
            assert_eq!(post(&client).unwrap().status, 202);
            closed.recv().unwrap();
        }
        drop(client);
        // Unblocks the server's last accept.
        let _ = TcpStream::connect(url.trim_start_matches("http://"));
        assert_eq!(server.join().unwrap(), 4);
    }

    #[test]
    fn a_request_the_server_closed_on_arrival_is_sent_again_once() {
        // The first connection answers one request, then closes on reading the next (as a
        // server whose idle timeout ran out as it arrived); the second answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            read_request(&mut reader).unwrap();
            reader.get_mut().write_all(ACCEPTED).unwrap();
            read_request(&mut reader).unwrap();
            drop(reader);
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            read_request(&mut reader).unwrap();
            reader.get_mut().write_all(ACCEPTED).unwrap();
        });
        let client = Client::new(&url, &tls()).unwrap();
        assert_eq!(post(&client).unwrap().status, 202);
        assert_eq!(post(&client).unwrap().status, 202);
        server.join().unwrap();
    }

    #[test]
    fn waits_run_the_idle_work() {
        // The server answers after 100 ms: the client's waits call `idle` meanwhile.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            read_request(&mut reader).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            reader.get_mut().write_all(ACCEPTED).unwrap();
        });
        let client = Client::new(&url, &tls()).unwrap();
        let mut calls = 0;
        let answer = client.send_while(
            &Request {
                method: "GET",
                path: "/",
                headers: &[],
                body: &[],
                timeout: Duration::from_secs(10),
            },
            Some(&mut || calls += 1),
        );
        assert_eq!(answer.unwrap().status, 202);
        assert!(calls > 1, "{calls}");
        server.join().unwrap();
    }

    #[test]
    fn resolution_has_a_deadline_and_its_result_is_kept() {
        let addresses = resolve::Addresses::new(None);
        // A name the system resolver answers; the first lookup fills the cache.
        let first = addresses.lookup("localhost", 8200, Some(Duration::from_secs(10)));
        let first = first.expect("localhost resolves");
        assert!(first
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8200));
        // Cached: even a zero deadline finds the addresses.
        let again = addresses
            .lookup("localhost", 8200, Some(Duration::ZERO))
            .unwrap();
        assert_eq!(again, first);
        // A new name with no time left times out instead of waiting for the resolver.
        let late = addresses.lookup("apm.invalid", 8200, Some(Duration::ZERO));
        assert!(matches!(late, Err(ureq::Error::Timeout(_))), "{late:?}");
        // An address needs no lookup.
        let ip = addresses
            .lookup("10.1.2.3", 1, Some(Duration::ZERO))
            .unwrap();
        assert_eq!(ip, vec!["10.1.2.3:1".parse().unwrap()]);
    }
}
