//! Compile tests of `#[apm::span]` and `#[apm::transaction]`.
//!
//! `pass/`: every supported shape of function compiles, runs, and behaves as without the
//! attribute. `fail/`: every error message, with the caret on the user's tokens.
//! Regenerate the `.stderr` snapshots with `TRYBUILD=overwrite cargo test -p apm-ui-tests`
//! (they depend on the rustc version).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
