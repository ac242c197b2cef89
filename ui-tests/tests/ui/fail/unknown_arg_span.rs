#[apm::span(name = "x", foo = "bar")]
fn f() {}

fn main() {
    f();
}
