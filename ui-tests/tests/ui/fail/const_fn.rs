#[apm::span]
const fn answer() -> u8 {
    42
}

#[apm::transaction]
pub const unsafe fn unsafe_answer() -> u8 {
    42
}

fn main() {
    // The function is kept: no "cannot find function" error here.
    let _ = answer();
}
