//! Two services, one trace. `front` (an axum server, in this process) handles
//! `GET /checkout/{id}` by calling `back` (another axum server, in a child process with its own
//! agent) over HTTP with the instrumented reqwest client. Both agents report to the local
//! APM Server (`apm-server-local`), which prints the trace: front's transaction, its HTTP client span, and back's
//! transaction as that span's child.
//!
//! Run it with `cargo run --bin services`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use apm::reqwest::RequestBuilderExt;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;

fn agent(service: &str, receiver: &str) -> apm::Agent {
    apm::init_with(
        apm::Config::builder()
            .service_name(service)
            .server_url(receiver)
            .metrics_interval(Duration::ZERO)
            .central_config(false)
            .build(),
    )
}

/// Binds 127.0.0.1:0 and serves `app` with the agent's layer.
async fn serve(app: Router) -> SocketAddr {
    let app = app.layer(apm::tower::ApmLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .ok();
    });
    addr
}

// ---- back: stock levels ----

#[apm::span(kind = "db", subtype = "postgresql", action = "query")]
async fn stock_level(id: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(3)).await;
    id * 7 % 13
}

async fn stock(Path(id): Path<u32>) -> String {
    stock_level(id).await.to_string()
}

/// The child process: serves until its stdin closes, then flushes and exits.
fn run_back(receiver: &str) {
    let agent = agent("back", receiver);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let addr = runtime.block_on(serve(Router::new().route("/stock/{id}", get(stock))));
    println!("listening {addr}");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
    agent.flush(Duration::from_secs(5));
}

// ---- front: checkout ----

#[derive(Clone)]
struct Back {
    client: reqwest::Client,
    url: String,
}

async fn checkout(State(back): State<Back>, Path(id): Path<u32>) -> String {
    let stock = back
        .client
        .get(format!("{}/stock/{id}", back.url))
        .send_traced()
        .await;
    match stock {
        Ok(resp) => format!(
            "order {id}: stock {}",
            resp.text().await.unwrap_or_default()
        ),
        Err(e) => format!("order {id}: stock unknown ({e})"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("back") {
        run_back(&args.next().unwrap_or_default());
        return;
    }

    let receiver = apm_examples::receiver();
    let exe = std::env::current_exe().expect("the example's own path");
    let mut back_process = Command::new(exe)
        .arg("back")
        .arg(receiver.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the back service");
    let mut announced = String::new();
    if let Some(out) = back_process.stdout.take() {
        BufReader::new(out).read_line(&mut announced).ok();
    }
    let back_addr = announced.trim().trim_start_matches("listening ").to_owned();
    println!("back service listening on {back_addr} (its own process and agent)");

    let agent = agent("front", &receiver.url());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let back = Back {
        client: reqwest::Client::new(),
        url: format!("http://{back_addr}"),
    };
    let front_addr = runtime.block_on(serve(
        Router::new()
            .route("/checkout/{id}", get(checkout))
            .with_state(back),
    ));
    println!("front service listening on {front_addr}\n");

    for id in [3, 4] {
        let body = runtime.block_on(async {
            reqwest::get(format!("http://{front_addr}/checkout/{id}"))
                .await?
                .text()
                .await
        });
        println!(
            "GET /checkout/{id} -> {}",
            body.unwrap_or_else(|e| e.to_string())
        );
    }
    println!();

    agent.flush(Duration::from_secs(5));
    // Closing its stdin makes the back service flush and exit.
    drop(back_process.stdin.take());
    back_process.wait().ok();

    apm_examples::finish(&receiver);
}
