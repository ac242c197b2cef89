//! A forked child (a pre-fork server's worker) inherits the agent's memory but none of its
//! threads: it must draw its own ids, never wait for the parent's threads, and record only
//! through the agent it starts itself.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::agent;

/// Trace, transaction and span ids of `n` transactions of one span each, recorded on this
/// thread.
fn record_ids(n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let _t = apm::start_transaction(format!("after-fork-{i}"), "custom");
        let _s = apm::start_span("work", "app");
        if let Some(c) = apm::current_ids() {
            ids.push(c.trace_id());
            ids.push(c.transaction_id());
            ids.extend(c.span_id());
        }
    }
    ids
}

/// Waits for `pid` to exit, up to `limit`, killing it past that: its exit code, `None` when it
/// hung.
fn wait_bounded(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: system calls on this test's own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            });
        }
        if Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the child checks and records; its result goes to the parent through `out`.
fn in_child(
    inherited: &mut Option<apm::Agent>,
    open_at_fork: apm::TransactionGuard,
    url: &str,
    out: &mut std::fs::File,
) -> String {
    let mut problems = Vec::new();
    // The parent's agent has no threads here: it records nothing, and its handle neither waits
    // for them to flush nor to stop.
    {
        let t = apm::start_transaction("inherited", "custom");
        if t.trace_id().is_some() {
            problems.push("the inherited agent recorded in the child".to_owned());
        }
    }
    let handle = inherited.take().expect("the parent's handle");
    let started = Instant::now();
    if handle.flush(Duration::from_secs(5)) {
        problems.push("the inherited handle's flush claimed success".to_owned());
    }
    drop(handle);
    if started.elapsed() > Duration::from_secs(1) {
        problems.push(format!(
            "the inherited handle's flush and drop waited {:?}",
            started.elapsed()
        ));
    }
    // The child's own agent, to the same server.
    let own = apm::init_with(
        apm::Config::builder()
            .service_name("apm-tests-child")
            .server_url(url)
            .metrics_interval(Duration::ZERO)
            .central_config(false)
            .build(),
    );
    if !own.is_running() {
        problems.push("the child's own agent did not start".to_owned());
    }
    // The transaction open at the fork is the parent's: ending it here sends nothing.
    drop(open_at_fork);
    let ids = record_ids(5);
    if !own.flush(Duration::from_secs(10)) {
        problems.push(format!("the child's flush failed: {:?}", own.stats()));
    }
    drop(own);
    let _ = writeln!(out, "{}", ids.join(" "));
    problems.join("; ")
}

#[test]
fn a_forked_child_draws_its_own_ids_records_only_through_its_own_agent_and_never_waits() {
    let mut h = agent::start(|c| c.metrics_interval(Duration::ZERO).central_config(false));
    // This thread's id generator is seeded and the transport thread is busy at the fork.
    agent::record(200);
    let open_at_fork = apm::start_transaction("open-at-fork", "custom");
    let url = h.server.url();
    let mut fds = [0; 2];
    // SAFETY: a pipe for the child's ids.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs the code below only and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the pipe's write end, owned by the child from here.
        let mut out = unsafe { std::fs::File::from_raw_fd(fds[1]) };
        let problems = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            in_child(&mut h.agent, open_at_fork, &url, &mut out)
        }))
        .unwrap_or_else(|_| "the child panicked".to_owned());
        let _ = writeln!(out, "{problems}");
        drop(out);
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    // SAFETY: the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    drop(open_at_fork);
    let parent_ids = record_ids(5);
    let status = wait_bounded(pid, Duration::from_secs(30));
    assert_eq!(status, Some(0), "the child hung (or died)");
    let mut text = String::new();
    // SAFETY: the pipe's read end, owned here.
    unsafe { std::fs::File::from_raw_fd(fds[0]) }
        .read_to_string(&mut text)
        .expect("the child's report");
    let mut lines = text.lines();
    let child_ids: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let problems = lines.next().unwrap_or("the child reported nothing");
    assert!(problems.is_empty(), "{problems}");
    assert_eq!(child_ids.len(), 15, "{text}");
    assert_eq!(parent_ids.len(), 15);
    let parent: HashSet<&str> = parent_ids.iter().map(String::as_str).collect();
    let shared: Vec<&&str> = child_ids
        .iter()
        .filter(|id| parent.contains(**id))
        .collect();
    assert!(
        shared.is_empty(),
        "the child drew the parent's ids: {shared:?}"
    );
    // The child's transactions reached the server through the child's agent, once each; the
    // parent's still arrive through its own.
    h.flush();
    let transactions = h.transactions();
    for id in child_ids.iter().skip(1).step_by(3) {
        let n = transactions.iter().filter(|t| t["id"] == *id).count();
        assert_eq!(n, 1, "child transaction {id}");
    }
    for id in parent_ids.iter().skip(1).step_by(3) {
        let n = transactions.iter().filter(|t| t["id"] == *id).count();
        assert_eq!(n, 1, "parent transaction {id}");
    }
    let named = |name: &str| transactions.iter().filter(|t| t["name"] == name).count();
    assert_eq!(named("inherited"), 0, "recorded by the inherited agent");
    assert_eq!(named("open-at-fork"), 1, "sent by the parent only");
    h.finish();
}
