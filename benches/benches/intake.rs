//! Intake under a slow APM Server: the application records at a paced rate (transactions of
//! 100 spans, one error every 10 transactions) while the server holds every answer back; the
//! server's counts and the agent's counters say what was delivered and what was dropped, by
//! kind, and resident memory is sampled meanwhile.
//!
//! `cargo bench -p apm-benches --bench intake -- [--rate=500000] [--seconds=10]
//! [--delay-ms=2000] [--request-kb=768] [--queue=N] [--sink] [--warm-up]` (rate in spans/s;
//! `--queue`: `max_queue_size`, the default when not given; `--sink`: a server that reads and
//! discards each request, so that parsing it costs no CPU here, and only the agent's counters
//! are shown; `--warm-up`: one error captured and flushed before the paced run, so that the
//! one-time load of the symbol tables on the transport thread is not part of it; `cargo test
//! --benches` runs one short round).

#[cfg(not(feature = "enable"))]
fn main() {
    eprintln!("intake: the agent is compiled out (--no-default-features)");
}

#[cfg(feature = "enable")]
#[apm::span]
#[inline(never)]
fn noop(x: u64) -> u64 {
    std::hint::black_box(x)
}

#[cfg(feature = "enable")]
fn main() {
    use std::time::{Duration, Instant};

    use apm_benches::{resident_bytes, Sink};
    use apm_tests::MockServer;

    const SPANS_PER_TRANSACTION: u64 = 100;
    const TRANSACTIONS_PER_ERROR: u64 = 10;
    let arg = |name: &str, default: f64| {
        std::env::args()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let quick = !std::env::args().any(|a| a == "--bench");
    let rate = arg("rate", 500_000.0);
    let seconds = arg("seconds", if quick { 1.0 } else { 10.0 });
    let delay = Duration::from_millis(arg("delay-ms", 2000.0) as u64);
    let request_kb = arg("request-kb", 768.0) as u64;
    let queue = arg("queue", 0.0) as usize;
    let warm_up = std::env::args().any(|a| a == "--warm-up");

    let use_sink = std::env::args().any(|a| a == "--sink");
    // 127.0.0.2: loopback, but not by name, so the agent compresses as for a remote server.
    let (server, sink) = if use_sink {
        (None, Some(Sink::start(delay)))
    } else {
        let server = MockServer::start_on("127.0.0.2:0").unwrap_or_else(MockServer::start);
        server.set_keep_payloads(false);
        server.set_intake_delay(delay);
        (Some(server), None)
    };
    let url = match (&server, &sink) {
        (Some(server), _) => server.url(),
        (_, Some(sink)) => sink.url(),
        _ => unreachable!("one of them is started"),
    };
    let mut config = apm::Config::builder()
        .service_name("intake-bench")
        .server_url(url)
        .api_request_size(request_kb * 1024);
    if queue > 0 {
        config = config.max_queue_size(queue);
    }
    let agent = apm::init_with(config.build());
    let rss_at_start = resident_bytes();
    let (mut transactions, mut errors) = (0, 0);
    if warm_up {
        // The first stack trace loads this binary's symbol tables on the transport thread
        // (hundreds of milliseconds, and their memory, once per process).
        let t = apm::start_transaction("warm-up", "request");
        apm::capture_error!(std::io::Error::other("warm-up"));
        transactions += 1;
        errors += 1;
        drop(t);
        agent.flush(Duration::from_secs(30));
    }
    let after_warm_up = agent.stats();
    let rss_before = resident_bytes();
    let mut rss_peak = rss_before;
    let spans = (rate * seconds) as u64;
    let start = Instant::now();
    let mut done = 0;
    while done < spans {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if done >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let _t = apm::start_transaction("paced", "request");
        for i in 0..SPANS_PER_TRANSACTION {
            noop(i);
        }
        transactions += 1;
        if transactions % TRANSACTIONS_PER_ERROR == 0 {
            apm::capture_error!(std::io::Error::other("paced"));
            errors += 1;
        }
        done += SPANS_PER_TRANSACTION;
        if done % 100_000 == 0 {
            rss_peak = rss_peak.max(resident_bytes());
        }
    }
    let took = start.elapsed();
    let flushed = agent.flush(Duration::from_secs(120));
    rss_peak = rss_peak.max(resident_bytes());
    let s = agent.stats();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let got = |kind: &str| {
        server
            .as_ref()
            .map(|server| server.with_recorded(|r| r.count(kind)) as u64)
    };
    println!(
        "\n## intake: {spans} spans paced at {rate:.0}/s ({:.0}/s reached), answers after \
         {delay:?}, api_request_size {request_kb}kb, max_queue_size {}{}\n",
        spans as f64 / took.as_secs_f64(),
        if queue > 0 {
            queue.to_string()
        } else {
            "default".into()
        },
        if warm_up { ", after a warm-up" } else { "" }
    );
    if server.is_some() {
        println!("| kind | recorded | delivered | dropped |");
        println!("|---|---:|---:|---:|");
        for (kind, recorded) in [
            ("span", spans),
            ("transaction", transactions),
            ("error", errors),
        ] {
            let delivered = got(kind).unwrap_or(0);
            println!(
                "| {kind} | {recorded} | {delivered} | {} |",
                recorded.saturating_sub(delivered)
            );
        }
    }
    if let Some(sink) = &sink {
        let (requests, bytes) = sink.received();
        println!(
            "sink: {requests} requests, {:.1} MiB in all, {:.1} bytes per event sent",
            mib(bytes),
            bytes as f64 / s.events_sent.max(1) as f64
        );
    }
    if warm_up {
        println!(
            "the paced run alone: {} events recorded, {} sent, {} dropped; the warm-up took \
             {:.1} MiB",
            s.events_recorded - after_warm_up.events_recorded,
            s.events_sent - after_warm_up.events_sent,
            s.events_dropped_queue_full - after_warm_up.events_dropped_queue_full,
            mib(rss_before.saturating_sub(rss_at_start))
        );
    }
    println!(
        "\ncounters: {s:?}\nflush: {}; resident memory growth: {:.1} MiB",
        if flushed { "ok" } else { "failed" },
        mib(rss_peak.saturating_sub(rss_before))
    );
    drop(agent);
    if let Some(server) = &server {
        server.set_intake_delay(Duration::ZERO);
    }
}
