//! Requests to the APM Server through an HTTP proxy named by the environment (`http_proxy`,
//! `https_proxy`): plain ones name the whole URL, `https` ones go through a `CONNECT` tunnel.
//! The APM Server's name, `apm.invalid`, resolves nowhere: only the proxy can reach it.
//!
//! One test in its own binary: it sets environment variables, which no other thread of the
//! process may read meanwhile.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apm_tests::MockServer;
use common::agent::{self, record};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tls/localhost.pem");
const KEY: &[u8] = include_bytes!("../tls/localhost.key");

/// A `CONNECT` proxy on 127.0.0.1 that sends every tunnel to 127.0.0.1 (whatever host it is
/// asked for) and keeps the request heads it received.
struct TunnelProxy {
    port: u16,
    heads: Arc<Mutex<Vec<Vec<String>>>>,
}

impl TunnelProxy {
    fn start() -> TunnelProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || tunnel(conn, &seen));
            }
        });
        TunnelProxy { port, heads }
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<Vec<String>>>) {
    let mut reader = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.trim_end().is_empty() {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let port = head[0]
        .split_whitespace()
        .nth(1)
        .and_then(|to| to.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    seen.lock().expect("not poisoned").push(head);
    let Some(port) = port else { return };
    let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let mut client = reader.into_inner();
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut client_in, mut server_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let (mut server_in, mut client_out) = (server, client);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server_in, &mut client_out);
    let _ = client_out.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

fn set_proxy_env(vars: &[(&str, Option<&str>)]) {
    for (name, value) in vars {
        // Changing the environment races with threads reading it: this binary's only test
        // runs alone, and no agent runs while the variables change.
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

#[test]
fn requests_go_through_the_proxy_the_environment_names() {
    const NO_PROXY: [(&str, Option<&str>); 2] = [("no_proxy", None), ("NO_PROXY", None)];

    // Plain HTTP: the mock APM Server stands in for a forward proxy; the absolute URL it is
    // sent names the unreachable server.
    let server = MockServer::start();
    let proxy = server.url();
    set_proxy_env(&NO_PROXY);
    set_proxy_env(&[("http_proxy", Some(&proxy)), ("HTTP_PROXY", None)]);
    let h = agent::start_with(server, |c| c.server_url("http://apm.invalid:8200"));
    record(2);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 2);
    let intake = h
        .server
        .requests()
        .into_iter()
        .find(|r| r.path == apm_tests::INTAKE_PATH)
        .expect("an intake request");
    assert_eq!(intake.header("host"), Some("apm.invalid:8200"));
    h.finish();
    set_proxy_env(&[("http_proxy", None)]);

    // HTTPS: a tunnel through the proxy, with credentials, to the mock APM Server behind TLS.
    let cert = std::fs::read(CERT).expect("tests/tls/localhost.pem");
    let server = MockServer::start_tls(&cert, KEY);
    let url = format!("https://apm.invalid:{}", server.addr().port());
    let tunnels = TunnelProxy::start();
    let proxy = format!("http://user:secret@127.0.0.1:{}", tunnels.port);
    set_proxy_env(&[("https_proxy", Some(&proxy)), ("HTTPS_PROXY", None)]);
    let h = agent::start_with(server, |c| c.server_url(url).server_ca_cert_file(CERT));
    record(3);
    assert!(h.agent().flush(Duration::from_secs(10)));
    assert_eq!(h.server.transactions().len(), 3);
    h.finish();
    set_proxy_env(&[("https_proxy", None)]);

    let heads = tunnels.heads.lock().expect("not poisoned").clone();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(
            head[0].starts_with("CONNECT apm.invalid:") && head[0].ends_with(" HTTP/1.1"),
            "{head:?}"
        );
        // user:secret
        assert!(
            head.contains(&"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=".to_owned()),
            "{head:?}"
        );
    }
}
