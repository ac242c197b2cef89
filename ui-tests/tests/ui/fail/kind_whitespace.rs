#[apm::span(kind = "db query")]
fn a() {}

#[apm::span(kind = "db", subtype = "postgres ql", action = "\tquery")]
fn b() {}

#[apm::transaction(kind = "web request")]
fn c() {}

fn main() {
    a();
    b();
    c();
}
