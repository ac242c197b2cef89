//! Attribute macros of `apm` (placeholder: passes items through).
use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn transaction(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

#[proc_macro_attribute]
pub fn span(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
