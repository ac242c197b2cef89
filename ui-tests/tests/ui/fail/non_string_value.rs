const NAME: &str = "n";

#[apm::span(name = NAME)]
fn a() {}

#[apm::span(kind = 42)]
fn b() {}

#[apm::transaction(name = concat!("a", "b"))]
fn c() {}

#[apm::span(crate = 1)]
fn d() {}

fn main() {
    a();
    b();
    c();
    d();
}
