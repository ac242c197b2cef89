//! Exit spans for [redis](https://docs.rs/redis) commands and pipelines (feature `redis`; it
//! needs Rust 1.88, as redis 1.8 does).
//!
//! Wrap the connection in [`Traced`]; everything else stays as it was. `Traced` implements
//! redis's own `ConnectionLike` (sync) and `aio::ConnectionLike` (async) traits, so
//! `cmd(..).query(&mut con)`, `pipe().query_async(&mut con)`, `Commands` and `AsyncCommands`
//! work on it unchanged, whatever the connection inside: `redis::Connection`,
//! `aio::MultiplexedConnection`, `aio::ConnectionManager`, or a pooled one.
//!
//! ```no_run
//! use redis::{AsyncCommands as _, Commands as _};
//!
//! # async fn f() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let info = client.get_connection_info();
//!
//! // Sync:
//! let mut con = apm::redis::Traced::new(client.get_connection()?, info);
//! let _: () = con.set("greeting", "hello")?;
//!
//! // Async: the same wrapper around a multiplexed connection (cheap to clone, as the
//! // connection is).
//! let mut con = apm::redis::Traced::new(client.get_multiplexed_async_connection().await?, info);
//! let greeting: String = con.get("greeting").await?;
//! let (a, b): (i64, i64) = redis::pipe().incr("a", 1).incr("b", 1).query_async(&mut con).await?;
//! # Ok(()) }
//! ```
//!
//! Inside a sampled transaction every command, and every pipeline as a whole, becomes an exit
//! span, as `specs/agents/tracing-instrumentation-db.md` ("Redis") asks:
//!
//! - type `db`, subtype `redis`, action `query`; name the command's name in upper case (`GET`,
//!   `HSET`), a pipeline `PIPELINE`, a transaction (`pipe().atomic()`, sent as
//!   `MULTI` … `EXEC`) `MULTI`. Names stay few, as the spec wants: the Python agent names a
//!   pipeline after its method (`Pipeline.execute`), the Go agent joins its commands' names.
//! - `context.db.type` `redis`, no statement and no instance (the spec has neither for
//!   Redis: arguments are data); `destination` is the address and port the client was given
//!   (a Unix socket: its path, no port); `service.target` is `redis`, without a name.
//! - outcome `failure` when the server answers with an error (`-ERR …`, also for one command
//!   of a pipeline or a transaction) or the connection fails, `success` otherwise.
//!
//! Sync commands are timed by a span current on the calling thread; async ones by a span that
//! is current nowhere, which starts when the command's future is first polled, so it is a
//! child of the span or transaction that awaits it, and ends when the reply arrives or the
//! future is dropped (then with outcome `unknown`): no guard is held across an `.await`.
//!
//! Outside a sampled transaction nothing is recorded and nothing is allocated: the call goes
//! straight to the connection inside. The application always gets redis's own result,
//! unchanged.

use std::borrow::Cow;
use std::sync::Arc;

use ::redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use super::facade::{spans_recorded_here, DbEndpoint, OverLimitExit};
use crate::{Outcome, Span, SpanGuard};

/// A redis connection whose commands and pipelines become exit spans (see the
/// [module documentation](self)).
///
/// It implements redis's `ConnectionLike` when `C` does (`redis::Connection`), and
/// `aio::ConnectionLike` when `C` does (`MultiplexedConnection`, `ConnectionManager`), so
/// redis's `Commands` / `AsyncCommands` and `query` / `query_async` take it as they take the
/// connection itself. It does not dereference to the connection (redis would then see two
/// implementations); [`Traced::get_mut`] reaches connection-specific methods, such as
/// `Connection::as_pubsub` (whose messages are not traced).
#[derive(Debug, Clone)]
pub struct Traced<C> {
    inner: C,
    /// The server: its address (host, or a Unix socket's path) and port are the spans'
    /// destination; commands past `transaction_max_spans` are counted under it.
    endpoint: Arc<DbEndpoint>,
}

