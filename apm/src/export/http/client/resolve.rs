//! Name resolution for ureq with a deadline and a cache.
//!
//! The system resolver (`getaddrinfo`) takes no deadline. A name is resolved on a short-lived
//! thread (`apm-resolve`) that the request waits for until its deadline, and the addresses are
//! kept for [`RESOLVE_EVERY`]. So such a thread runs when a name's addresses are a minute old
//! or its last lookup failed, never for an address, and never two at a time for a name: a
//! late one is waited for again by the next request instead of being started anew. Without a
//! deadline (`server_timeout` 0) the name is resolved on the calling thread.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long resolved addresses are used before the name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Most addresses kept (as ureq does).
const MAX_ADDRS: usize = 16;

type Lookup = std::io::Result<Vec<SocketAddr>>;

/// The addresses of the names one client connects to.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    names: Mutex<Vec<Name>>,
    /// Every name is looked up as this one instead (an HTTP forward proxy: all connections
    /// go there).
    pub(super) dialled: Option<(String, u16)>,
}

#[derive(Debug)]
struct Name {
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
    /// When `addrs` were resolved; `None`: not yet.
    at: Option<Instant>,
    /// A lookup still running, started by an earlier request.
    pending: Option<Receiver<Lookup>>,
}

impl Addresses {
    pub(super) fn new(dialled: Option<(String, u16)>) -> Addresses {
        Addresses {
            names: Mutex::new(Vec::new()),
            dialled,
        }
    }

    /// The addresses of `host`, within `timeout` (`None`: as long as the resolver takes).
    /// Addresses resolved before are used when a new lookup fails or is late.
    pub(super) fn lookup(
        &self,
        host: &str,
        port: u16,
        timeout: Option<Duration>,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let (host, port) = match &self.dialled {
            Some((host, port)) => (host.as_str(), *port),
            None => (host, port),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let mut names = self.names.lock();
        let i = match names.iter().position(|n| n.host == host && n.port == port) {
            Some(i) => i,
            None => {
                names.push(Name {
                    host: host.to_owned(),
                    port,
                    addrs: Vec::new(),
                    at: None,
                    pending: None,
                });
                names.len() - 1
            }
        };
        let name = &mut names[i];
        if name.at.is_some_and(|at| at.elapsed() < RESOLVE_EVERY) {
            return Ok(name.addrs.clone());
        }
        let lookup = match timeout {
            None => resolve(host, port),
            Some(timeout) => {
                let pending = match name.pending.take() {
                    Some(pending) => pending,
                    None => spawn_lookup(host, port)?,
                };
                match pending.recv_timeout(timeout) {
                    Ok(lookup) => lookup,
                    Err(RecvTimeoutError::Timeout) => {
                        name.pending = Some(pending);
                        return stale_or(&name.addrs, || {
                            ureq::Error::Timeout(ureq::Timeout::Resolve)
                        });
                    }
                    Err(RecvTimeoutError::Disconnected) => Err(std::io::Error::other(
                        "the name lookup ended without an answer",
                    )),
                }
            }
        };
        match lookup {
            Ok(addrs) if !addrs.is_empty() => {
                name.addrs = addrs;
                name.at = Some(Instant::now());
                Ok(name.addrs.clone())
            }
            Ok(_) => stale_or(&name.addrs, || ureq::Error::HostNotFound),
            Err(e) => stale_or(&name.addrs, || ureq::Error::Io(e)),
        }
    }
}

fn stale_or(
    addrs: &[SocketAddr],
    error: impl FnOnce() -> ureq::Error,
) -> Result<Vec<SocketAddr>, ureq::Error> {
    if addrs.is_empty() {
        Err(error())
    } else {
        Ok(addrs.to_vec())
    }
}

fn resolve(host: &str, port: u16) -> Lookup {
    Ok((host, port).to_socket_addrs()?.take(MAX_ADDRS).collect())
}

/// Starts a lookup on its own thread, left to finish alone when the request is over first.
fn spawn_lookup(host: &str, port: u16) -> Result<Receiver<Lookup>, ureq::Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    let host = host.to_owned();
    std::thread::Builder::new()
        .name("apm-resolve".into())
        .spawn(move || {
            crate::util::own_thread::mark_current();
            let _ = tx.send(resolve(&host, port));
        })
        .map_err(ureq::Error::Io)?;
    Ok(rx)
}

/// [`Addresses`] shared between the client and the ureq agent it gives them to.
#[derive(Debug)]
pub(super) struct Shared(pub(super) Arc<Addresses>);

impl Resolver for Shared {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .ok_or_else(|| ureq::Error::BadUri(format!("{uri}: no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            Some("http") => 80,
            _ => 1080,
        });
        let timeout = (!timeout.after.is_not_happening()).then(|| *timeout.after);
        let addrs = self.0.lookup(host, port, timeout)?;
        let mut resolved = self.empty();
        for addr in addrs.into_iter().take(MAX_ADDRS) {
            resolved.push(addr);
        }
        Ok(resolved)
    }
}
