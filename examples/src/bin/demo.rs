//! The demo: an instrumented "shop" service records a few requests; its events travel through
//! the agent's real transport (NDJSON, HTTP) to a small APM Server running in this process,
//! and every received trace is printed as a waterfall.
//!
//! Run it with `cargo run --bin demo`.

use std::fmt;
use std::thread;
use std::time::Duration;

use apm_tests::{block_on, MockServer, Trace};

#[derive(Debug)]
struct PaymentDeclined {
    order: u32,
    source: CardError,
}

#[derive(Debug)]
struct CardError;

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("card expired")
    }
}
impl std::error::Error for CardError {}

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payment declined for order {}", self.order)
    }
}
impl std::error::Error for PaymentDeclined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn work(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
fn load_cart(order: u32) -> Result<Vec<u32>, std::io::Error> {
    work(3);
    Ok((0..order % 4 + 2).collect())
}

#[apm::span(kind = "app", subtype = "internal")]
fn price_items(items: &[u32]) -> u32 {
    // Prices are looked up in parallel on worker threads, inside the same transaction.
    let ctx = apm::Context::current();
    let workers: Vec<_> = items
        .iter()
        .map(|&item| thread::spawn(ctx.clone().wrap(move || price_one(item))))
        .collect();
    workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
}

#[apm::span(
    name = "GET pricing/item",
    kind = "external",
    subtype = "http",
    action = "request"
)]
fn price_one(item: u32) -> u32 {
    work(2 + u64::from(item));
    100 + item
}

#[apm::span(kind = "external", subtype = "http", action = "request")]
fn charge_card(order: u32, amount: u32) -> Result<(), PaymentDeclined> {
    work(4);
    if order.is_multiple_of(3) {
        return Err(PaymentDeclined {
            order,
            source: CardError,
        });
    }
    let _ = amount;
    Ok(())
}

#[apm::transaction(name = "POST /checkout", kind = "request")]
fn checkout(order: u32) -> Result<u32, Box<dyn std::error::Error>> {
    apm::set_label("order_id", order);
    let items = load_cart(order)?;
    let total = price_items(&items);
    if let Err(e) = charge_card(order, total) {
        apm::capture_error!(e);
        apm::set_transaction_result("HTTP 4xx");
        return Err("declined".into());
    }
    apm::set_transaction_result("HTTP 2xx");
    Ok(total)
}

#[apm::transaction(kind = "scheduled")]
async fn nightly_report() {
    summarise().await;
    work(1);
}

#[apm::span]
async fn summarise() {
    work(2);
}

fn main() {
    let server = MockServer::start();
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("shop")
            .service_version("1.4.2")
            .environment("demo")
            .server_url(server.url())
            .build(),
    );
    println!(
        "apm demo: recording 3 checkouts and a background job, sending them to {}\n",
        server.url()
    );

    for order in [41, 42, 43] {
        let _ = checkout(order);
    }
    block_on(nightly_report());

    if !agent.flush(Duration::from_secs(10)) {
        eprintln!("the events did not reach the receiver in time");
    }
    let (transactions, spans, errors) = server.with_recorded(|r| {
        let all = |kind| r.events_of(kind).cloned().collect::<Vec<_>>();
        (all("transaction"), all("span"), all("error"))
    });
    for trace in Trace::build(&transactions, &spans, &errors) {
        apm_examples::waterfall::print(&trace);
    }
    let stats = agent.stats();
    println!(
        "{} events sent in {} request(s); {} dropped.",
        stats.events_sent,
        server.with_recorded(|r| r.intake_requests().count()),
        stats.events_dropped_queue_full + stats.events_dropped_send_failed
    );
}