impl<C> Traced<C> {
    /// Wraps `connection`, made from `info` (`Client::get_connection_info()`), which gives
    /// the spans' destination address and port.
    pub fn new(connection: C, info: &ConnectionInfo) -> Self {
        let destination = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                Some((host.clone(), Some(*port)))
            }
            ConnectionAddr::Unix(path) => Some((path.to_string_lossy().into_owned(), None)),
            // `ConnectionAddr` is `#[non_exhaustive]`: an address kind added later is sent
            // without a destination address.
            _ => None,
        };
        let endpoint = Arc::new(DbEndpoint {
            subtype: "redis",
            instance: None,
            user: None,
            destination,
        });
        Traced {
            inner: connection,
            endpoint,
        }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The connection inside, for its own methods (what goes through them is not traced).
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The connection, unwrapped.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Opens the span of one command or pipeline, when one would be recorded here (checked
    /// first: unsampled and untraced calls build nothing).
    fn open<S: DbSpan>(&self, name: impl FnOnce() -> Cow<'static, str>) -> Option<Call<S>> {
        if !spans_recorded_here() {
            return None;
        }
        let mut span = S::start(name());
        if !span.is_recording() {
            return OverLimitExit::start_db(&self.endpoint).map(Call::OverLimit);
        }
        span.describe(&self.endpoint);
        Some(Call::Span(span))
    }
}

