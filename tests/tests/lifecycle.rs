//! Starting and stopping: off switches, a second `init`, invalid configuration.

mod common;

use std::time::Duration;

use apm_tests::MockServer;
use common::agent::{self, agent_threads, agent_threads_once_stopped};

#[test]
fn a_running_agent_has_its_named_transport_thread_and_stops_it() {
    let mut h = agent::start(|c| c);
    assert!(
        agent_threads().contains(&"apm-transport".to_owned()),
        "{:?}",
        agent_threads()
    );
    drop(h.agent.take());
    // The drop joins the three threads, and no request ever ran on a thread of its own.
    let left = agent_threads_once_stopped();
    assert!(left.is_empty(), "{left:?}");
    h.finish();
}

#[test]
fn exactly_three_threads_run_while_requests_are_in_flight() {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let h = agent::start(|c| c.server_timeout(TIMEOUT));
    // The intake request hangs in the server while the threads are counted; the central
    // configuration poll and the server information probe have been made by then.
    h.server.set_intake_delay(Duration::from_secs(30));
    {
        let _t = apm::start_transaction("in flight", "request");
    }
    let server = &h.server;
    let threads = std::thread::scope(|s| {
        let counting = s.spawn(|| {
            assert!(server.wait_for_intake_requests(1, Duration::from_secs(10)));
            let polled = |r: &apm_tests::Recorded| {
                r.requests()
                    .iter()
                    .any(|q| q.path == apm_tests::CONFIG_PATH)
            };
            assert!(server.wait_for(polled, Duration::from_secs(10)));
            let threads = agent_threads();
            // Counted before the agent's request could time out: it was in flight.
            let intake = server
                .requests()
                .into_iter()
                .find(|q| q.path == apm_tests::INTAKE_PATH)
                .expect("the intake request");
            assert!(
                intake.arrived.elapsed() < TIMEOUT,
                "counted too late to see the request in flight"
            );
            threads
        });
        h.agent().flush(Duration::from_secs(1));
        counting.join().expect("counting thread")
    });
    let mut threads = threads;
    threads.sort();
    assert_eq!(threads, ["apm-config", "apm-metrics", "apm-transport"]);
    h.server.set_intake_delay(Duration::ZERO);
    h.finish();
}

#[test]
fn enabled_false_starts_nothing_and_records_nothing() {
    let _exclusive = agent::exclusive();
    let server = MockServer::start();
    let agent = apm::init_with(
        apm::Config::builder()
            .server_url(server.url())
            .enabled(false)
            .build(),
    );
    assert!(!agent.is_running());
    assert!(agent_threads().is_empty());
    {
        let t = apm::start_transaction("off", "custom");
        assert!(t.id().is_none());
        let s = apm::start_span("off", "app");
        assert!(!s.is_recording());
    }
    assert!(!agent.flush(Duration::from_millis(100)));
    drop(agent);
    assert_eq!(server.with_recorded(|r| r.requests().len()), 0);
}

#[test]
fn recording_false_sends_nothing() {
    let h = agent::start(|c| c.recording(false));
    {
        let t = apm::start_transaction("not recorded", "custom");
        assert!(t.id().is_none());
        apm::capture_error!(std::io::Error::other("not recorded either"));
    }
    h.flush();
    assert!(h.transactions().is_empty() && h.errors().is_empty());
    h.finish();
}

#[test]
fn a_second_init_shares_the_running_agent() {
    let h = agent::start(|c| c);
    let other = MockServer::start();
    let second = apm::init_with(apm::Config::builder().server_url(other.url()).build());
    assert!(second.is_running());
    drop(apm::start_transaction("once", "custom"));
    assert!(second.flush(Duration::from_secs(5)));
    drop(second);
    // Dropping the second handle did not stop the agent.
    assert!(h.agent().is_running());
    assert_eq!(h.transactions().len(), 1);
    assert_eq!(other.with_recorded(|r| r.requests().len()), 0);
    h.finish();
}

#[test]
fn invalid_values_fall_back_to_defaults_without_failing() {
    let config = apm::Config::builder()
        .transaction_sample_rate(7.5)
        .service_name("shop")
        .build();
    assert!(!config.warnings().is_empty());
    let h = agent::start(|c| c.transaction_sample_rate(f64::NAN));
    drop(apm::start_transaction("sampled by default", "custom"));
    h.flush();
    assert_eq!(h.transactions()[0]["sampled"], true);
    h.finish();
}
