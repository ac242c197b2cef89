//! A span guard stays on the thread that opened it, like a transaction guard
//! (`guard_not_send.rs`): moving one to another thread is a compile error.
fn main() {
    let _t = apm::start_transaction("t", "custom");
    let s = apm::start_span("s", "app");
    std::thread::spawn(move || drop(s));
}
