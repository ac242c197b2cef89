// `#[must_use]` survives the expansion: the unused result is reported.
#![deny(unused_must_use)]

#[apm::span]
#[must_use]
fn important() -> u8 {
    1
}

#[apm::transaction]
fn fallible() -> Result<(), String> {
    Ok(())
}

fn main() {
    important();
    fallible();
}
