//! The real servers some integration tests talk to (PostgreSQL, ...): whether one is there.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Whether `name`'s server answers at `address` (`host:port`). When it does not, the test
/// should return: this prints that it skips, except under CI (`CI=true`), where it panics, so
/// a missing server fails the run instead of passing it silently.
pub fn require(name: &str, address: &str) -> bool {
    let reachable = address.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    });
    if !reachable {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{name} is not reachable at {address}, and CI needs it"
        );
        eprintln!("{name} is not reachable at {address}; skipping");
    }
    reachable
}
