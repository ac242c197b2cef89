#[apm::span(name)]
fn a() {}

#[apm::transaction(crate)]
fn b() {}

fn main() {
    a();
    b();
}
