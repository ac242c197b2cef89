#[apm::span(name = "")]
fn a() {}

#[apm::transaction(kind = "")]
fn b() {}

fn main() {
    a();
    b();
}
