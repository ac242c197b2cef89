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
    /// Where this thread's [`DirectBody`] stands with the socket ureq writes it to.
    static DIRECT: Cell<Direct> = const { Cell::new(Direct::Outside) };
}

/// A request body that a plain [`Socket`] writes to the connection from where it lies.
///
/// ureq copies a body into the connection's output buffer, which the socket then writes: for
/// intake bodies of hundreds of kilobytes to a server on this machine, that copy was about 7%
/// of the transport thread (`BENCHMARKS.md` §12n). As this body's reader, ureq's read of it
/// into a [`Socket`]'s buffer only claims the next part, as long as the buffer; the socket,
/// asked next to write that many bytes, writes the claimed part instead of its buffer.
///
/// ureq asks the connection's outermost layer for its buffers just before it reads the body
/// into them: only when a [`Socket`] answered last is the read a claim. Under TLS (whose
/// layer says so when asked) or SOCKS (ureq's own socket) the read copies, as ureq's own
/// would; a `CONNECT` tunnel hands both the buffers and the write to the socket beneath it.
/// The body must go with `Content-Length`, so that ureq writes each read as it is. Outside
/// [`sending_directly`], a read always copies.
pub(super) struct DirectBody<'b> {
    left: &'b [u8],
}

#[derive(Clone, Copy)]
enum Direct {
    /// No [`sending_directly`] runs on this thread: nothing is claimed.
    Outside,
    Off,
    /// A socket's buffers were the last asked for: a read now is a claim.
    Offered,
    /// The part read last, to be written by the socket instead of its buffer.
    Claimed(NonNull<[u8]>),
}

/// Moves this thread's state to `next`, unless no [`sending_directly`] runs.
fn direct_now(next: Direct) -> Direct {
    DIRECT.with(|d| match d.get() {
        Direct::Outside => Direct::Outside,
        now => {
            d.set(next);
            now
        }
    })
}

impl Read for DirectBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left.len());
        let (part, rest) = self.left.split_at(n);
        self.left = rest;
        if n > 0 && matches!(DIRECT.with(Cell::get), Direct::Offered) {
            direct_now(Direct::Claimed(NonNull::from(part)));
        } else {
            buf[..n].copy_from_slice(part);
            direct_now(Direct::Off);
        }
        Ok(n)
    }
}

