//! The cost of a traced database query, next to the same query untraced, in one run: `SELECT
//! 1` on an in-memory SQLite database (rusqlite, `apm::rusqlite::Connection`) and on the
//! PostgreSQL server at 127.0.0.1:5432 (the blocking `postgres` client,
//! `apm::postgres::blocking::Client`; skipped with a message when no server answers there).
//!
//! Variants, per database, all on one connection (two connections to one server can differ by
//! more than what is measured here: which core each server process lands on):
//! - `bare`: the driver's own method, reached through the traced client's dereference;
//! - `traced_outside_transaction`: the traced client, agent running, no transaction (nothing
//!   recorded: the wrapper's check only);
//! - `traced_sampled`: the traced client inside sampled transactions of 100 queries, each
//!   query an exit span that the transport serialises and ships to a local APM Server
//!   (consecutive identical `SELECT 1` spans are compressed, as in production).
//!
//! Criterion measures each variant in turn, so a load that changes meanwhile (the machine is
//! shared) moves one variant and not the other. The ratios are therefore measured again
//! after criterion, round-robin: rounds of each variant in turn, the median of each, and the
//! ratio to `bare` printed as a table.
//!
//! `cargo bench -p apm-benches --bench db`; the figures are in `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apm_tests::MockServer;
use criterion::{criterion_group, criterion_main, Criterion};

/// Queries per transaction (a new one every this many queries).
const PER_TRANSACTION: u64 = 100;
const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// Rounds of each variant in the round-robin measurement (one more is run first and thrown
/// away).
const ROUNDS: usize = 21;

/// Measures the variants round-robin, `calls` calls a round, and prints the median wall time
/// and CPU time of the calling thread per call of each, and what each adds to the first (the
/// bare driver). The thread's CPU time is the instrumentation's cost to the application: the
/// transport's work happens on its own thread, and a loaded machine's waits are not in it.
fn round_robin(db: &str, calls: u64, variants: &mut [(&str, &mut dyn FnMut(u64))]) {
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=ROUNDS {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            let (start, cpu_start) = (Instant::now(), apm_benches::thread_cpu_time());
            run(calls);
            if round > 0 {
                let per_call = |d: Duration| d.as_nanos() as f64 / calls as f64;
                wall[i].push(per_call(start.elapsed()));
                cpu[i].push(per_call(
                    apm_benches::thread_cpu_time().saturating_sub(cpu_start),
                ));
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wall: Vec<f64> = wall.iter_mut().map(median).collect();
    let cpu: Vec<f64> = cpu.iter_mut().map(median).collect();
    println!("\n## {db}: round-robin, {ROUNDS} rounds of {calls} queries per variant (medians)\n");
    println!("| variant | wall µs/query | × bare | thread CPU µs/query | CPU added to bare |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.3}× | {:.2} | {:+.2} µs ({:+.1}% of a bare query's wall time) |",
            wall[i] / 1000.0,
            wall[i] / wall[0],
            cpu[i] / 1000.0,
            (cpu[i] - cpu[0]) / 1000.0,
            (cpu[i] - cpu[0]) / wall[0] * 100.0,
        );
    }
}

/// Runs `query` `iters` times, in sampled transactions of `PER_TRANSACTION` queries.
fn in_transactions(iters: u64, mut query: impl FnMut() -> i64) -> Duration {
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(PER_TRANSACTION);
        let _t = apm::start_transaction("bench", "custom");
        for _ in 0..n {
            black_box(query());
        }
        left -= n;
    }
    start.elapsed()
}

fn agent(server: &MockServer) -> apm::Agent {
    apm::init_with(
        apm::Config::builder()
            .service_name("bench")
            .server_url(server.url())
            .max_queue_size(64 * 1024)
            .build(),
    )
}

fn sqlite(c: &mut Criterion, server: &MockServer) {
    let mut g = c.benchmark_group("db/sqlite");
    let traced = apm::rusqlite::Connection::open_in_memory().expect("an in-memory database");
    // The driver's own method, on the same connection.
    let bare = || {
        let conn: &rusqlite::Connection = &traced;
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .unwrap_or_default()
    };
    let one = || {
        traced
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .unwrap_or_default()
    };
    let agent = agent(server);
    g.bench_function("bare", |b| b.iter(bare));
    g.bench_function("traced_outside_transaction", |b| b.iter(one));
    g.bench_function("traced_sampled", |b| {
        b.iter_custom(|iters| in_transactions(iters, one))
    });
    g.finish();
    round_robin(
        "db/sqlite",
        5_000,
        &mut [
            ("bare", &mut |n| {
                for _ in 0..n {
                    black_box(bare());
                }
            }),
            ("traced_outside_transaction", &mut |n| {
                for _ in 0..n {
                    black_box(one());
                }
            }),
            ("traced_sampled", &mut |n| {
                in_transactions(n, one);
            }),
        ],
    );
    agent.flush(Duration::from_secs(30));
}

fn postgres(c: &mut Criterion, server: &MockServer) {
    let Ok(traced) = apm::postgres::blocking::Client::connect(POSTGRES, postgres::NoTls) else {
        eprintln!("db/postgres: no PostgreSQL server at 127.0.0.1:5432; skipped");
        return;
    };
    let traced = std::cell::RefCell::new(traced);
    // The driver's own method, on the same connection.
    let bare = || {
        let mut client = traced.borrow_mut();
        let driver: &mut postgres::Client = &mut client;
        driver
            .query_one("SELECT 1", &[])
            .map(|r| i64::from(r.get::<_, i32>(0)))
            .unwrap_or_default()
    };
    let one = || {
        traced
            .borrow_mut()
            .query_one("SELECT 1", &[])
            .map(|r| i64::from(r.get::<_, i32>(0)))
            .unwrap_or_default()
    };
    let agent = agent(server);
    let mut g = c.benchmark_group("db/postgres");
    g.bench_function("bare", |b| b.iter(bare));
    g.bench_function("traced_outside_transaction", |b| b.iter(one));
    g.bench_function("traced_sampled", |b| {
        b.iter_custom(|iters| in_transactions(iters, one))
    });
    g.finish();
    round_robin(
        "db/postgres",
        300,
        &mut [
            ("bare", &mut |n| {
                for _ in 0..n {
                    black_box(bare());
                }
            }),
            ("traced_outside_transaction", &mut |n| {
                for _ in 0..n {
                    black_box(one());
                }
            }),
            ("traced_sampled", &mut |n| {
                in_transactions(n, one);
            }),
        ],
    );
    agent.flush(Duration::from_secs(30));
}

fn db(c: &mut Criterion) {
    let server = MockServer::start();
    server.set_keep_payloads(false);
    sqlite(c, &server);
    postgres(c, &server);
}

criterion_group! {
    name = benches;
    // Short: the point is the ratio within one run, not a precise absolute figure.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = db
}
criterion_main!(benches);
