//! What an instrumented call site describes statically: one `static` per expansion of the
//! macros, so that a span's name and kind cost a pointer and no allocation per call.

/// Static description of one `#[apm::span]` call site.
#[derive(Debug)]
pub struct SpanMeta {
    /// The span's name.
    pub name: &'static str,
    /// The span's type.
    pub kind: &'static str,
    /// The span's subtype.
    pub subtype: ::core::option::Option<&'static str>,
    /// The span's action.
    pub action: ::core::option::Option<&'static str>,
}

/// Static description of one `#[apm::transaction]` call site.
#[derive(Debug)]
pub struct TransactionMeta {
    /// The transaction's name.
    pub name: &'static str,
    /// The transaction's type.
    pub kind: &'static str,
}

/// Where `capture_error!` was written.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// `module_path!()` of the call.
    pub module: &'static str,
    /// `file!()` of the call.
    pub file: &'static str,
    /// `line!()` of the call.
    pub line: u32,
    /// `column!()` of the call.
    pub column: u32,
}

/// The level of a message sent with `capture_message!` (`log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warning`
    Warn,
    /// `error`
    Error,
    /// `fatal`
    Fatal,
}

impl Level {
    /// The level as sent (`log.level`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// Helper of `capture_error!`: turns `&E` (sized error) or `&dyn Error` into a trait object
/// plus the most precise type name available.
pub trait AsDynError<'a> {
    /// The error as a trait object, and its type's name.
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

/// Helper of `capture_error!`: its argument, to find the backtrace it carries. An
/// `anyhow::Error` (feature `anyhow`) has one when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE`
/// asked for it; other errors give none ([`NoBacktrace`]).
#[derive(Debug)]
pub struct Carrier<'a, T: ?Sized>(pub &'a T);

/// The backtrace of an error type that carries one (taken before [`NoBacktrace`], which
/// method lookup reaches only through an added reference).
pub trait CarriedBacktrace<'a> {
    /// The error's backtrace, captured or not.
    fn __apm_backtrace(self) -> Option<&'a ::std::backtrace::Backtrace>;
}

#[cfg(feature = "anyhow")]
impl<'a> CarriedBacktrace<'a> for Carrier<'a, ::anyhow::Error> {
    #[inline]
    fn __apm_backtrace(self) -> Option<&'a ::std::backtrace::Backtrace> {
        Some(self.0.backtrace())
    }
}

#[cfg(feature = "anyhow")]
impl<'a> CarriedBacktrace<'a> for Carrier<'a, &::anyhow::Error> {
    #[inline]
    fn __apm_backtrace(self) -> Option<&'a ::std::backtrace::Backtrace> {
        Some(self.0.backtrace())
    }
}

/// Errors that carry no backtrace the agent can read.
pub trait NoBacktrace {
    /// None.
    fn __apm_backtrace(self) -> Option<&'static ::std::backtrace::Backtrace>;
}

impl<T: ?Sized> NoBacktrace for &Carrier<'_, T> {
    #[inline]
    fn __apm_backtrace(self) -> Option<&'static ::std::backtrace::Backtrace> {
        None
    }
}