/// Runs `call` with `body` as a [`DirectBody`]: what it claims is written by the socket while
/// `call` runs on this thread, and forgotten when it returns or unwinds. The reader is lent,
/// not given: it cannot outlive the call (and read after it, it would only copy).
pub(super) fn sending_directly<'b, R>(
    body: &'b [u8],
    call: impl for<'r> FnOnce(&'r mut DirectBody<'b>) -> R,
) -> R {
    /// Puts back the state from before, also when `call` unwinds: nothing claimed from `body`
    /// remains after.
    struct Restore(Direct);
    impl Drop for Restore {
        fn drop(&mut self) {
            DIRECT.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DIRECT.with(|d| d.replace(Direct::Off)));
    call(&mut DirectBody { left: body })
}

/// Not a socket's buffers: what a layer above the socket (TLS) says when ureq asks for its
/// buffers, so that a read of a [`DirectBody`] into them copies.
#[cfg(feature = "https")]
pub(super) fn buffers_not_a_socket() {
    direct_now(Direct::Off);
}

/// Writes the part of a [`DirectBody`] claimed for the next `amount` bytes with `write`;
/// `None` when no part was claimed (the buffer is to be written), an error when a part of
/// another length was (ureq did not write what it read: the buffer does not hold the body).
fn write_claimed<R>(amount: usize, write: impl FnOnce(&[u8]) -> R) -> io::Result<Option<R>> {
    let Direct::Claimed(part) = direct_now(Direct::Off) else {
        return Ok(None);
    };
    if part.len() != amount {
        return Err(io::Error::other(format!(
            "{amount} bytes to write where {} of the body were read",
            part.len()
        )));
    }
    #[cfg(test)]
    PARTS_WRITTEN.with(|n| n.set(n.get() + 1));
    // SAFETY: a part is claimed only while `sending_directly` runs on this thread and keeps
    // its body borrowed, and `Restore` takes the claim out before that borrow ends (also on
    // unwinding): a part still in the slot is alive. The reference does not outlive `write`,
    // which runs on this thread inside that call (ureq writes on the thread that runs the
    // request).
    Ok(Some(write(unsafe { part.as_ref() })))
}

#[cfg(test)]
thread_local! {
    static PARTS_WRITTEN: Cell<usize> = const { Cell::new(0) };
}

/// Parts of [`DirectBody`]s written by sockets on this thread since the last call (tests).
#[cfg(test)]
pub(super) fn parts_written_directly_on_this_thread() -> usize {
    PARTS_WRITTEN.with(|n| n.replace(0))
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
            std::mem::transmute::<NonNull<dyn FnMut() + 'i>, NonNull<dyn FnMut() + 'static>>(idle)
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
    /// What a plain connection writes at once: the size of its output buffer. A body's parts
    /// are as long (ureq reads a [`DirectBody`] into the buffer's length) and go to the socket
    /// from the body itself; the buffer holds the request's head.
    pub(super) plain_writes: usize,
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = Either<In, Socket>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // A SOCKS proxy or a CONNECT tunnel opened the connection already (connectors run
        // only for a new connection): counted as opened all the same.
        if let Some(chained) = chained {
            self.opened.fetch_add(1, Relaxed);
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
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
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
        if matches!(DIRECT.with(Cell::get), Direct::Off) {
            direct_now(Direct::Offered);
        }
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let starts = std::mem::replace(&mut self.request_starts, false);
        if let Some(written) = write_claimed(amount, |part| write_all(&self.tcp, part, timeout))? {
            return written;
        }
        let output = &self.buffers.output()[..amount];
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
        direct_now(Direct::Off);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() {
        if matches!(DIRECT.with(Cell::get), Direct::Off) {
            direct_now(Direct::Offered);
        }
    }

    #[test]
    fn a_body_is_claimed_only_inside_sending_directly_after_a_socket_offered() {
        let body = b"0123456789";
        let mut buf = [b'-'; 4];
        // Outside: a socket's offer changes nothing, and a read copies.
        offered();
        let mut escaped = DirectBody { left: body };
        assert_eq!(escaped.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"0123");
        assert!(write_claimed(4, |_| ()).unwrap().is_none());
        sending_directly(body, |direct| {
            // Not offered yet: copied.
            buf = [b'-'; 4];
            assert_eq!(direct.read(&mut buf).unwrap(), 4);
            assert_eq!(&buf, b"0123");
            // Offered: claimed, the buffer left as it was, the part written by the socket.
            offered();
            buf = [b'-'; 4];
            assert_eq!(direct.read(&mut buf).unwrap(), 4);
            assert_eq!(&buf, b"----");
            let mut written = Vec::new();
            let done = write_claimed(4, |part| written.extend_from_slice(part)).unwrap();
            assert!(done.is_some());
            assert_eq!(written, b"4567");
            // A claim of another length than the write is an error, not the buffer sent.
            offered();
            assert_eq!(direct.read(&mut buf).unwrap(), 2);
            assert!(write_claimed(4, |_| ()).is_err());
            // A claim left unwritten when the call ends is forgotten with it.
            offered();
            let mut rest = DirectBody { left: b"ab" };
            assert_eq!(rest.read(&mut buf).unwrap(), 2);
        });
        assert!(matches!(DIRECT.with(Cell::get), Direct::Outside));
        assert!(write_claimed(2, |_| ()).unwrap().is_none());
        parts_written_directly_on_this_thread();
    }
}
