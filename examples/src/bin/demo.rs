//! The demo: an instrumented "shop" service records a few requests; its events travel through
//! the agent's real transport (NDJSON, HTTP) to the local APM Server (`apm-server-local`)
//! running in this process, and every received trace is printed as a waterfall. The shop keeps its carts and orders in
//! a real SQLite database (bundled, in memory), queried through `apm::rusqlite`, so the
//! database spans are real statements.
//!
//! Run it with `cargo run --bin demo`.

use std::fmt;
use std::thread;
use std::time::Duration;

use apm::rusqlite::Connection;
use std::sync::atomic::Ordering;

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

/// The shop's database: products, the items of each cart, and the orders placed.
fn open_shop() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(
        "CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT, stock INTEGER);
         CREATE TABLE cart_item (order_id INTEGER, product_id INTEGER);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER);
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
         INSERT INTO product SELECT i, 'product ' || i, 100 FROM n;",
    )?;
    // Carts of 2 to 5 items.
    for order in [41u32, 42, 43] {
        for item in 0..order % 4 + 2 {
            conn.execute(
                "INSERT INTO cart_item (order_id, product_id) VALUES (?1, ?2)",
                (order, item),
            )?;
        }
    }
    Ok(conn)
}

/// One exit span `SELECT FROM cart_item` (db/sqlite/query), lasting while the rows are read.
fn load_cart(db: &Connection, order: u32) -> rusqlite::Result<Vec<u32>> {
    let mut stmt = db.prepare(
        "SELECT p.id FROM cart_item c JOIN product p ON p.id = c.product_id \
         WHERE c.order_id = ?1 ORDER BY p.id",
    )?;
    let items = stmt.query_map([order], |r| r.get(0))?.collect();
    items
}

/// `BEGIN`, one `UPDATE product` per item, `INSERT INTO orders` and `COMMIT`, each a span.
#[apm::span]
fn place_order(db: &mut Connection, order: u32, items: &[u32], total: u32) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    for item in items {
        tx.execute("UPDATE product SET stock = stock - 1 WHERE id = ?1", [item])?;
    }
    tx.execute(
        "INSERT INTO orders (id, total) VALUES (?1, ?2)",
        (order, total),
    )?;
    tx.commit()
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
fn checkout(db: &mut Connection, order: u32) -> Result<u32, Box<dyn std::error::Error>> {
    apm::set_label("order_id", order);
    let items = load_cart(db, order)?;
    let total = price_items(&items);
    if let Err(e) = charge_card(order, total) {
        apm::capture_error!(e);
        apm::set_transaction_result("HTTP 4xx");
        return Err("declined".into());
    }
    place_order(db, order, &items, total)?;
    apm::set_transaction_result("HTTP 2xx");
    Ok(total)
}

#[apm::transaction(kind = "scheduled")]
async fn nightly_report(db: &Connection) {
    let revenue = summarise(db).await;
    apm::set_label("revenue", revenue);
}

#[apm::span]
async fn summarise(db: &Connection) -> i64 {
    // A full scan of the products, and the orders' total.
    let _ = db.query_row("SELECT count(*) FROM product WHERE stock < 100", [], |r| {
        r.get::<_, i64>(0)
    });
    db.query_row("SELECT coalesce(sum(total), 0) FROM orders", [], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

fn main() {
    let server = apm_examples::receiver();
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

    let mut db = match open_shop() {
        Ok(db) => db,
        Err(e) => {
            eprintln!("could not create the shop's SQLite database: {e}");
            std::process::exit(1);
        }
    };
    for order in [41, 42, 43] {
        let _ = checkout(&mut db, order);
    }
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt.block_on(nightly_report(&db)),
        Err(e) => eprintln!("no runtime for the nightly report: {e}"),
    }

    if !agent.flush(Duration::from_secs(10)) {
        eprintln!("the events did not reach the receiver in time");
    }
    apm_examples::finish(&server);
    let stats = agent.stats();
    println!(
        "{} events sent in {} request(s); {} dropped.",
        stats.events_sent,
        server.stats().intake_requests.load(Ordering::Relaxed),
        stats.events_dropped_queue_full + stats.events_dropped_send_failed
    );
}
