// The path is resolved where the function is written: errors point at the user's path.
#[apm::span(crate = no_such_crate)]
fn a() {}

#[apm::transaction(crate = "also_missing")]
fn b() -> Result<(), ()> {
    Ok(())
}

mod nested {
    use apm as my_apm;
    // Fine: the alias is in scope here.
    #[apm::span(crate = my_apm)]
    pub fn c() {}
}

// Not in scope in the parent module.
#[apm::span(crate = my_apm)]
fn d() {}

fn main() {
    a();
    let _ = b();
    nested::c();
    d();
}
