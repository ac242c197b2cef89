//! Stack traces from an optimised build: the users' production builds are `--release`, where
//! calls are inlined and frames are found through unwind tables and debug info rather than
//! frame pointers. `apm-release-fixture` is built here with `--release` and `debug = "limited"`, run
//! against the stand-in APM Server, and the frames of the error and the panic it sends must
//! name its functions and lines as a debug build's do (`errors.rs`, `panics.rs`).
//!
//! The build goes to a target directory of its own, kept between runs, so that this test never
//! waits on the lock of the build that runs it.

mod common;

use std::collections::HashMap;
use std::process::Command;

use apm_tests::MockServer;

fn build_fixture() -> std::path::PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("release-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "apm-release-fixture",
            "--target-dir",
        ])
        .arg(&target)
        // What the README recommends for release builds.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "limited")
        // The attribute macros run at build time only: unoptimised, they build much faster.
        .env("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_OPT_LEVEL", "0")
        .env("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_DEBUG", "false")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the fixture builds in release mode");
    target.join("release").join("apm-release-fixture")
}

fn frames_of(e: &serde_json::Value) -> &Vec<serde_json::Value> {
    e["exception"]["stacktrace"]
        .as_array()
        .expect("a stack trace")
}

fn functions(e: &serde_json::Value) -> Vec<&str> {
    frames_of(e)
        .iter()
        .map(|f| f["function"].as_str().unwrap_or(""))
        .collect()
}

#[test]
fn a_release_build_names_its_frames() {
    let binary = build_fixture();
    let server = MockServer::start();
    let out = Command::new(&binary)
        .env("ELASTIC_APM_SERVER_URL", server.url())
        .output()
        .expect("the fixture runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the fixture ran: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: HashMap<&str, u64> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.parse().expect("a line number")))
        .collect();
    let errors: Vec<serde_json::Value> =
        server.with_recorded(|r| r.events_of("error").cloned().collect());
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let captured = errors
        .iter()
        .find(|e| e["exception"]["message"] == "card declined")
        .expect("the captured error");
    let names = functions(captured);
    let frames = frames_of(captured);
    assert_eq!(names[0], "apm_release_fixture::charge_card", "{names:?}");
    assert_eq!(frames[0]["lineno"], lines["DECLINED_AT"], "{frames:#?}");
    // `checkout` has no machine frame of its own: it is inlined into `main`.
    assert_eq!(names[1], "apm_release_fixture::checkout", "{names:?}");
    assert_eq!(
        frames[1]["lineno"], lines["CHECKOUT_CALLS_AT"],
        "{frames:#?}"
    );
    assert_eq!(names[2], "apm_release_fixture::main", "{names:?}");
    for frame in &frames[..3] {
        assert_eq!(frame["library_frame"], false, "{frame:#}");
        assert_eq!(frame["module"], "apm_release_fixture", "{frame:#}");
        assert!(frame["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("src/main.rs")));
    }
    assert!(
        names.iter().all(|n| !n.starts_with("apm::")),
        "the agent's own frames are left out: {names:?}"
    );
    // Below `main`: the runtime's frames, std's or core's, told apart as library frames.
    let runtime_frame = &frames.get(3).unwrap_or_else(|| panic!("{frames:#?}"));
    assert!(
        runtime_frame["function"]
            .as_str()
            .is_some_and(|n| n.starts_with("std::") || n.starts_with("core::")),
        "{frames:#?}"
    );
    assert_eq!(runtime_frame["library_frame"], true);
    assert_eq!(captured["culprit"], "apm_release_fixture::charge_card");

    let panic = errors
        .iter()
        .find(|e| e["exception"]["handled"] == false)
        .expect("the panic's error");
    let frames = frames_of(panic);
    let first_app = frames
        .iter()
        .find(|f| f["library_frame"] == false)
        .expect("an application frame");
    assert_eq!(
        first_app["function"], "apm_release_fixture::reconcile",
        "{frames:#?}"
    );
    assert_eq!(first_app["lineno"], lines["PANICS_AT"]);
    assert!(
        functions(panic)
            .iter()
            .all(|n| !n.starts_with("std::panicking") && !n.starts_with("apm::")),
        "std's panic machinery and the hook are left out: {frames:#?}"
    );
    assert_eq!(panic["transaction"]["name"], "reconcile");
    common::validate_all(&server);
}
