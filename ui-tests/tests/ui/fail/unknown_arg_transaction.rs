// `subtype` and `action` exist for spans only.
#[apm::transaction(subtype = "postgresql")]
fn f() {}

fn main() {
    f();
}
