#[apm::span]
struct S;

#[apm::transaction]
impl S {
    fn f(&self) {}
}

/// Docs and visibility come before the keyword the caret points at.
#[apm::span]
pub(crate) mod m {}

#[apm::span]
static X: u8 = 0;

fn main() {
    // Items are kept: they are still usable.
    S.f();
    let _ = X;
}
