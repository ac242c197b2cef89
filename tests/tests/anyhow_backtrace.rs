//! `capture_error!` of an `anyhow::Error` (feature `anyhow`): the backtrace anyhow captured
//! where the error arose replaces the stack of the call. A file of its own: anyhow reads
//! `RUST_LIB_BACKTRACE` once per process.

mod common;

use common::agent;

#[inline(never)]
fn load_settings() -> anyhow::Result<u32> {
    let n: u32 = "eleven".parse()?;
    Ok(n)
}

#[inline(never)]
fn report(e: &anyhow::Error) {
    apm::capture_error!(e);
}

#[test]
fn an_anyhow_error_is_sent_with_the_backtrace_it_carries() {
    // Before any anyhow error is made: anyhow reads it once.
    std::env::set_var("RUST_LIB_BACKTRACE", "1");
    let h = agent::start(|c| c);
    let err = load_settings().expect_err("not a number");
    assert_eq!(
        err.backtrace().status(),
        std::backtrace::BacktraceStatus::Captured
    );
    report(&err);
    // By value too.
    apm::capture_error!(anyhow::anyhow!("by value"));
    h.flush();
    let errors = h.errors();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let ex = &errors[0]["exception"];
    assert_eq!(ex["message"], "invalid digit found in string");
    let functions: Vec<&str> = ex["stacktrace"]
        .as_array()
        .expect("a stack trace")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or(""))
        .collect();
    // Where the error arose, not where it was captured: the backtrace's first frame outside
    // anyhow and std is the function that made it.
    assert_eq!(
        functions.first().copied(),
        Some("anyhow_backtrace::load_settings"),
        "{functions:#?}"
    );
    assert!(
        !functions.iter().any(|f| f.contains("report")),
        "{functions:#?}"
    );
    assert!(
        functions
            .iter()
            .any(|f| f.contains("an_anyhow_error_is_sent_with_the_backtrace_it_carries")),
        "{functions:#?}"
    );
    let top = &ex["stacktrace"][0];
    assert!(top["filename"]
        .as_str()
        .unwrap_or("")
        .ends_with("anyhow_backtrace.rs"));
    assert_eq!(top["library_frame"], false);
    assert_eq!(errors[1]["exception"]["message"], "by value");
    assert_eq!(
        errors[1]["exception"]["stacktrace"][0]["function"],
        "anyhow_backtrace::an_anyhow_error_is_sent_with_the_backtrace_it_carries"
    );
    h.finish();
}
