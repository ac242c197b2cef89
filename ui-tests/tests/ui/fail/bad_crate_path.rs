#[apm::span(crate = "not a path")]
fn a() {}

fn main() {
    a();
}
