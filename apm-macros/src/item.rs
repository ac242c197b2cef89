//! The annotated function: parsing that keeps the user's tokens, and the syntactic facts the
//! expansion depends on (async or not, async-trait shape, `Result` return).

use proc_macro2::{Delimiter, Group, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::{
    Attribute, Block, Expr, ExprAsync, GenericArgument, ItemFn, PathArguments, ReturnType,
    Signature, Stmt, Token, Type, TypeParamBound, Visibility,
};

use crate::attr::Macro;

/// A function as written, split so that it can be re-emitted piece by piece.
pub(crate) struct Func {
    pub outer_attrs: Vec<Attribute>,
    /// `#![...]` at the top of the body: they are re-emitted at the top of the new body.
    pub inner_attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub body: Body,
}

pub(crate) enum Body {
    /// The statements, without the inner attributes.
    Parsed(Block),
    /// The body did not parse: its tokens, braces included, re-emitted as they are so that
    /// rustc reports the user's own error (tracing-attributes' speculative expansion).
    Raw(Group),
}

/// Where the user's code runs, which decides how it is instrumented.
pub(crate) enum Shape<'a> {
    /// A plain function: a guard is entered for the duration of the call.
    Sync,
    /// `async fn`: the body becomes an instrumented future.
    AsyncFn,
    /// A non-`async` function whose last expression is `Box::pin(async move { .. })`, as
    /// `#[async_trait]` generates: the inner `async` block is instrumented, not the wrapper.
    BoxedAsync(&'a ExprAsync),
    /// A non-`async` function whose last expression is an `async` block (for example
    /// `fn f() -> impl Future<Output = T> { async move { .. } }`): that block is instrumented.
    AsyncBlock(&'a ExprAsync),
}

impl Func {
    /// `Ok(None)`: the tokens are not valid Rust; the caller re-emits them unchanged and rustc
    /// reports the user's syntax error, with no noise from us.
    pub(crate) fn parse(tokens: TokenStream, mac: Macro) -> syn::Result<Option<Func>> {
        if let Ok(item) = syn::parse2::<ItemFn>(tokens.clone()) {
            let (inner_attrs, outer_attrs) = item
                .attrs
                .into_iter()
                .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
            return Ok(Some(Func {
                outer_attrs,
                inner_attrs,
                vis: item.vis,
                sig: item.sig,
                body: Body::Parsed(*item.block),
            }));
        }
        match (|input: ParseStream<'_>| parse_raw_fn(input, mac)).parse2(tokens.clone()) {
            Ok(RawFn::Fn(func)) => Ok(Some(*func)),
            Ok(RawFn::NoBody(error)) => Err(error),
            Err(_) => {
                if syn::parse2::<syn::Item>(tokens.clone()).is_ok() {
                    // Some other item, such as a `struct` or an `impl` block.
                    Err(syn::Error::new(
                        item_keyword_span(tokens),
                        format_args!(
                            "`#[{}]` can only be applied to a function or a method",
                            mac.path()
                        ),
                    ))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Semantic checks of a well-formed function.
    pub(crate) fn validate(&self, mac: Macro) -> syn::Result<()> {
        if let Some(constness) = &self.sig.constness {
            return Err(syn::Error::new(
                constness.span,
                format_args!(
                    "`#[{}]` cannot be applied to a `const fn`: spans and transactions are \
                     recorded at run time",
                    mac.path()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn has_track_caller(&self) -> bool {
        self.outer_attrs
            .iter()
            .any(|attr| attr.path().is_ident("track_caller"))
    }

    pub(crate) fn shape(&self) -> Shape<'_> {
        if self.sig.asyncness.is_some() {
            return Shape::AsyncFn;
        }
        let Body::Parsed(block) = &self.body else {
            return Shape::Sync;
        };
        match block.stmts.last() {
            Some(Stmt::Expr(Expr::Async(inner), None)) => Shape::AsyncBlock(inner),
            Some(Stmt::Expr(Expr::Call(call), None)) if is_box_pin(&call.func) => {
                match call.args.first() {
                    Some(Expr::Async(inner)) if call.args.len() == 1 => Shape::BoxedAsync(inner),
                    _ => Shape::Sync,
                }
            }
            _ => Shape::Sync,
        }
    }
}

enum RawFn {
    Fn(Box<Func>),
    /// A signature followed by `;` (a trait method declaration, a foreign function).
    NoBody(syn::Error),
}

/// `attrs vis signature { tokens }`, the body left unparsed.
fn parse_raw_fn(input: ParseStream<'_>, mac: Macro) -> syn::Result<RawFn> {
    let outer_attrs = input.call(Attribute::parse_outer)?;
    let vis: Visibility = input.parse()?;
    let sig: Signature = input.parse()?;
    if input.peek(Token![;]) {
        let semi: Token![;] = input.parse()?;
        return Ok(RawFn::NoBody(syn::Error::new(
            semi.span,
            format_args!(
                "`#[{}]` needs a function body; put it on an implementation of `{}`",
                mac.path(),
                sig.ident
            ),
        )));
    }
    let body: Group = input.parse()?;
    if body.delimiter() != Delimiter::Brace {
        return Err(syn::Error::new(body.span(), "expected `{`"));
    }
    Ok(RawFn::Fn(Box::new(Func {
        outer_attrs,
        inner_attrs: Vec::new(),
        vis,
        sig,
        body: Body::Raw(body),
    })))
}

/// The span of the first token after the outer attributes and the visibility: `struct` in
/// `#[doc = ".."] pub struct S;`.
fn item_keyword_span(tokens: TokenStream) -> proc_macro2::Span {
    let parser = |input: ParseStream<'_>| {
        input.call(Attribute::parse_outer)?;
        input.parse::<Visibility>()?;
        let span = input.span();
        input.parse::<TokenStream>()?;
        Ok(span)
    };
    parser
        .parse2(tokens)
        .unwrap_or_else(|_| proc_macro2::Span::call_site())
}

/// `Box::pin`, `std::boxed::Box::pin`, `::alloc::boxed::Box::pin`...
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else {
        return false;
    };
    let mut segments = path.path.segments.iter().rev();
    path.qself.is_none()
        && matches!(segments.next(), Some(s) if s.ident == "pin" && s.arguments.is_none())
        && matches!(segments.next(), Some(s) if s.ident == "Box")
}

/// Whether a type is written `Result<..>`, `io::Result<T>`, `anyhow::Result<T>`... Purely
/// syntactic: a non-`std` type named `Result` matches too, and the runtime then counts every
/// value as a success (the `ResultOutcome`/`AnyOutcome` autoref pair in `__private`).
pub(crate) fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "Result")
        }
        Type::Group(group) => is_result(&group.elem),
        Type::Paren(paren) => is_result(&paren.elem),
        _ => false,
    }
}

/// `T` in `Pin<Box<dyn Future<Output = T> + Send + 'a>>` (async-trait) or in
/// `impl Future<Output = T>`.
pub(crate) fn future_output(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Type(_, ty) => find_future_output(ty),
        ReturnType::Default => None,
    }
}

fn find_future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Group(group) => find_future_output(&group.elem),
        Type::Paren(paren) => find_future_output(&paren.elem),
        // `Pin<Box<..>>`: look through the single type argument of each wrapper.
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            if segment.ident != "Pin" && segment.ident != "Box" {
                return None;
            }
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(ty) => find_future_output(ty),
                _ => None,
            })
        }
        Type::TraitObject(object) => bounds_output(object.bounds.iter()),
        Type::ImplTrait(imp) => bounds_output(imp.bounds.iter()),
        _ => None,
    }
}

