//! Attribute macros of the `apm` crate: `#[apm::transaction]` and `#[apm::span]`.
//!
//! Use them through `apm` (`apm::span`), not through this crate: the generated code calls
//! `apm::__private`, whose version this crate is pinned to.
//!
//! Stages: [`attr`] parses and checks the arguments, [`item`] reads the function, [`expand`]
//! generates the instrumented function, [`fallback`] emits the function unchanged next to the
//! errors when the input is invalid. Without the `enable` feature, the arguments and the item
//! are still checked, and the function is emitted unchanged.

mod attr;
mod expand;
mod fallback;
mod item;

use proc_macro::TokenStream;

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
    expand::transaction(args.into(), item.into()).into()
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
/// - `kind`: the span type (`db`, `external`, `app`, ..; see the Elastic span type list),
///   without whitespace. Default: `custom`, the type the Elastic spec prescribes when none is
///   given ("API custom instrumentation").
/// - `subtype`, `action`: for example `postgresql` and `query`, without whitespace.
/// - `crate = path`: where `apm` is, when the dependency is renamed.
///
/// Everything said about [`macro@transaction`] holds: unchanged signature and behaviour,
/// outcome from a `Result` return, `async fn` and `#[async_trait]` support.
#[proc_macro_attribute]
pub fn span(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::span(args.into(), item.into()).into()
}
