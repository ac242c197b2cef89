//! Shared pieces of the benchmarks (see `benches/*.rs` and `BENCHMARKS.md`): a minimal APM
//! Server sink, the process's CPU time and resident memory, and the round-robin measurement
//! loop that puts every variant side by side in one run.

pub mod collector;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether the benchmark's `apm` child turns span stack traces off:
/// `ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION` set to a negative value (`-1`, `-1ms`), the one
/// `ELASTIC_APM_*` variable the children read (the others, a developer's server URL among
/// them, must not redirect what the collector counts). Under valgrind, spans outlast the 5 ms
/// after which a stack trace is taken, and their symbolisation swamps a profile.
pub fn stack_traces_off() -> bool {
    std::env::var("ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION")
        .is_ok_and(|v| v.trim_start().starts_with('-'))
}

/// An APM Server that reads each request whole and throws it away: its own CPU cost is the
/// socket reads (counted in the process's CPU time, like a real server on the same host
/// would be, but without the parsing a test server does).
#[derive(Debug)]
pub struct Sink {
    addr: String,
    stats: Arc<SinkStats>,
}

#[derive(Debug, Default)]
struct SinkStats {
    requests: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
}

impl Sink {
    /// Listens on `127.0.0.2` (loopback, but not by name: the agent compresses, as it does
    /// for a remote server). `delay` holds every answer back (a slow server).
    pub fn start(delay: Duration) -> Sink {
        let listener = TcpListener::bind("127.0.0.2:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the sink");
        Sink::serve(listener, delay)
    }

    /// Listens on `127.0.0.1`, loopback by name: the agent sends uncompressed, as the spec
    /// says for an APM Server on the same host.
    pub fn start_local() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        Sink::serve(listener, Duration::ZERO)
    }

    fn serve(listener: TcpListener, delay: Duration) -> Sink {
        let addr = listener.local_addr().expect("sink address").to_string();
        let stats = Arc::new(SinkStats::default());
        let shared = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("bench-sink".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = Arc::clone(&shared);
                    // One thread per connection: a slow answer must not hold the next one up.
                    let _ = std::thread::Builder::new()
                        .name("bench-sink-conn".into())
                        .spawn(move || serve(conn, &shared, delay));
                }
            })
            .expect("spawn the sink");
        Sink { addr, stats }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far and body bytes read.
    pub fn received(&self) -> (u64, u64) {
        (
            self.stats.requests.load(Relaxed),
            self.stats.bytes.load(Relaxed),
        )
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stats.stop.store(true, Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(conn: TcpStream, stats: &SinkStats, delay: Duration) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let mut writer = write_half;
    let mut line = String::new();
    loop {
        let Some(RequestHead { path, length, .. }) = read_request_head(&mut reader, &mut line)
        else {
            return;
        };
        let copied = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
        stats.bytes.fetch_add(copied.unwrap_or(0), Relaxed);
        stats.requests.fetch_add(1, Relaxed);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (status, body) = if path == "/" {
            ("200 OK", r#"{"version":"8.15.0"}"#)
        } else if path.starts_with("/config/") {
            ("200 OK", "{}")
        } else {
            ("202 Accepted", "")
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// What the benchmarks' servers read of a request's head.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub path: String,
    pub length: u64,
    pub chunked: bool,
    /// `Content-Encoding`, lowercase (empty when absent).
    pub encoding: String,
}

/// Reads a request line and its headers; `None` when the connection ends first. `line` is a
/// buffer reused between requests.
pub fn read_request_head(reader: &mut impl BufRead, line: &mut String) -> Option<RequestHead> {
    line.clear();
    if reader.read_line(line).unwrap_or(0) == 0 {
        return None;
    }
    let mut head = RequestHead {
        path: line.split(' ').nth(1).unwrap_or("/").to_owned(),
        ..RequestHead::default()
    };
    loop {
        line.clear();
        if reader.read_line(line).unwrap_or(0) == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Some(head);
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            head.encoding = value.to_ascii_lowercase();
        }
    }
}

/// Calls `span` `calls` times, inside `apm` transactions of `per_transaction` calls each (a
/// new one each time; its cost is part of the measurement).
pub fn in_transactions(calls: u64, per_transaction: u64, span: impl Fn(u64) -> u64) {
    let mut left = calls;
    while left > 0 {
        let n = left.min(per_transaction);
        let _t = apm::start_transaction("bench", "custom");
        for i in 0..n {
            std::hint::black_box(span(i));
        }
        left -= n;
    }
}

/// CPU time the whole process (every thread) has used.
pub fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of the calling thread: what the application thread itself spends, whatever the
/// background threads (the agent's transport) take of a loaded machine's cores meanwhile.
pub fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Resident memory of the process, in bytes (Linux: `/proc/self/statm`).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Times of one measured round, per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerCall {
    /// Wall time of the calls on the calling thread: what the application's latency sees.
    pub call_ns: f64,
    /// Wall time of the calls and of draining the background work they caused.
    pub wall_ns: f64,
    /// CPU time of the whole process (every thread) over the same span as `wall_ns`.
    pub cpu_ns: f64,
}

/// Times `calls` calls of `run` followed by `drain` (which waits until the background work
/// those calls caused is done, so that it is counted).
pub fn measure_round(calls: u64, run: &mut dyn FnMut(u64), drain: &mut dyn FnMut()) -> PerCall {
    let cpu0 = process_cpu_time();
    let wall0 = Instant::now();
    run(calls);
    let call = wall0.elapsed();
    drain();
    let wall = wall0.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu0);
    PerCall {
        call_ns: call.as_nanos() as f64 / calls as f64,
        wall_ns: wall.as_nanos() as f64 / calls as f64,
        cpu_ns: cpu.as_nanos() as f64 / calls as f64,
    }
}

/// The median of each field.
pub fn median(rounds: &[PerCall]) -> PerCall {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    PerCall {
        call_ns: mid(rounds.iter().map(|r| r.call_ns).collect()),
        wall_ns: mid(rounds.iter().map(|r| r.wall_ns).collect()),
        cpu_ns: mid(rounds.iter().map(|r| r.cpu_ns).collect()),
    }
}

/// The median of `values` (NaN when there are none).
pub fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The value of the command-line option `name` (its prefix, such as `--seconds=`), or
/// `default` when it is absent or does not parse.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args()
        .find_map(|a| a.strip_prefix(name)?.parse().ok())
        .unwrap_or(default)
}
