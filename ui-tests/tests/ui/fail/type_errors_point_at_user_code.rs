// Type errors in the body point at the user's tokens, as without the attribute.
#[apm::span]
fn wrong_tail() -> u8 {
    "not a u8"
}

#[apm::span]
fn wrong_result() -> Result<u8, String> {
    Ok("not a u8")
}

#[apm::span]
fn wrong_question_mark() -> Result<u8, String> {
    let n: u8 = "1".parse()?;
    Ok(n)
}

#[apm::span]
async fn wrong_async() -> u8 {
    "not a u8"
}

fn main() {
    let _ = wrong_tail();
    let _ = wrong_result();
    let _ = wrong_question_mark();
    let _ = wrong_async();
}
