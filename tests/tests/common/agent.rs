//! Runs the agent against a fresh mock APM Server, one test at a time per process (the agent
//! is process-wide). The server checks every event it receives against the intake schemas and
//! fails the test when it is dropped if any was invalid.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use apm_tests::MockServer;
use serde_json::Value;

static ONE_AGENT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Dropped field by field, in order: the agent first (its last events reach the server), then
/// the server (which fails the test if any event it received was invalid), then the lock.
pub struct Harness {
    pub agent: Option<apm::Agent>,
    pub server: MockServer,
    _exclusive: MutexGuard<'static, ()>,
}

/// Exclusive use of the process-wide agent for a test that starts its own.
pub fn exclusive() -> MutexGuard<'static, ()> {
    let guard = ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The previous holder's agent was stopped and its threads joined; their tasks may still
    // be listed for a moment, and this test's thread checks must not see them.
    agent_threads_once_stopped();
    guard
}

/// Starts a mock server and an agent sending to it, configured by `configure` on top of a
/// builder that already names the server and the service.
pub fn start(configure: impl FnOnce(apm::ConfigBuilder) -> apm::ConfigBuilder) -> Harness {
    start_with(MockServer::start(), configure)
}

/// Like [`start`], with a server prepared by the test (e.g. its version set).
pub fn start_with(
    server: MockServer,
    configure: impl FnOnce(apm::ConfigBuilder) -> apm::ConfigBuilder,
) -> Harness {
    let exclusive = exclusive();
    let builder = apm::Config::builder()
        .service_name("apm-tests")
        .server_url(server.url());
    let agent = apm::init_with(configure(builder).build());
    assert!(agent.is_running(), "the agent did not start");
    Harness {
        agent: Some(agent),
        server,
        _exclusive: exclusive,
    }
}

impl Harness {
    pub fn agent(&self) -> &apm::Agent {
        self.agent.as_ref().expect("agent already stopped")
    }

    /// Flushes and asserts the server took everything.
    pub fn flush(&self) {
        assert!(
            self.agent().flush(Duration::from_secs(10)),
            "flush failed: {:?}",
            self.agent().stats()
        );
    }

    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.server
            .with_recorded(|r| r.events_of(kind).cloned().collect())
    }

    pub fn transactions(&self) -> Vec<Value> {
        self.events("transaction")
    }
    pub fn spans(&self) -> Vec<Value> {
        self.events("span")
    }
    pub fn errors(&self) -> Vec<Value> {
        self.events("error")
    }

    /// Stops the agent (flushing on drop), then asserts the server saw no violation.
    pub fn finish(mut self) {
        drop(self.agent.take());
        super::validate_all(&self.server);
    }
}

/// The one event of `events` named `name`.
pub fn named<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = events.iter().filter(|e| e["name"] == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one event named {name:?} in {events:#?}"
    );
    found[0]
}

/// The one `dropped_spans_stats` entry of transaction `txn`, checked against its service
/// target (`type`, `name`), its resource and its outcome: how many calls it counts.
pub fn the_dropped_stat(
    txn: &Value,
    target: (&str, Option<&str>),
    resource: &str,
    outcome: &str,
) -> u64 {
    let stats = txn["dropped_spans_stats"]
        .as_array()
        .unwrap_or_else(|| panic!("no dropped_spans_stats in {txn:#}"));
    assert_eq!(stats.len(), 1, "{stats:#?}");
    let stat = &stats[0];
    assert_eq!(stat["service_target_type"], target.0, "{stat}");
    assert_eq!(stat["service_target_name"].as_str(), target.1, "{stat}");
    assert_eq!(stat["destination_service_resource"], resource, "{stat}");
    assert_eq!(stat["outcome"], outcome, "{stat}");
    stat["duration"]["count"].as_u64().expect("a count")
}

pub use apm_tests::block_on;

/// Names of this process's threads that belong to the agent (`apm-…`; Linux).
pub fn agent_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("apm-"))
        .collect()
}

/// The agent's threads once those that were just joined have left `/proc/self/task`.
///
/// A join returns when the kernel clears the thread's id, early in the thread's exit; the
/// task is listed until its exit ends, a moment later. Nothing signals that moment, so this
/// looks again every millisecond, for at most two seconds, until no agent thread is listed.
/// A thread that was not joined, because the agent left it running, is still listed then.
pub fn agent_threads_once_stopped() -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let threads = agent_threads();
        if threads.is_empty() || std::time::Instant::now() >= deadline {
            return threads;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A future that returns `Pending` once (waking itself), then `Ready`: a yield point that
/// makes futures interleave.
pub struct Yield(pub bool);

impl std::future::Future for Yield {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if std::mem::take(&mut self.0) {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    }
}

/// Records `n` transactions (`tx0`, `tx1`, …) of one span each.
pub fn record(n: usize) {
    for i in 0..n {
        let _t = apm::start_transaction(format!("tx{i}"), "custom");
        let _s = apm::start_span("work", "app");
    }
}
