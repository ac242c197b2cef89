//! Arguments of `#[apm::span(..)]` and `#[apm::transaction(..)]`.
//!
//! Parsing is split in two steps. The syntax (`key = value, ...`) is parsed with `syn`; a syntax
//! error stops there. Every argument is then checked on its own and every problem is recorded
//! in a [`Ctxt`], so that the user sees all of them at once, each spanned at the offending
//! tokens.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

/// Argument names, in the order the error messages list them.
pub(crate) const NAME: &str = "name";
pub(crate) const KIND: &str = "kind";
pub(crate) const SUBTYPE: &str = "subtype";
pub(crate) const ACTION: &str = "action";
pub(crate) const CRATE: &str = "crate";
pub(crate) const HEADERS: &str = "headers";

/// Default `kind` of both macros. The Elastic agent spec (elastic/apm
/// `specs/agents/tracing-spans.md`, "Transaction and Span type and subtype fields"): "If no
/// `transaction.type` or `span.type` is provided or the value is an empty string, the agent
/// needs to set a default value `custom`." `custom` is also the span type that
/// `span_types.json` describes as "API custom instrumentation" (`app` is for spans created by
/// an agent's own in-process instrumentation, with subtypes such as `internal`/`inferred`).
pub(crate) const DEFAULT_KIND: &str = "custom";

/// Which attribute is being expanded: only used to word messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Macro {
    Span,
    Transaction,
}

impl Macro {
    /// The path users write, for messages: `apm::span`.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Macro::Span => "apm::span",
            Macro::Transaction => "apm::transaction",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Macro::Span => &[NAME, KIND, SUBTYPE, ACTION, CRATE],
            Macro::Transaction => &[NAME, KIND, HEADERS, CRATE],
        }
    }
}

/// Arguments of `#[apm::span]`. `None` means "not given": defaults are applied in `expand`.
#[derive(Default)]
pub(crate) struct SpanArgs {
    pub name: Option<LitStr>,
    pub kind: Option<LitStr>,
    pub subtype: Option<LitStr>,
    pub action: Option<LitStr>,
    pub krate: Option<Path>,
}

/// Arguments of `#[apm::transaction]`.
#[derive(Default)]
pub(crate) struct TransactionArgs {
    pub name: Option<LitStr>,
    pub kind: Option<LitStr>,
    /// An argument of the function holding the incoming request's headers (a
    /// `HeaderSource`): the transaction continues the trace they carry.
    pub headers: Option<Ident>,
    pub krate: Option<Path>,
}

impl SpanArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let raw_args = parse_raw_args(tokens)?;
        let cx = Ctxt::new();
        let mut name = Attr::new(NAME);
        let mut kind = Attr::new(KIND);
        let mut subtype = Attr::new(SUBTYPE);
        let mut action = Attr::new(ACTION);
        let mut krate = Attr::new(CRATE);
        for arg in raw_args {
            match arg.key.unraw().to_string().as_str() {
                NAME => name.set(&cx, &arg.key, string_value(&cx, &arg, Check::NonEmpty)),
                KIND => kind.set(&cx, &arg.key, string_value(&cx, &arg, Check::Token)),
                SUBTYPE => subtype.set(&cx, &arg.key, string_value(&cx, &arg, Check::Token)),
                ACTION => action.set(&cx, &arg.key, string_value(&cx, &arg, Check::Token)),
                CRATE => krate.set(&cx, &arg.key, path_value(&cx, &arg)),
                _ => unknown_key(&cx, Macro::Span, &arg.key),
            }
        }
        cx.check()?;
        Ok(SpanArgs {
            name: name.get(),
            kind: kind.get(),
            subtype: subtype.get(),
            action: action.get(),
            krate: krate.get(),
        })
    }
}

impl TransactionArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let raw_args = parse_raw_args(tokens)?;
        let cx = Ctxt::new();
        let mut name = Attr::new(NAME);
        let mut kind = Attr::new(KIND);
        let mut headers = Attr::new(HEADERS);
        let mut krate = Attr::new(CRATE);
        for arg in raw_args {
            match arg.key.unraw().to_string().as_str() {
                NAME => name.set(&cx, &arg.key, string_value(&cx, &arg, Check::NonEmpty)),
                KIND => kind.set(&cx, &arg.key, string_value(&cx, &arg, Check::Token)),
                HEADERS => headers.set(&cx, &arg.key, ident_value(&cx, &arg)),
                CRATE => krate.set(&cx, &arg.key, path_value(&cx, &arg)),
                _ => unknown_key(&cx, Macro::Transaction, &arg.key),
            }
        }
        cx.check()?;
        Ok(TransactionArgs {
            name: name.get(),
            kind: kind.get(),
            headers: headers.get(),
            krate: krate.get(),
        })
    }
}

