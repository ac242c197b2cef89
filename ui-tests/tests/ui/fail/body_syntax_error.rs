// rustc reports the user's own syntax error, and nothing from the macro.
#[apm::span]
fn f() -> u8 {
    let x = ;
    x
}

#[apm::span]
fn g() -> Result<u8, ()> {
    Ok(1 +)
}

fn main() {
    let _ = f();
    let _ = g();
}
