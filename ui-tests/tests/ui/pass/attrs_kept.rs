//! Outer attributes (docs, `#[must_use]`, `#[inline]`, `cfg`, lint levels), inner attributes
//! and visibility survive the expansion.
#![deny(warnings, missing_docs)]

/// Documented: `missing_docs` is denied, so the doc comment must be kept.
#[must_use]
#[inline]
#[apm::span]
pub fn documented() -> u8 {
    1
}

/// Inner attributes stay at the top of the body, where they still apply.
#[apm::span]
pub fn inner_attrs() -> u8 {
    #![allow(unused_variables)]
    let unused = 5;
    2
}

/// Same, through the `Result` closure.
#[apm::span]
pub fn inner_attrs_result() -> Result<u8, ()> {
    #![allow(unused_variables, clippy::needless_question_mark)]
    let unused = 5;
    Ok(Ok::<u8, ()>(3)?)
}

/// A function removed by `cfg` is removed: its duplicate below is the one compiled.
#[cfg(any())]
#[apm::span]
pub fn configured() -> u8 {
    0
}

/// The kept one.
#[cfg(all())]
#[apm::span]
pub fn configured() -> u8 {
    4
}

/// `cfg_attr` and lint attributes on the function.
#[cfg_attr(all(), inline(never))]
#[allow(clippy::let_and_return)]
#[apm::transaction]
pub(crate) fn crate_visible() -> u8 {
    let x = 5;
    x
}

mod private {
    /// Visibility restricted to the parent module.
    #[apm::span]
    pub(super) fn restricted() -> u8 {
        6
    }
}

/// Attribute order: ours first, then others.
#[apm::span]
#[must_use = "keep it"]
#[track_caller]
pub fn ours_first() -> u8 {
    7
}

fn main() {
    assert_eq!(documented(), 1);
    assert_eq!(inner_attrs(), 2);
    assert_eq!(inner_attrs_result(), Ok(3));
    assert_eq!(configured(), 4);
    assert_eq!(crate_visible(), 5);
    assert_eq!(private::restricted(), 6);
    assert_eq!(ours_first(), 7);
}
