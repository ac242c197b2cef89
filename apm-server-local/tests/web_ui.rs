//! The web page in headless Chromium (Debian's `chromium`, installed by .ci/run): the DOM
//! lists a known transaction and shows its spans' details and its error, and a screenshot of
//! the page has the trace's waterfall bars in the outcome's colour. Skipped when Chromium is
//! missing (a failure under `CI=true`).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::T;

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
