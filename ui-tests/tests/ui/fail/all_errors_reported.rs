// Every argument error is reported in one go, together with the item's own error.
#[apm::span(name = "", kind = "a b", name = "x", foo, action = 1)]
const fn f() {}

fn main() {
    f();
}
