//! The web page in headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! .ci/run): the DOM lists a known transaction and shows its spans' details and its error, a
//! screenshot of the page has the trace's waterfall bars in the outcome's colour, and a page
//! already open shows a trace that arrives later (driven through chromedriver). Skipped when
//! Chromium is missing (a failure under `CI=true`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::T;
use serde_json::{json, Value};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn run(browser: &str, profile: &Path, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apm-server-local-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_page_lists_traces_and_shows_a_waterfall() {
    let Some(browser) = chromium() else {
        common::skip("Chromium is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let server = common::server(|_| {});
    let trace_id = common::record_known_trace(&server, "GET /ui-check/{id}");
    assert!(server.wait_for_events(4, T));
    let profile = temp_dir("chromium-profile");
    let ui = format!("{}/ui", server.url());

    let list = run(browser, &profile, &["--dump-dom", &ui]);
    assert!(list.contains("GET /ui-check/{id}"), "trace list:\n{list}");
    assert!(list.contains(">shop<"), "service column:\n{list}");

    let detail = run(
        browser,
        &profile,
        &["--dump-dom", &format!("{ui}#{trace_id}")],
    );
    for shown in [
        "SELECT FROM users (db/sqlite/query)",
        "SELECT name FROM users WHERE id = 7",
        "http://pricing.local/items/7",
        "region=eu-west",
        "disk on fire",
    ] {
        assert!(
            detail.contains(shown),
            "no {shown:?} in the trace view:\n{detail}"
        );
    }
    assert!(detail.contains("class=\"stack\""), "stack trace:\n{detail}");

    let shot = profile.join("ui.png");
    run(
        browser,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("{ui}#{trace_id}"),
        ],
    );
    let (width, height, pixels) = decode_png(&shot);
    assert_eq!((width, height), (1280, 800));
    let count = |rgb: [u8; 3]| {
        pixels
            .iter()
            .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8))
            .count()
    };
    // The header's background, and the root's bar in the failure colour (#cf222e), a solid
    // rectangle of at least a few hundred pixels.
    assert!(
        count([0x1d, 0x2b, 0x3a]) > 10_000,
        "no header in the screenshot"
    );
    assert!(
        count([0xcf, 0x22, 0x2e]) > 300,
        "no failure bar in the screenshot"
    );
    // The successful spans' bars (#1a7f37).
    assert!(
        count([0x1a, 0x7f, 0x37]) > 20,
        "no success bar in the screenshot"
    );
    let _ = std::fs::remove_dir_all(&profile);
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits for its "started" line.
    fn start() -> Option<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut out = BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            if out.read_line(&mut line).ok()? == 0 {
                let _ = child.kill();
                return None;
            }
        }
        std::thread::spawn(move || for _ in out.lines() {});
        Some(Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let r = common::send(self.addr, raw.as_bytes());
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }
}

#[test]
fn an_open_page_shows_a_trace_that_arrives_later() {
    let Some(browser) = chromium() else {
        common::skip("Chromium is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let Some(driver) = Driver::start() else {
        common::skip("chromedriver is not installed (apt-get install chromium-driver)");
        return;
    };
    let server = common::server(|_| {});
    let binary = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(browser))
        .find(|p| p.is_file())
        .expect("the browser found above is on PATH");
    let session = driver.call(
        "POST",
        "/session",
        Some(
            json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "binary": binary.display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            }}}}),
        ),
    );
    let id = session["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let s = format!("/session/{id}");
    driver.call(
        "POST",
        &format!("{s}/timeouts"),
        Some(json!({"script": T.as_millis() as u64})),
    );
    driver.call(
        "POST",
        &format!("{s}/url"),
        Some(json!({"url": format!("{}/ui", server.url())})),
    );
    let rows = driver.call(
        "POST",
        &format!("{s}/execute/sync"),
        Some(
            json!({"script": "return document.querySelectorAll('#traces tr').length", "args": []}),
        ),
    );
    assert_eq!(rows, 0, "no trace yet");

    common::record_known_trace(&server, "GET /arrived-later");
    // Resolves when the list shows the name: the page's own polling brings it, no reload.
    let shown = driver.call(
        "POST",
        &format!("{s}/execute/async"),
        Some(json!({"args": ["GET /arrived-later"], "script": "
            const [name, done] = arguments;
            const list = document.getElementById('traces');
            const check = () => list.textContent.includes(name);
            if (check()) return done(true);
            new MutationObserver((_, o) => { if (check()) { o.disconnect(); done(true); } })
                .observe(list, { childList: true, subtree: true, characterData: true });
        "})),
    );
    assert_eq!(shown, true);
    driver.call("DELETE", &s, None);
}

/// Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium
/// writes).
fn decode_png(path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let data = std::fs::read(path).expect("screenshot");
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("len")) as usize;
        let kind = &data[at + 4..at + 8];
        let body = &data[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().expect("w")) as usize;
                height = u32::from_be_bytes(body[4..8].try_into().expect("h")) as usize;
                assert_eq!((body[8], body[12]), (8, 0), "8-bit, not interlaced");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("PNG colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(body),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate");
    let stride = width * channels;
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for row in raw.chunks(stride + 1).take(height) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                other => panic!("PNG filter {other}"),
            };
            cur[i] = line[i].wrapping_add(predicted);
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (width, height, pixels)
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}
