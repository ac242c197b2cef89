//! Attribute macros of the `apm` crate: `#[apm::transaction]` and `#[apm::span]`.
//!
//! Use them through `apm` (`apm::span`), not through this crate: the generated code calls
//! `apm::__private`, whose version this crate is pinned to.
//!
//! Each entry point drives the same stages ([`instrument`]): [`attr`] parses the arguments and
//! [`valid`] checks them (a span's type and subtype against the Elastic registry,
//! [`span_types`]), [`item`] reads and checks the function, [`expand`] generates the instrumented
//! function, and [`fallback`] emits the function unchanged next to the errors when the input
//! is invalid. Without the `enable` feature, the arguments and the item are still checked,
//! and the function is emitted unchanged.

mod attr;
mod expand;
mod fallback;
mod item;
mod span_types;
mod valid;

use proc_macro::TokenStream;

use attr::{Macro, SpanArgs, TransactionArgs};
use item::Func;

/// Records each call of the function as an Elastic APM **transaction** (an entry into the
/// service: a request, a job, a message).
///
/// ```ignore
/// #[apm::transaction]
/// fn handle_job(id: u64) -> Result<(), std::io::Error> {
///     Ok(())
/// }
///
/// #[apm::transaction(name = "GET /checkout", kind = "request")]
/// async fn checkout(cart: Cart) -> Receipt {
///     /* .. */
/// }
/// ```
///
/// Arguments, all optional, values are string literals:
/// - `name`: the transaction name. Default: the function's name.
/// - `kind`: the transaction type (`request`, `messaging`, ..), without whitespace. Default:
///   `custom`, the type the Elastic spec prescribes when none is given.
/// - `crate = path`: where `apm` is, when the dependency is renamed (`crate = my_apm` or
///   `crate = "my_apm"`). The path is resolved where the function is written.
///
/// The function's signature, attributes and behaviour are unchanged: `return`, `?` and panics
/// go through as before. When it returns a type written `Result<..>` (`io::Result<T>`,
/// `anyhow::Result<T>`..), an `Err` marks the transaction as failed and an `Ok` as
/// successful; a panic marks it as failed. `async fn` and `#[async_trait]` methods are
/// instrumented as futures (the transaction covers the future from its first poll to its
/// completion). `const fn` is rejected.
#[proc_macro_attribute]
pub fn transaction(args: TokenStream, item: TokenStream) -> TokenStream {
    instrument(
        Macro::Transaction,
        TransactionArgs::parse(args.into()),
        item.into(),
        expand::transaction,
    )
    .into()
}

/// Records each call of the function as an Elastic APM **span**, a child of the current span
/// or transaction.
///
/// ```ignore
/// #[apm::span]
/// fn parse(input: &str) -> Result<Doc, ParseError> {
///     /* .. */
/// }
///
/// #[apm::span(name = "SELECT orders", kind = "db", subtype = "postgresql", action = "query")]
/// async fn load_orders(db: &Db) -> Vec<Order> {
///     /* .. */
/// }
/// ```
///
/// Arguments, all optional, values are string literals:
/// - `name`: the span name. Default: the function's name.
/// - `kind`: the span type (`db`, `external`, `app`, ..), without whitespace. Default:
///   `custom`, the type the Elastic spec prescribes when none is given ("API custom
///   instrumentation").
/// - `subtype`, `action`: for example `postgresql` and `query`, without whitespace.
///
/// `kind` and `subtype` are checked at compile time against the Elastic span type registry
/// (`span_types.json` of the agent spec): an unknown type or subtype is an error that names
/// the nearest valid one; a type whose spans need a subtype (`db`, `external`, `messaging`,
/// ..) must be given one; a deprecated subtype names its replacement.
/// - `crate = path`: where `apm` is, when the dependency is renamed.
///
/// Everything said about [`macro@transaction`] holds: unchanged signature and behaviour,
/// outcome from a `Result` return, `async fn` and `#[async_trait]` support.
#[proc_macro_attribute]
pub fn span(args: TokenStream, item: TokenStream) -> TokenStream {
    instrument(
        Macro::Span,
        SpanArgs::parse(args.into()).and_then(valid::span_args),
        item.into(),
        expand::span,
    )
    .into()
}

