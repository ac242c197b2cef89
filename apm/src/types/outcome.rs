//! Small value types shared by the public API and the event model.

use std::borrow::Cow;

/// The outcome of a transaction or span, as the Elastic spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// It did what it was asked to.
    Success,
    /// It failed (an `Err`, a panic, a captured error, a 5xx answer).
    Failure,
    /// Not decided (yet). An instrumented function that returns normally ends as success.
    #[default]
    Unknown,
}

impl Outcome {
    /// The word the intake protocol uses: `success`, `failure` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A label value: the intake protocol accepts strings, numbers and booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue {
    /// A string (a keyword, cut to 1024 characters).
    Str(Cow<'static, str>),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
}

impl From<&'static str> for LabelValue {
    fn from(v: &'static str) -> Self {
        LabelValue::Str(Cow::Borrowed(v))
    }
}
impl From<String> for LabelValue {
    fn from(v: String) -> Self {
        LabelValue::Str(Cow::Owned(v))
    }
}
impl From<Cow<'static, str>> for LabelValue {
    fn from(v: Cow<'static, str>) -> Self {
        LabelValue::Str(v)
    }
}
impl From<bool> for LabelValue {
    fn from(v: bool) -> Self {
        LabelValue::Bool(v)
    }
}
macro_rules! number_label {
    ($($t:ty),*) => {$(
        impl From<$t> for LabelValue {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn from(v: $t) -> Self {
                LabelValue::Number(v as f64)
            }
        }
    )*};
}
number_label!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64);

/// Outcome of a returned value, for generated code: `Err` is a failure. Chosen by autoref
/// specialisation so that a non-`Result` type named `Result` still compiles (it counts as
/// success).
pub trait ResultOutcome {
    /// The outcome this value gives the span or transaction that returned it.
    fn __apm_outcome(&self) -> Outcome;
}
impl<T, E> ResultOutcome for ::core::result::Result<T, E> {
    #[inline]
    fn __apm_outcome(&self) -> Outcome {
        match self {
            ::core::result::Result::Ok(_) => Outcome::Success,
            ::core::result::Result::Err(_) => Outcome::Failure,
        }
    }
}
/// Fallback of [`ResultOutcome`] for every other type.
pub trait AnyOutcome {
    /// Always [`Outcome::Success`].
    fn __apm_outcome(&self) -> Outcome;
}
impl<T: ?Sized> AnyOutcome for &T {
    #[inline]
    fn __apm_outcome(&self) -> Outcome {
        Outcome::Success
    }
}
