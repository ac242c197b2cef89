#[apm::span(name = "a" kind = "b")]
fn a() {}

#[apm::span("positional")]
fn b() {}

fn main() {
    a();
    b();
}
