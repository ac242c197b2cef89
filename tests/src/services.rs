//! The local services that integration tests talk to (PostgreSQL, MariaDB, Redis, ...): one
//! rule for when one is not reachable.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Whether `name` answers at `addr` (a TCP connection within 2 s). When it does not, a test
/// returns early after saying it skips, except under CI (`CI=true`), where this panics: CI
/// must not pass by skipping.
///
/// ```no_run
/// if !apm_tests::services::require("redis", "127.0.0.1:6379") {
///     return;
/// }
/// ```
pub fn require(name: &str, addr: &str) -> bool {
    let reachable = addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{name} is not reachable at {addr} and CI=true: the test must not be skipped \
             (.ci/services starts it)"
        );
    }
    eprintln!("{name} is not reachable at {addr}; skipping");
    false
}
