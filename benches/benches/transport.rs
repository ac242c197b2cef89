//! Transport throughput: span events serialised into intake v2 NDJSON and gzip-compressed on
//! one core, the work the `apm-transport` thread does per event (the records are built
//! before the clock starts; the network is not involved); and header names matched against
//! `sanitize_field_names`, as it does for each header of a request it writes; and web
//! transactions (request and response context) serialised the same way.
//!
//! `cargo bench -p apm-benches --bench transport`

#[cfg(not(feature = "enable"))]
fn main() {
    eprintln!("transport: the agent is compiled out (--no-default-features)");
}

#[cfg(feature = "enable")]
fn main() {
    const SPANS: usize = 1_000_000;
    const ROUNDS: usize = 7;
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a short round.
    let quick = !std::env::args().any(|a| a == "--bench");
    {
        let spans = if quick { 10_000 } else { SPANS };
        println!("\n## transport: {spans} spans per round, {ROUNDS} rounds, one thread\n");
        println!("| encoding | span names | median spans/s | ns/span | bytes/span |");
        println!("|---|---|---:|---:|---:|");
        for (name, compress, dynamic) in [
            ("NDJSON + gzip (fast)", true, false),
            ("NDJSON, uncompressed", false, false),
            ("NDJSON + gzip (fast)", true, true),
            ("NDJSON, uncompressed", false, true),
        ] {
            let mut rounds: Vec<(f64, usize)> = (0..ROUNDS)
                .map(|_| {
                    let (took, bytes) = apm::__bench::encode_spans(spans, compress, dynamic);
                    (took.as_secs_f64(), bytes)
                })
                .collect();
            rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (secs, bytes) = rounds[ROUNDS / 2];
            let names = if dynamic {
                "made at run time"
            } else {
                "static"
            };
            println!(
                "| {name} | {names} | {:.0} | {:.0} | {:.1} |",
                spans as f64 / secs,
                secs * 1e9 / spans as f64,
                bytes as f64 / spans as f64
            );
        }
    }
    {
        // A request's headers are matched against `sanitize_field_names` as it is written.
        let rounds = if quick { 10_000 } else { 1_000_000 };
        let names = 12;
        println!(
            "\n## sanitize_field_names (default) against a browser's {names} header names, \
             {rounds} rounds\n"
        );
        println!("| matched | ns per name | names matched per round |");
        println!("|---|---:|---:|");
        for (how, remembered) in [
            ("against the list each time", false),
            ("answers remembered per name (the transport)", true),
        ] {
            let mut runs: Vec<(f64, usize)> = (0..ROUNDS)
                .map(|_| {
                    let (took, matched) = apm::__bench::sanitize_header_names(rounds, remembered);
                    (took.as_secs_f64(), matched)
                })
                .collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (secs, matched) = runs[ROUNDS / 2];
            println!(
                "| {how} | {:.1} | {} |",
                secs * 1e9 / (rounds * names) as f64,
                matched / rounds
            );
        }
    }
    {
        // A web transaction's line: its request and response context (URL split, headers
        // sanitised), the work the transport does per request of a service.
        let transactions = if quick { 10_000 } else { 200_000 };
        println!(
            "\n## web transactions: {transactions} per round, {ROUNDS} rounds, one thread, \
             uncompressed\n"
        );
        println!("| ns per transaction | bytes per transaction |");
        println!("|---:|---:|");
        let mut runs: Vec<(f64, usize)> = (0..ROUNDS)
            .map(|_| {
                let (took, bytes) = apm::__bench::encode_web_transactions(transactions);
                (took.as_secs_f64(), bytes)
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (secs, bytes) = runs[ROUNDS / 2];
        println!(
            "| {:.0} | {:.0} |",
            secs * 1e9 / transactions as f64,
            bytes as f64 / transactions as f64
        );
    }
}
