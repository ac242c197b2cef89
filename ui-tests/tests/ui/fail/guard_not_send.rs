//! Guards stay on the thread that opened them: moving one to another thread is a compile
//! error (carry the context with `apm::Context` instead).
fn main() {
    let t = apm::start_transaction("t", "custom");
    std::thread::spawn(move || drop(t));
    let s = apm::start_span("s", "app");
    std::thread::spawn(move || drop(s));
}
