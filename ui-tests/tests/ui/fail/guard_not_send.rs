//! Guards stay on the thread that opened them: moving one to another thread is a compile
//! error (carry the context with `apm::Context` instead). A transaction guard here; a span
//! guard in `span_guard_not_send.rs` (rustc reports one such error per type).
fn main() {
    let t = apm::start_transaction("t", "custom");
    std::thread::spawn(move || drop(t));
}
