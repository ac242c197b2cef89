//! Code generation.
//!
//! Every emitted path is absolute (`::core::..`, `::std::..`, `<crate>::__private::..`), every
//! emitted local is `__apm_`-prefixed and `Span::mixed_site()` (invisible to the user's code),
//! and the user's tokens are re-emitted with their own spans, so that errors in them point
//! where they were written.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Block, ExprAsync, LitStr, ReturnType, Signature, Type};

use crate::attr::{SpanArgs, TransactionArgs, DEFAULT_KIND};
use crate::item::{self, Body, Func, Shape};

/// The instrumented function of `#[apm::span]`.
pub(crate) fn span(args: SpanArgs, func: &Func) -> TokenStream {
    let krate = krate(args.krate);
    let name = name_or_default(args.name, func);
    let kind = kind_or_default(args.kind);
    let subtype = optional(args.subtype);
    let action = optional(args.action);
    let site = Site {
        meta: quote! {
            static __APM_META: #krate::__private::SpanMeta =
                #krate::__private::SpanMeta::new(#name, #kind, #subtype, #action);
        },
        enter: format_ident!("enter_span"),
        start: format_ident!("start_span"),
        extra: TokenStream::new(),
        krate,
    };
    gen_function(func, &site)
}

/// The instrumented function of `#[apm::transaction]`.
pub(crate) fn transaction(args: TransactionArgs, func: &Func) -> TokenStream {
    let krate = krate(args.krate);
    let name = name_or_default(args.name, func);
    let kind = kind_or_default(args.kind);
    let (suffix, extra) = match args.headers {
        Some(h) => ("_with", quote!(, #krate::__private::as_header_source(&#h))),
        None => ("", TokenStream::new()),
    };
    let site = Site {
        meta: quote! {
            static __APM_META: #krate::__private::TransactionMeta =
                #krate::__private::TransactionMeta::new(#name, #kind);
        },
        enter: format_ident!("enter_transaction{}", suffix),
        start: format_ident!("start_transaction{}", suffix),
        extra,
        krate,
    };
    gen_function(func, &site)
}

/// What differs between the two macros.
struct Site {
    /// `::apm`, or the `crate = ..` override.
    krate: TokenStream,
    /// The `static __APM_META` item.
    meta: TokenStream,
    /// `__private` function entering a guard (sync code).
    enter: Ident,
    /// `__private` function starting a frame for a future (async code).
    start: Ident,
    /// Arguments after `&__APM_META` (the incoming headers of a transaction).
    extra: TokenStream,
}

fn krate(path: Option<syn::Path>) -> TokenStream {
    match path {
        Some(path) => path.into_token_stream(),
        None => quote!(::apm),
    }
}

fn name_or_default(name: Option<LitStr>, func: &Func) -> LitStr {
    name.unwrap_or_else(|| {
        let ident = &func.sig.ident;
        LitStr::new(&ident.unraw().to_string(), ident.span())
    })
}

fn kind_or_default(kind: Option<LitStr>) -> LitStr {
    kind.unwrap_or_else(|| LitStr::new(DEFAULT_KIND, Span::call_site()))
}

fn optional(value: Option<LitStr>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// Locals of the generated code: mixed-site hygiene keeps them out of the user's reach.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn gen_function(func: &Func, site: &Site) -> TokenStream {
    let Func {
        outer_attrs,
        inner_attrs,
        vis,
        sig,
        body,
    } = func;
    let meta = &site.meta;
    let body = match func.shape() {
        Shape::Sync => {
            let mut ret = ReturnValue::declared(sig);
            // A closure would report its own call site to `Location::caller()` in the body
            // (`#[track_caller]` on closures is unstable): keep the body in the function and
            // give up the outcome instead.
            ret.is_result &= !func.has_track_caller();
            gen_sync(site, body, ret)
        }
        Shape::AsyncFn => gen_future(site, body, ReturnValue::declared(sig)),
        Shape::BoxedAsync(inner) => {
            let future = gen_async_block(site, inner, ReturnValue::future_output(sig));
            with_tail(body, quote!(::std::boxed::Box::pin(#future)))
        }
        Shape::AsyncBlock(inner) => with_tail(
            body,
            gen_async_block(site, inner, ReturnValue::future_output(sig)),
        ),
    };
    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #meta
            #body
        }
    }
}

/// The value a body produces, as far as the signature tells.
struct ReturnValue {
    /// `impl Trait` erased to `_`; `None` when the type is unknown (an async block whose
    /// `Output` is not written in the signature).
    ty: Option<Type>,
    /// Error messages about the value point here: the return type, or the function's name
    /// when the return type is implicit.
    span: Span,
    /// Whether the type is written `..Result<..>`.
    is_result: bool,
}

impl ReturnValue {
    /// The declared return type of the function (`()` when there is none).
    fn declared(sig: &Signature) -> Self {
        match &sig.output {
            ReturnType::Type(_, ty) => ReturnValue::of(ty),
            ReturnType::Default => ReturnValue {
                ty: Some(syn::parse_quote!(())),
                span: sig.ident.span(),
                is_result: false,
            },
        }
    }

    /// The `Output` of the future the function returns, when the signature spells it
    /// (`Pin<Box<dyn Future<Output = T> + ..>>`, `impl Future<Output = T>`).
    fn future_output(sig: &Signature) -> Self {
        match item::future_output(&sig.output) {
            Some(ty) => ReturnValue::of(ty),
            None => ReturnValue {
                ty: None,
                span: sig.ident.span(),
                is_result: false,
            },
        }
    }

    fn of(ty: &Type) -> Self {
        ReturnValue {
            ty: Some(erase_impl_trait(ty)),
            span: ty.span(),
            is_result: item::is_result(ty),
        }
    }

    /// The type as a `let` annotation can state it: not for `!` (unstable as a type there).
    fn annotation(&self) -> Option<&Type> {
        self.ty.as_ref().filter(|ty| !matches!(ty, Type::Never(_)))
    }

    /// tracing-attributes' fake return edge: an unreachable `return` of the declared type,
    /// placed before the user's code, pins the type of the closure or async block that runs
    /// it. `?` and `.into()` in the body then infer as in the original function, and a
    /// mismatch reports "return type inferred to be `T` here" at the return type.
    fn fake_return_edge(&self) -> TokenStream {
        let Some(ty) = self.annotation() else {
            return TokenStream::new();
        };
        // Mixed-site hygiene, but the location of the return type: rustc's "return type
        // inferred to be `T` here" points at the returned expression.
        let ret = Ident::new("__apm_ret", Span::mixed_site().located_at(self.span));
        quote_spanned! {self.span=>
            #[allow(
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
            )]
            if false {
                let #ret: #ty = loop {};
                return #ret;
            }
        }
    }

    /// The block after the fake return edge. The block stays last: a block that diverges
    /// (`panic!()`) leaves no generated code after it to warn about as unreachable.
    fn typed_block(&self, block: impl ToTokens) -> TokenStream {
        let fake_return_edge = self.fake_return_edge();
        if fake_return_edge.is_empty() {
            // `{ { .. } }` would trip `unused_braces` in the user's code.
            return block.into_token_stream();
        }
        quote!({ #fake_return_edge #block })
    }
}

/// `let __apm_guard = enter(..); { body }`. With a `Result` return, the body runs in a
/// closure so that every exit (`return`, `?`, tail) goes through the outcome check.
fn gen_sync(site: &Site, body: &Body, ret: ReturnValue) -> TokenStream {
    let Site {
        krate,
        enter,
        extra,
        ..
    } = site;
    let guard = local("__apm_guard");
    if !ret.is_result {
        return quote! {
            let #guard = #krate::__private::#enter(&__APM_META #extra);
            #body
        };
    }
    let value = local("__apm_ret");
    let call_once = local("__apm_call_once");
    let closure_body = ret.typed_block(body);
    let outcome = outcome_of(krate, quote!((&#value)));
    // The closure is passed where `FnOnce` is expected, so it is inferred `FnOnce` (not
    // `FnMut`): a body that returns a reborrow of `&mut self` compiles, as it did without the
    // closure. `move` makes it own the arguments, as the function did.
    quote! {
        #[inline]
        fn #call_once<__ApmR, __ApmF: ::core::ops::FnOnce() -> __ApmR>(f: __ApmF) -> __ApmR {
            f()
        }
        let mut #guard = #krate::__private::#enter(&__APM_META #extra);
        let #value = #call_once(move || #closure_body);
        #[allow(clippy::needless_borrow)]
        #guard.set_outcome(#outcome);
        #value
    }
}

/// `Instrumented::new(async move { body }, start(..), hook).await`, the body of an `async fn`
/// or of an instrumented `async` block. No guard is held across `.await`: the runtime enters
/// the frame on each poll.
fn gen_future(site: &Site, body: impl ToTokens, ret: ReturnValue) -> TokenStream {
    let Site {
        krate,
        start,
        extra,
        ..
    } = site;
    let hook = if ret.is_result {
        let value = local("__apm_ret");
        let outcome = outcome_of(krate, value.to_token_stream());
        quote!(|#value| #outcome)
    } else {
        quote!(#krate::__private::no_outcome)
    };
    let future_body = ret.typed_block(body);
    let frame = local("__apm_frame");
    // The frame first: its arguments (the incoming headers) may be moved into the body.
    quote! {{
        let #frame = #krate::__private::#start(&__APM_META #extra);
        #krate::__private::Instrumented::new(async move #future_body, #frame, #hook).await
    }}
}

/// The user's `async` block (attributes and capture mode kept) around the instrumented
/// future of its body.
fn gen_async_block(site: &Site, inner: &ExprAsync, ret: ReturnValue) -> TokenStream {
    let ExprAsync {
        attrs,
        async_token,
        capture,
        block,
    } = inner;
    let future = gen_future(site, UserBlock(block), ret);
    quote! {
        #(#attrs)* #async_token #capture { #future }
    }
}

/// The body with its last expression replaced by `tail`.
fn with_tail(body: &Body, tail: TokenStream) -> TokenStream {
    let Body::Parsed(Block { brace_token, stmts }) = body else {
        unreachable!("async-block shapes are only detected in parsed bodies")
    };
    let init = &stmts[..stmts.len().saturating_sub(1)];
    let block = Block {
        brace_token: *brace_token,
        stmts: init.to_vec(),
    };
    let mut out = TokenStream::new();
    UserBlock(&block).with_tail(tail).to_tokens(&mut out);
    out
}

/// The outcome of `value` (a `&Output` expression): `Failure` for `Err`, `Success` for `Ok`
/// and for a type named `Result` that is not `std`'s (autoref specialisation).
fn outcome_of(krate: &TokenStream, value: TokenStream) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use #krate::__private::{AnyOutcome as _, ResultOutcome as _};
        #value.__apm_outcome()
    }}
}

impl ToTokens for Body {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Body::Parsed(block) => UserBlock(block).to_tokens(tokens),
            Body::Raw(group) => group.to_tokens(tokens),
        }
    }
}

/// The user's block, re-emitted as a nested block. Its braces keep their location but are
/// marked as coming from the expansion: as the last expression of a generated block, a
/// one-line `{ expr }` would otherwise trip `unused_braces` ("unnecessary braces around block
/// return value") in the user's code. The statements keep their own spans.
struct UserBlock<'a>(&'a Block);

impl UserBlock<'_> {
    /// The block, with `tail` appended after its statements.
    fn with_tail(&self, tail: TokenStream) -> proc_macro2::Group {
        let Block { brace_token, stmts } = self.0;
        let mut inner = TokenStream::new();
        for stmt in stmts {
            stmt.to_tokens(&mut inner);
        }
        inner.extend(tail);
        let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, inner);
        group.set_span(Span::call_site().located_at(brace_token.span.join()));
        group
    }
}

impl ToTokens for UserBlock<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.with_tail(TokenStream::new()).to_tokens(tokens);
    }
}

/// `impl Trait` cannot be restated inside the body: it becomes `_`, inferred from the body.
fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(imp) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](imp.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}
