#[apm::span(name = "a", kind = "db", name = "b")]
fn f() {}

#[apm::transaction(crate = apm, crate = "apm")]
fn g() {}

fn main() {
    f();
    g();
}
