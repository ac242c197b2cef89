//! The servers that integration tests talk to on loopback (PostgreSQL, MariaDB, Redis, ...).
//! `.ci/services` starts them in CI; a developer's machine may lack one.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Whether `name` answers at `addr`. When it does not, under `CI=true` this panics (a missing
/// server must fail CI, not skip the tests that need it); elsewhere it says that the calling
/// test is skipped and returns `false`.
///
/// ```no_run
/// if !apm_tests::services::reachable("PostgreSQL", "127.0.0.1:5432") {
///     return;
/// }
/// ```
pub fn reachable(name: &str, addr: &str) -> bool {
    let error = match addr.parse::<SocketAddr>() {
        Ok(socket) => match TcpStream::connect_timeout(&socket, Duration::from_secs(3)) {
            Ok(_) => return true,
            Err(e) => e.to_string(),
        },
        Err(e) => format!("bad address: {e}"),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is not reachable at {addr} ({error}); CI needs it (.ci/services starts it)");
    }
    eprintln!("skipped: {name} is not reachable at {addr} ({error})");
    false
}
