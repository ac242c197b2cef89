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
    /// All four texts go into JSON as they are: no character to escape, none too long.
    #[doc(hidden)]
    pub plain: bool,
}

impl SpanMeta {
    /// The description of a call site; the macros make it in a `static`, so that whether its
    /// texts need escaping is worked out when the program is compiled, not per span sent.
    pub const fn new(
        name: &'static str,
        kind: &'static str,
        subtype: ::core::option::Option<&'static str>,
        action: ::core::option::Option<&'static str>,
    ) -> SpanMeta {
        SpanMeta {
            name,
            kind,
            subtype,
            action,
            plain: plain(name) && plain(kind) && plain_or_none(subtype) && plain_or_none(action),
        }
    }
}

/// Static description of one `#[apm::transaction]` call site.
#[derive(Debug)]
pub struct TransactionMeta {
    /// The transaction's name.
    pub name: &'static str,
    /// The transaction's type.
    pub kind: &'static str,
    /// Both texts go into JSON as they are (see [`SpanMeta::plain`]).
    #[doc(hidden)]
    pub plain: bool,
}

impl TransactionMeta {
    /// The description of a call site (see [`SpanMeta::new`]).
    pub const fn new(name: &'static str, kind: &'static str) -> TransactionMeta {
        TransactionMeta {
            name,
            kind,
            plain: plain(name) && plain(kind),
        }
    }
}

/// The keyword limit of the intake (1 024 characters), in bytes: a text of no more bytes has
/// no more characters.
pub(crate) const PLAIN_MAX_BYTES: usize = 1024;

/// Whether `text` goes into a JSON string as it is: within the keyword limit, and without a
/// quote, a backslash or a control character.
const fn plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() > PLAIN_MAX_BYTES {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if needs_json_escape(bytes[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// A quote, a backslash or a control character: what a JSON string cannot hold as it is (the
/// one definition, for the check made while compiling and for the transport's escaping).
#[inline]
pub(crate) const fn needs_json_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const fn plain_or_none(text: ::core::option::Option<&str>) -> bool {
    match text {
        Some(t) => plain(t),
        None => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_site_is_plain_only_when_none_of_its_texts_needs_escaping_or_cutting() {
        // Worked out when compiled.
        const { assert!(SpanMeta::new("orders::load", "db", Some("postgresql"), None).plain) };
        assert!(SpanMeta::new("é ✓ 🦀 <a href='x'>", "app", None, Some("query")).plain);
        for (name, subtype, action) in [
            ("say \"hi\"", None, None),
            ("back\\slash", None, None),
            ("new\nline", None, None),
            ("ok", Some("tab\there"), None),
            ("ok", None, Some("\u{1f}")),
        ] {
            assert!(
                !SpanMeta::new(name, "app", subtype, action).plain,
                "{name:?}"
            );
        }
        let long: &'static str = Box::leak("x".repeat(PLAIN_MAX_BYTES + 1).into_boxed_str());
        assert!(!SpanMeta::new(long, "app", None, None).plain);
        assert!(SpanMeta::new(&long[1..], "app", None, None).plain);
        assert!(TransactionMeta::new("GET /", "request").plain);
        assert!(!TransactionMeta::new("GET /", "re\"quest").plain);
    }
}
