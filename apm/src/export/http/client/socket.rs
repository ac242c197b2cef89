//! The bottom of the connector chain ureq runs: TCP sockets whose waits give way to the
//! caller's idle work, and the request line an HTTP forward proxy wants.
//!
//! ureq's blocking calls never return to the caller while they wait. The transport thread
//! must keep draining the application's queue meanwhile (`Transport::drain_while_sending`),
//! so [`while_waiting`] lends its idle work to this thread for the duration of one call, and
//! every socket wait here is cut in slices of [`IDLE_EVERY`] with that work run between them.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// How often a socket wait gives way to the caller's idle work, when it has some.
/// A 1 000-event queue (the Elastic default; ours is larger) fills in 2 ms at 500 000
/// events/s.
pub(super) const IDLE_EVERY: Duration = Duration::from_millis(1);

/// Most of the time left one address may take to connect when others remain to be tried.
const PER_ADDRESS: Duration = Duration::from_secs(2);

thread_local! {
    /// The idle work of the call running on this thread, if it has some.
    static IDLE: Cell<Option<NonNull<dyn FnMut() + 'static>>> = const { Cell::new(None) };
}

/// Runs `call` with `idle` run between the slices of its socket waits on this thread.
pub(super) fn while_waiting<'i, R>(
    idle: Option<&mut (dyn FnMut() + 'i)>,
    call: impl FnOnce() -> R,
) -> R {
    /// Puts back what was lent before, also when `call` unwinds.
    struct Restore(Option<NonNull<dyn FnMut() + 'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            IDLE.with(|lent| lent.set(self.0));
        }
    }
    let lent = idle.map(|idle| {
        let idle: NonNull<dyn FnMut() + 'i> = NonNull::from(idle);
        // SAFETY: only the lifetime is erased. The pointer lives in this thread's slot for the
        // duration of `call`, while `idle` stays borrowed by this function, and `Restore`
        // takes it out before this function returns or unwinds; it is used on this thread only.
        unsafe {
            std::mem::transmute::<NonNull<dyn FnMut() + 'i>, NonNull<dyn FnMut() + 'static>>(
                idle,
            )
        }
    });
    let _restore = Restore(IDLE.with(|slot| slot.replace(lent)));
    call()
}

fn has_idle_work() -> bool {
    IDLE.with(|slot| slot.get().is_some())
}

fn run_idle_work() {
    // Taken out while it runs: a wait inside it cannot call it again.
    let Some(mut idle) = IDLE.with(Cell::take) else {
        return;
    };
    // SAFETY: `while_waiting` keeps the closure borrowed and alive while its pointer is lent,
    // and nothing else refers to it while it runs (it is out of the slot).
    unsafe { idle.as_mut()() };
    IDLE.with(|slot| slot.set(Some(idle)));
}

/// Opens TCP connections to the addresses the resolver gave, for ureq.
#[derive(Debug)]
pub(super) struct SocketConnector {
    /// `http://host:port` of the APM Server when requests go to an HTTP forward proxy (the
    /// addresses are then the proxy's): request lines name the whole URL.
    pub(super) forward_origin: Option<Arc<str>>,
    /// Connections opened: a request that opened none ran on a kept-alive one.
    pub(super) opened: Arc<AtomicU64>,
    /// What a plain connection writes at once: the size of its output buffer, which ureq
    /// fills (a whole kept connection's worth of memory) and writes whenever it is full.
    pub(super) plain_writes: usize,
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = Either<In, Socket>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // A SOCKS proxy or a CONNECT tunnel opened the connection already.
        if let Some(chained) = chained {
            return Ok(Some(Either::A(chained)));
        }
        let deadline = deadline(details.timeout);
        let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let mut last = None;
        for (i, addr) in addrs.iter().enumerate() {
            // Each but the last may take only its share of the time left, so that an address
            // that swallows packets (IPv6 routed nowhere, say) cannot use up the deadline.
            let untried = (addrs.len() - i) as u32;
            let left = match deadline {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(ureq::Error::Timeout(details.timeout.reason)),
                },
                None => None,
            };
            let attempt = match left {
                Some(left) if untried > 1 => {
                    TcpStream::connect_timeout(addr, (left / untried).min(PER_ADDRESS))
                }
                Some(left) => TcpStream::connect_timeout(addr, left),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let socket = Socket {
                        tcp: Arc::new(tcp),
                        buffers: LazyBuffers::new(
                            details.config.input_buffer_size(),
                            if details.needs_tls() {
                                details.config.output_buffer_size()
                            } else {
                                self.plain_writes
                            },
                        ),
                        forward_origin: self.forward_origin.clone(),
                        request_starts: true,
                    };
                    let handle: Weak<dyn ShutdownHandle> =
                        Arc::downgrade(&socket.tcp) as Weak<dyn ShutdownHandle>;
                    (details.register_shutdown)(handle)?;
                    self.opened.fetch_add(1, Relaxed);
                    return Ok(Some(Either::B(socket)));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => {
                ureq::Error::Timeout(details.timeout.reason)
            }
            Some(e) => ureq::Error::Io(e),
            None => ureq::Error::HostNotFound,
        })
    }
}