impl<C: ::redis::ConnectionLike> ::redis::ConnectionLike for Traced<C> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let span = self.open::<SpanGuard>(|| command_name(first_packed_arg(cmd)));
        let result = self.inner.req_packed_command(cmd);
        if let Some(mut span) = span {
            span.set_outcome(outcome(result.as_ref().map(std::slice::from_ref)));
        }
        result
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        // A transaction skips the replies of `MULTI` and the queued commands (`offset`).
        let span = self.open::<SpanGuard>(|| pipeline_name(offset > 0));
        let result = self.inner.req_packed_commands(cmd, offset, count);
        if let Some(mut span) = span {
            span.set_outcome(outcome(result.as_deref()));
        }
        result
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        // The connection's own `req_command` (it knows commands that get no reply).
        let span = self.open::<SpanGuard>(|| command_name(first_arg(cmd)));
        let result = self.inner.req_command(cmd);
        if let Some(mut span) = span {
            span.set_outcome(outcome(result.as_ref().map(std::slice::from_ref)));
        }
        result
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn supports_pipelining(&self) -> bool {
        self.inner.supports_pipelining()
    }

    fn check_connection(&mut self) -> bool {
        self.inner.check_connection()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

impl<C: ::redis::aio::ConnectionLike + Send> ::redis::aio::ConnectionLike for Traced<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Some(mut span) = self.open::<Span>(|| command_name(first_arg(cmd))) else {
            // The connection's own future, not boxed again.
            return self.inner.req_packed_command(cmd);
        };
        let reply = self.inner.req_packed_command(cmd);
        Box::pin(async move {
            let result = reply.await;
            span.set_outcome(outcome(result.as_ref().map(std::slice::from_ref)));
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let Some(mut span) = self.open::<Span>(|| pipeline_name(cmd.is_transaction())) else {
            return self.inner.req_packed_commands(cmd, offset, count);
        };
        let replies = self.inner.req_packed_commands(cmd, offset, count);
        Box::pin(async move {
            let result = replies.await;
            span.set_outcome(outcome(result.as_deref()));
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// The span of one command: recorded, or, past `transaction_max_spans`, only timed for the
/// transaction's `dropped_spans_stats`.
enum Call<S> {
    Span(S),
    OverLimit(OverLimitExit),
}

impl<S: DbSpan> Call<S> {
    fn set_outcome(&mut self, outcome: Outcome) {
        match self {
            Call::Span(s) => s.set_outcome_to(outcome),
            Call::OverLimit(o) => o.set_outcome(outcome),
        }
    }
}

/// What the integration needs of a span handle: [`SpanGuard`] (sync: current on the calling
/// thread) and [`Span`] (async: current nowhere, `Send`) have the same methods but no common
/// trait.
trait DbSpan: Sized {
    fn start(name: Cow<'static, str>) -> Self;
    fn is_recording(&self) -> bool;
    /// Type, subtype, action, `context.db`, destination, exit; outcome `unknown` until the
    /// reply decides it (a dropped future ends so).
    fn describe(&mut self, endpoint: &DbEndpoint);
    fn set_outcome_to(&mut self, outcome: Outcome);
}

macro_rules! impl_db_span {
    ($handle:ty, $start:expr) => {
        impl DbSpan for $handle {
            fn start(name: Cow<'static, str>) -> Self {
                $start(name, "db")
            }
            fn is_recording(&self) -> bool {
                <$handle>::is_recording(self)
            }
            fn describe(&mut self, endpoint: &DbEndpoint) {
                self.set_subtype("redis");
                self.set_action("query");
                self.set_db("redis", None, None);
                if let Some((address, port)) = &endpoint.destination {
                    self.set_destination(Some(address.clone()), *port);
                }
                self.set_exit();
                self.set_outcome(Outcome::Unknown);
            }
            fn set_outcome_to(&mut self, outcome: Outcome) {
                self.set_outcome(outcome);
            }
        }
    };
}

impl_db_span!(SpanGuard, crate::start_span);
impl_db_span!(Span, Span::start);

/// `failure` for an I/O or protocol error and for an error reply, also one inside a
/// pipeline's or a transaction's replies (`EXEC` answers with an array); `success` otherwise.
fn outcome(result: Result<&[Value], &::redis::RedisError>) -> Outcome {
    let Ok(replies) = result else {
        return Outcome::Failure;
    };
    let failed = replies.iter().any(|reply| match reply {
        Value::ServerError(_) => true,
        Value::Array(items) => items.iter().any(|v| matches!(v, Value::ServerError(_))),
        _ => false,
    });
    if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// `MULTI` for a transaction, `PIPELINE` otherwise.
fn pipeline_name(transaction: bool) -> Cow<'static, str> {
    Cow::Borrowed(if transaction { "MULTI" } else { "PIPELINE" })
}

/// The first argument of a command: its name.
fn first_arg(cmd: &Cmd) -> Option<&[u8]> {
    match cmd.args_iter().next()? {
        ::redis::Arg::Simple(name) => Some(name),
        // A cursor (`SCAN`'s) is never first; `Arg` may grow other kinds.
        _ => None,
    }
}

/// The first argument of a command packed in RESP (`*<n>\r\n$<len>\r\n<name>\r\n…`), read in
/// place; `None` when the bytes are not such a command.
fn first_packed_arg(packed: &[u8]) -> Option<&[u8]> {
    let rest = packed.strip_prefix(b"*")?;
    let rest = &rest[rest.iter().position(|&b| b == b'\n')? + 1..];
    let rest = rest.strip_prefix(b"$")?;
    let line = rest.iter().position(|&b| b == b'\n')?;
    let len: usize = std::str::from_utf8(rest[..line].strip_suffix(b"\r")?)
        .ok()?
        .parse()
        .ok()?;
    rest.get(line + 1..line + 1 + len)
}

/// The longest command name kept whole (Redis's longest is about 30 bytes): a span name must
/// stay a low-cardinality name, whatever is sent as the first argument.
const MAX_NAME: usize = 64;

/// The command's name in upper case, as the Redis documentation writes it.
fn command_name(name: Option<&[u8]>) -> Cow<'static, str> {
    match name {
        Some(name) if !name.is_empty() => {
            let name = &name[..name.len().min(MAX_NAME)];
            Cow::Owned(String::from_utf8_lossy(name).to_ascii_uppercase())
        }
        _ => Cow::Borrowed("(empty command)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_come_from_the_command_or_its_packed_bytes() {
        let mut get = ::redis::cmd("get");
        get.arg("k");
        assert_eq!(command_name(first_arg(&get)), "GET");
        let packed = get.get_packed_command();
        assert_eq!(first_packed_arg(&packed), Some(&b"get"[..]));
        assert_eq!(command_name(first_packed_arg(&packed)), "GET");
        let hset = ::redis::cmd("HSET")
            .arg("h")
            .arg("f")
            .arg(1)
            .get_packed_command();
        assert_eq!(command_name(first_packed_arg(&hset)), "HSET");
        assert_eq!(command_name(first_packed_arg(b"")), "(empty command)");
        assert_eq!(
            command_name(first_packed_arg(b"PING\r\n")),
            "(empty command)"
        );
        assert_eq!(
            command_name(first_packed_arg(b"*1\r\n$9\r\nPI")),
            "(empty command)"
        );
        assert_eq!(
            command_name(first_arg(&::redis::Cmd::new())),
            "(empty command)"
        );
        let long = "x".repeat(1000);
        assert_eq!(command_name(Some(long.as_bytes())).len(), MAX_NAME);
    }

    #[test]
    fn error_replies_fail_the_span_even_inside_a_transaction() {
        let err = || ::redis::parse_redis_value(b"-ERR boom\r\n").expect("an error reply");
        assert!(matches!(err(), Value::ServerError(_)));
        assert_eq!(outcome(Ok(&[Value::Okay])), Outcome::Success);
        assert_eq!(outcome(Ok(&[])), Outcome::Success);
        assert_eq!(outcome(Ok(&[Value::Okay, err()])), Outcome::Failure);
        assert_eq!(
            outcome(Ok(&[Value::Array(vec![Value::Int(1), err()])])),
            Outcome::Failure
        );
        let io = ::redis::RedisError::from(std::io::Error::other("reset"));
        assert_eq!(outcome(Err(&io)), Outcome::Failure);
    }
}
