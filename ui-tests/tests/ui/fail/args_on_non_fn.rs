#[apm::span(name = "s", kind = "db", subtype = "postgresql")]
struct S;

// Both the argument error and the item error are reported.
#[apm::transaction(name = "")]
enum E {}

fn main() {
    let _ = S;
}
