//! Small value types shared by the public API and the event model.

use std::borrow::Cow;

/// The outcome of a transaction or span, as the Elastic spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    Success,
    Failure,
    /// Not decided (yet). An instrumented function that returns normally ends as success.
    #[default]
    Unknown,
}

impl Outcome {
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
    Str(Cow<'static, str>),
    Number(f64),
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