/// Collects every error found while checking the arguments (the habit of serde_derive's
/// `internals::ctxt::Ctxt`). Dropping it without calling [`Ctxt::check`] is a bug in this
/// crate and panics in debug builds.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanned at `tokens` (all of them: the caret covers the whole input).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    pub(crate) fn push(&self, error: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(error);
        }
    }

    /// All recorded errors, combined into one (`syn::Error` keeps each message and span).
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        match errors.into_iter().reduce(|mut all, next| {
            all.combine(next);
            all
        }) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        debug_assert!(
            std::thread::panicking() || self.errors.borrow().is_none(),
            "apm-macros: Ctxt dropped without check()"
        );
    }
}

/// One argument: `<value>` is optional so that `name` alone gets a precise error.
pub(crate) struct RawArg {
    pub key: Ident,
    pub value: Option<Expr>,
}

fn parse_raw_args(tokens: TokenStream) -> syn::Result<Punctuated<RawArg, Token![,]>> {
    let parser = |input: ParseStream<'_>| {
        Punctuated::<RawArg, Token![,]>::parse_terminated_with(input, parse_raw_arg)
    };
    parser.parse2(tokens)
}

fn parse_raw_arg(input: ParseStream<'_>) -> syn::Result<RawArg> {
    if !input.peek(Ident::peek_any) {
        return Err(input.error("expected an argument such as `name = \"...\"`"));
    }
    // `parse_any` accepts keywords: `crate = ..` is one of our keys.
    let key = Ident::parse_any(input)?;
    let value = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Some(input.parse::<Expr>()?)
    } else {
        None
    };
    Ok(RawArg { key, value })
}

/// Once-only storage of one argument (serde_derive `attr::Attr::set`): the second occurrence
/// of a key is an error spanned at that second key.
struct Attr<T> {
    key: &'static str,
    seen: bool,
    value: Option<T>,
}

impl<T> Attr<T> {
    fn new(key: &'static str) -> Self {
        Attr {
            key,
            seen: false,
            value: None,
        }
    }

    /// `value` is `None` when the value was invalid (its error is already recorded): the key
    /// still counts as seen, so that a repeated key is reported too.
    fn set(&mut self, cx: &Ctxt, key: &Ident, value: Option<T>) {
        if self.seen {
            cx.error_spanned_by(key, format_args!("duplicate `{}` argument", self.key));
            return;
        }
        self.seen = true;
        self.value = value;
    }

    fn get(self) -> Option<T> {
        self.value
    }
}

#[derive(Clone, Copy)]
enum Check {
    /// Any non-empty string (`name`).
    NonEmpty,
    /// A non-empty string without whitespace (`kind`, `subtype`, `action`: they are keywords
    /// such as `db`/`postgresql`/`query`, aggregated on in the APM UI).
    Token,
}

fn unknown_key(cx: &Ctxt, mac: Macro, key: &Ident) {
    let expected = mac
        .keys()
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    cx.error_spanned_by(
        key,
        format_args!(
            "unknown `{}` argument `{}`; expected one of: {}",
            mac.path(),
            key.unraw(),
            expected
        ),
    );
}

fn missing_value(cx: &Ctxt, key: &Ident, example: &str) {
    cx.error_spanned_by(
        key,
        format_args!("expected a value: `{} = {}`", key.unraw(), example),
    );
}

fn string_value(cx: &Ctxt, arg: &RawArg, check: Check) -> Option<LitStr> {
    let key = arg.key.unraw();
    let Some(value) = &arg.value else {
        missing_value(cx, &arg.key, "\"...\"");
        return None;
    };
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit),
            attrs,
        }) if attrs.is_empty() => lit,
        _ => {
            cx.error_spanned_by(
                value,
                format_args!("expected a string literal: `{key} = \"...\"`"),
            );
            return None;
        }
    };
    let text = lit.value();
    if text.is_empty() {
        cx.error_spanned_by(lit, format_args!("`{key}` must not be empty"));
        return None;
    }
    if let Check::Token = check {
        if text.chars().any(char::is_whitespace) {
            cx.error_spanned_by(lit, format_args!("`{key}` must not contain whitespace"));
            return None;
        }
    }
    Some(lit.clone())
}

/// `crate = some::path` or `crate = "some::path"`.
/// `headers = request_headers`: the name of one of the function's arguments.
fn ident_value(cx: &Ctxt, arg: &RawArg) -> Option<Ident> {
    let Some(value) = &arg.value else {
        missing_value(cx, &arg.key, "an_argument");
        return None;
    };
    match value {
        Expr::Path(p) if p.attrs.is_empty() && p.qself.is_none() => match p.path.get_ident() {
            Some(ident) => Some(ident.clone()),
            None => {
                cx.error_spanned_by(
                    value,
                    "expected the name of one of the function's arguments",
                );
                None
            }
        },
        _ => {
            cx.error_spanned_by(
                value,
                "expected the name of one of the function's arguments",
            );
            None
        }
    }
}