/// When a wait must be over; `None` for never.
fn deadline(timeout: NextTimeout) -> Option<Instant> {
    (!timeout.after.is_not_happening()).then(|| Instant::now() + *timeout.after)
}

/// A TCP connection for ureq.
pub(super) struct Socket {
    tcp: Arc<TcpStream>,
    buffers: LazyBuffers,
    forward_origin: Option<Arc<str>>,
    /// The next bytes written start a request (nothing written since the last answer).
    request_starts: bool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("peer", &self.tcp.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Runs `op` on `tcp` until it succeeds, fails or the deadline passes; with idle work lent to
/// this thread, each wait is cut in slices of [`IDLE_EVERY`] with the work run between them.
fn wait<T>(
    tcp: &TcpStream,
    timeout: NextTimeout,
    set_timeout: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
    mut op: impl FnMut(&TcpStream) -> io::Result<T>,
) -> Result<T, ureq::Error> {
    let deadline = deadline(timeout);
    let idle = has_idle_work();
    loop {
        let left = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(ureq::Error::Timeout(timeout.reason)),
            },
            None => None,
        };
        let slice = match (left, idle) {
            (Some(left), true) => Some(left.min(IDLE_EVERY)),
            (None, true) => Some(IDLE_EVERY),
            (left, false) => left,
        };
        set_timeout(tcp, slice)?;
        match op(tcp) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if idle {
                    run_idle_work();
                }
            }
            other => return Ok(other?),
        }
    }
}

fn write_all(tcp: &TcpStream, mut data: &[u8], timeout: NextTimeout) -> Result<(), ureq::Error> {
    while !data.is_empty() {
        let n = wait(tcp, timeout, TcpStream::set_write_timeout, |mut tcp| {
            tcp.write(data)
        })?;
        if n == 0 {
            return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into()));
        }
        data = &data[n..];
    }
    Ok(())
}

impl Transport for Socket {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let output = &self.buffers.output()[..amount];
        let starts = std::mem::replace(&mut self.request_starts, false);
        // ureq writes a request's head at once, its request line first: an HTTP forward
        // proxy wants the whole URL there (`POST http://apm:8200/intake/v2/events HTTP/1.1`).
        if let (true, Some(origin)) = (starts, &self.forward_origin) {
            if let Some(space) = output.iter().position(|&b| b == b' ') {
                let (method, target) = output.split_at(space + 1);
                write_all(&self.tcp, method, timeout)?;
                write_all(&self.tcp, origin.as_bytes(), timeout)?;
                return write_all(&self.tcp, target, timeout);
            }
        }
        write_all(&self.tcp, output, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let Socket { tcp, buffers, .. } = self;
        let input = buffers.input_append_buf();
        let n = wait(tcp, timeout, TcpStream::set_read_timeout, |mut tcp| {
            tcp.read(input)
        })?;
        buffers.input_appended(n);
        // ureq reads only once a request is sent: what is written next is a new request.
        self.request_starts = true;
        Ok(n > 0)
    }

    /// Whether a kept-alive connection can carry another request: the server has neither
    /// closed it (idle too long) nor sent anything unasked.
    fn is_open(&mut self) -> bool {
        if self.tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            (&*self.tcp).read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        open && self.tcp.set_nonblocking(false).is_ok()
    }
}
