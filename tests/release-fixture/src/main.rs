//! Built with `--release` and debug info by `tests/tests/release_build.rs`, which runs it
//! against its stand-in APM Server and reads the stack traces of what it sends: a captured
//! error under an inlined call, and a panic on a spawned thread.
//!
//! It prints the source lines the test expects, so that the test does not repeat them.

use std::time::Duration;

const DECLINED_AT: u32 = line!() + 4;
#[inline(never)]
fn charge_card(amount: u32) -> u32 {
    if amount > 100 {
        apm::capture_error!(std::io::Error::other("card declined"));
    }
    amount
}

const CHECKOUT_CALLS_AT: u32 = line!() + 4;
// Inlined into `main` by the optimiser: its frame comes from the debug info's inline records.
#[inline(always)]
fn checkout(amount: u32) -> u32 {
    charge_card(std::hint::black_box(amount)) + std::hint::black_box(1)
}

const PANICS_AT: u32 = line!() + 3;
#[inline(never)]
fn reconcile(entries: &[u32]) -> u32 {
    entries[std::hint::black_box(3)]
}

fn main() {
    let url = std::env::var("ELASTIC_APM_SERVER_URL").expect("ELASTIC_APM_SERVER_URL");
    let agent = apm::init_with(
        apm::Config::builder()
            .service_name("apm-release-fixture")
            .server_url(&url)
            .build(),
    );
    assert!(apm::install_panic_hook());
    println!("DECLINED_AT={DECLINED_AT}");
    println!("CHECKOUT_CALLS_AT={CHECKOUT_CALLS_AT}");
    println!("PANICS_AT={PANICS_AT}");
    {
        let _t = apm::start_transaction("checkout", "request");
        checkout(500);
    }
    let joined = std::thread::spawn(|| {
        let _t = apm::start_transaction("reconcile", "job");
        reconcile(&[1, 2])
    })
    .join();
    assert!(joined.is_err(), "the thread panicked");
    assert!(agent.flush(Duration::from_secs(10)), "the events were sent");
}