fn path_value(cx: &Ctxt, arg: &RawArg) -> Option<Path> {
    let Some(value) = &arg.value else {
        missing_value(cx, &arg.key, "path::to::apm");
        return None;
    };
    match value {
        Expr::Path(expr) if expr.attrs.is_empty() && expr.qself.is_none() => {
            Some(expr.path.clone())
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit),
            attrs,
        }) if attrs.is_empty() => match lit.parse_with(Path::parse_mod_style) {
            // The parsed tokens carry the literal's span: errors resolving the path point at it.
            Ok(path) => Some(path),
            Err(_) => {
                cx.error_spanned_by(
                    lit,
                    format_args!("`crate` must be a path, such as `crate = my_apm`"),
                );
                None
            }
        },
        _ => {
            cx.error_spanned_by(
                value,
                "expected a path: `crate = path::to::apm` or `crate = \"path::to::apm\"`",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(error: syn::Error) -> Vec<String> {
        error.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn empty_args_are_defaults() {
        let args = SpanArgs::parse(quote!()).unwrap();
        assert!(args.name.is_none() && args.kind.is_none() && args.krate.is_none());
        let args = TransactionArgs::parse(quote!()).unwrap();
        assert!(args.name.is_none() && args.kind.is_none());
    }

    #[test]
    fn all_span_args() {
        let args = SpanArgs::parse(quote!(
            name = "load",
            kind = "db",
            subtype = "postgresql",
            action = "query",
            crate = my::apm,
        ))
        .unwrap();
        assert_eq!(args.name.unwrap().value(), "load");
        assert_eq!(args.kind.unwrap().value(), "db");
        assert_eq!(args.subtype.unwrap().value(), "postgresql");
        assert_eq!(args.action.unwrap().value(), "query");
        assert_eq!(
            args.krate.unwrap().to_token_stream().to_string(),
            "my :: apm"
        );
    }

    #[test]
    fn crate_as_string() {
        let args = TransactionArgs::parse(quote!(crate = "::renamed")).unwrap();
        assert_eq!(
            args.krate.unwrap().to_token_stream().to_string(),
            ":: renamed"
        );
        let err = TransactionArgs::parse(quote!(crate = "not a path"))
            .err()
            .unwrap();
        assert_eq!(
            messages(err),
            ["`crate` must be a path, such as `crate = my_apm`"]
        );
    }

    #[test]
    fn unknown_keys_list_valid_ones() {
        let err = SpanArgs::parse(quote!(foo = "x")).err().unwrap();
        assert_eq!(
            messages(err),
            ["unknown `apm::span` argument `foo`; expected one of: `name`, `kind`, `subtype`, `action`, `crate`"]
        );
        let err = TransactionArgs::parse(quote!(subtype = "x")).err().unwrap();
        assert_eq!(
            messages(err),
            ["unknown `apm::transaction` argument `subtype`; expected one of: `name`, `kind`, `headers`, `crate`"]
        );
    }

    #[test]
    fn headers_names_an_argument() {
        let args = TransactionArgs::parse(quote!(headers = req)).unwrap();
        assert_eq!(args.headers.map(|h| h.to_string()).as_deref(), Some("req"));
        let err = TransactionArgs::parse(quote!(headers = "req"))
            .err()
            .unwrap();
        assert_eq!(
            messages(err),
            ["expected the name of one of the function's arguments"]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let err = SpanArgs::parse(quote!(
            name = "",
            kind = "a b",
            name = "x",
            foo,
            action = 1,
            subtype
        ))
        .err()
        .unwrap();
        assert_eq!(
            messages(err),
            [
                "`name` must not be empty",
                "`kind` must not contain whitespace",
                "duplicate `name` argument",
                "unknown `apm::span` argument `foo`; expected one of: `name`, `kind`, `subtype`, `action`, `crate`",
                "expected a string literal: `action = \"...\"`",
                "expected a value: `subtype = \"...\"`",
            ]
        );
    }

    #[test]
    fn syntax_errors_stop_parsing() {
        assert!(SpanArgs::parse(quote!("name")).is_err());
        assert!(SpanArgs::parse(quote!(name = "a" kind = "b")).is_err());
        assert!(SpanArgs::parse(quote!(name =)).is_err());
    }

    #[test]
    fn duplicate_of_an_invalid_value_is_reported() {
        let err = TransactionArgs::parse(quote!(kind = 1, kind = "x"))
            .err()
            .unwrap();
        assert_eq!(
            messages(err),
            [
                "expected a string literal: `kind = \"...\"`",
                "duplicate `kind` argument"
            ]
        );
    }
}
