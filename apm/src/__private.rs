//! Everything generated code touches, and nothing else. Not public API: no stability promise.
//!
//! The attribute macros expand to calls of this module only, through absolute paths
//! (`::apm::__private::…`, or `<crate = path>::__private::…`).

pub use crate::outcome::Outcome;

/// Static description of one `#[apm::span]` call site (one `static` per expansion: no
/// allocation per call).
#[derive(Debug)]
pub struct SpanMeta {
    pub name: &'static str,
    pub kind: &'static str,
    pub subtype: ::core::option::Option<&'static str>,
    pub action: ::core::option::Option<&'static str>,
}

/// Static description of one `#[apm::transaction]` call site.
#[derive(Debug)]
pub struct TransactionMeta {
    pub name: &'static str,
    pub kind: &'static str,
}

#[cfg(feature = "enable")]
pub use crate::imp::private::*;

/// Entry points of the benchmarks into the agent's internals.
#[cfg(feature = "enable")]
pub mod bench {
    /// Serialises `count` span events as the transport does (gzip when `compress`): the time
    /// it took and the bytes produced.
    pub fn encode_spans(count: usize, compress: bool) -> (::std::time::Duration, usize) {
        crate::transport::encode_spans(count, compress)
    }
}

/// Outcome of a returned value: `Err` is a failure. Chosen by autoref specialisation so that a
/// non-`Result` type named `Result` still compiles (it counts as success).
pub trait ResultOutcome {
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
    fn __apm_outcome(&self) -> Outcome;
}
impl<T: ?Sized> AnyOutcome for &T {
    #[inline]
    fn __apm_outcome(&self) -> Outcome {
        Outcome::Success
    }
}

/// Helper of `capture_error!`: turns `&E` (sized error) or `&dyn Error` into a trait object
/// plus the most precise type name available.
pub trait AsDynError<'a> {
    fn __apm_as_dyn_error(&self) -> (&(dyn ::std::error::Error + 'a), &'static str);
}
impl<'a, E: ::std::error::Error + 'a> AsDynError<'a> for E {
    #[inline]
    fn __apm_as_dyn_error(&self) -> (&(dyn ::std::error::Error + 'a), &'static str) {
        (self, ::core::any::type_name::<E>())
    }
}
impl<'a> AsDynError<'a> for dyn ::std::error::Error + 'a {
    #[inline]
    fn __apm_as_dyn_error(&self) -> (&(dyn ::std::error::Error + 'a), &'static str) {
        (self, "dyn std::error::Error")
    }
}
impl<'a> AsDynError<'a> for dyn ::std::error::Error + Send + 'a {
    #[inline]
    fn __apm_as_dyn_error(&self) -> (&(dyn ::std::error::Error + 'a), &'static str) {
        (self, "dyn std::error::Error")
    }
}
impl<'a> AsDynError<'a> for dyn ::std::error::Error + Send + Sync + 'a {
    #[inline]
    fn __apm_as_dyn_error(&self) -> (&(dyn ::std::error::Error + 'a), &'static str) {
        (self, "dyn std::error::Error")
    }
}

/// Where `capture_error!` was written.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub module: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
}