/// Parse, validate, then expand. Every error found in the arguments and in the function is
/// reported at once, next to the function as written; a function that is not valid Rust is
/// emitted unchanged, so that rustc reports the user's own error.
fn instrument<A>(
    mac: Macro,
    args: syn::Result<A>,
    item: proc_macro2::TokenStream,
    generate: fn(A, &Func) -> proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func = Func::parse(item.clone(), mac).and_then(|func| {
        if let Some(func) = &func {
            func.validate(mac)?;
        }
        Ok(func)
    });
    let (args, func) = match (args, func) {
        (Ok(args), Ok(func)) => (args, func),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            return fallback::expand(item, error);
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => return fallback::expand(item, error),
    };
    let Some(func) = func else {
        return item;
    };
    // Instrumentation compiled out: the arguments and the function were still checked.
    if !cfg!(feature = "enable") {
        return item;
    }
    generate(args, &func)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn expand_span(args: TokenStream, item: TokenStream) -> String {
        instrument(
            Macro::Span,
            SpanArgs::parse(args).and_then(valid::span_args),
            item,
            expand::span,
        )
        .to_string()
    }

    #[cfg(feature = "enable")]
    fn expand_transaction(args: TokenStream, item: TokenStream) -> String {
        instrument(
            Macro::Transaction,
            TransactionArgs::parse(args),
            item,
            expand::transaction,
        )
        .to_string()
    }

    #[test]
    fn invalid_input_keeps_the_item() {
        let out = expand_span(
            quote!(foo = "x"),
            quote!(
                fn f() -> u8 {
                    1
                }
            ),
        );
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.ends_with("fn f () -> u8 { 1 }"), "{out}");
    }

    #[test]
    fn unparseable_item_is_returned_as_is() {
        let item = quote!(fn f(x:) {});
        assert_eq!(expand_span(quote!(), item.clone()), item.to_string());
    }

    #[cfg(not(feature = "enable"))]
    #[test]
    fn disabled_returns_the_item() {
        let item = quote!(
            #[inline]
            pub async fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        );
        assert_eq!(
            expand_span(quote!(kind = "db", subtype = "postgresql"), item.clone()),
            item.to_string()
        );
    }

    #[cfg(feature = "enable")]
    #[test]
    fn shapes_call_the_runtime() {
        let sync = expand_span(
            quote!(),
            quote!(
                fn f() -> u8 {
                    1
                }
            ),
        );
        assert!(sync.contains(":: apm :: __private :: enter_span (& __APM_META)"));
        assert!(!sync.contains("__apm_call_once"));

        let result = expand_transaction(
            quote!(crate = my::apm),
            quote!(
                fn f() -> io::Result<u8> {
                    Ok(1)
                }
            ),
        );
        assert!(result.contains("my :: apm :: __private :: enter_transaction"));
        assert!(result.contains("__apm_call_once (move"));
        assert!(result.contains("set_outcome"));
        assert!(result.contains("TransactionMeta :: new (\"f\" , \"custom\")"));

        let future = expand_span(
            quote!(name = "n"),
            quote!(
                async fn f() -> u8 {
                    1
                }
            ),
        );
        assert!(future.contains(":: apm :: __private :: start_span"));
        assert!(future.contains(":: apm :: __private :: no_outcome) . await"));

        let boxed = expand_span(
            quote!(),
            quote!(
                fn f(&self) -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send + '_>> {
                    Box::pin(async move { Ok(1) })
                }
            ),
        );
        assert!(boxed.contains(":: std :: boxed :: Box :: pin (async move {"));
        assert!(boxed.contains("__apm_outcome"));
    }

    #[cfg(feature = "enable")]
    #[test]
    fn raw_names_lose_their_prefix() {
        let out = expand_span(
            quote!(),
            quote!(
                fn r#type() {}
            ),
        );
        assert!(out.contains("SpanMeta :: new (\"type\" ,"), "{out}");
    }
}