fn bounds_output<'a>(mut bounds: impl Iterator<Item = &'a TypeParamBound>) -> Option<&'a Type> {
    bounds.find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &segment.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn parse(tokens: TokenStream) -> Func {
        Func::parse(tokens, Macro::Span).unwrap().unwrap()
    }

    fn error(tokens: TokenStream) -> String {
        match Func::parse(tokens, Macro::Span) {
            Err(e) => e.to_string(),
            Ok(Some(func)) => func.validate(Macro::Span).err().unwrap().to_string(),
            Ok(None) => panic!("unparseable"),
        }
    }

    fn ty(tokens: TokenStream) -> Type {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn result_detection() {
        assert!(is_result(&ty(quote!(Result<(), E>))));
        assert!(is_result(&ty(quote!(io::Result<u8>))));
        assert!(is_result(&ty(quote!(::anyhow::Result<u8>))));
        assert!(is_result(&ty(quote!(Result))));
        assert!(!is_result(&ty(quote!(Option<Result<(), E>>))));
        assert!(!is_result(&ty(quote!(<T as Tr>::Result))));
        assert!(!is_result(&ty(quote!(ResultLike))));
    }

    #[test]
    fn future_output_types() {
        let output = |tokens| {
            let sig: Signature = syn::parse2(tokens).unwrap();
            future_output(&sig.output).map(|ty| ty.to_token_stream().to_string())
        };
        assert_eq!(
            output(quote!(fn f<'a>() -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'a>>)),
            Some("Result < u8 , E >".to_owned())
        );
        assert_eq!(
            output(quote!(fn f() -> impl Future<Output = u8> + Send)),
            Some("u8".to_owned())
        );
        assert_eq!(output(quote!(fn f() -> u8)), None);
    }

    #[test]
    fn shapes() {
        let shape = |tokens| match parse(tokens).shape() {
            Shape::Sync => "sync",
            Shape::AsyncFn => "async fn",
            Shape::BoxedAsync(_) => "boxed",
            Shape::AsyncBlock(_) => "block",
        };
        assert_eq!(
            shape(quote!(
                fn f() {}
            )),
            "sync"
        );
        assert_eq!(
            shape(quote!(
                async fn f() {}
            )),
            "async fn"
        );
        assert_eq!(
            shape(quote!(
                fn f() -> X {
                    Box::pin(async move { 1 })
                }
            )),
            "boxed"
        );
        assert_eq!(
            shape(quote!(
                fn f() -> X {
                    ::std::boxed::Box::pin(async move { 1 })
                }
            )),
            "boxed"
        );
        assert_eq!(
            shape(quote!(
                fn f() -> X {
                    Box::pin(async move { 1 });
                }
            )),
            "sync"
        );
        assert_eq!(
            shape(quote!(
                fn f() -> X {
                    Rc::pin(async move { 1 })
                }
            )),
            "sync"
        );
        assert_eq!(
            shape(quote!(
                fn f() -> X {
                    async move { 1 }
                }
            )),
            "block"
        );
    }

    #[test]
    fn attributes_are_split() {
        let func = parse(quote!(
            #[inline]
            fn f() {
                #![allow(unused)]
            }
        ));
        assert_eq!(func.outer_attrs.len(), 1);
        assert_eq!(func.inner_attrs.len(), 1);
    }

    #[test]
    fn raw_body() {
        let func = parse(quote!(fn f() { let x = ; }));
        assert!(matches!(func.body, Body::Raw(_)));
    }

    #[test]
    fn rejected_items() {
        assert!(error(quote!(
            const fn f() {}
        ))
        .contains("cannot be applied to a `const fn`"));
        assert!(error(quote!(
            struct S;
        ))
        .contains("can only be applied to a function"));
        assert!(error(quote!(
            fn f(&self);
        ))
        .contains("needs a function body"));
        assert!(Func::parse(quote!(fn f(x:) {}), Macro::Span)
            .unwrap()
            .is_none());
    }
}
