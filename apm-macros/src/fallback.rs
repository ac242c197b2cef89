//! Output for invalid input: the errors, and the user's item exactly as written.
//!
//! Keeping the item (tokio-macros' `token_stream_with_error`, thiserror's `fallback`) avoids
//! a cascade of "cannot find function" errors at every call site, and keeps IDE completion
//! working while the attribute is being edited.

use proc_macro2::TokenStream;

pub(crate) fn expand(original: TokenStream, error: syn::Error) -> TokenStream {
    let mut out = error.into_compile_error();
    out.extend(original);
    out
}
