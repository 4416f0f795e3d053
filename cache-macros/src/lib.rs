//! Attribute macros for [cachemere](https://docs.rs/cachemere): `#[cache_result]` and
//! `#[invalidate_cache]`. Use them through `cachemere` (or `cache_core` with its `macros`
//! feature); their documentation is the manual.

mod attr;
mod error;
mod expand;
mod function;
mod key;

use proc_macro::TokenStream;

/// Caches the result of an async function under a key built from its arguments.
#[proc_macro_attribute]
pub fn cache_result(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cache_result(args.into(), item.into()).into()
}

/// Removes cached values after (or before) an async function runs.
#[proc_macro_attribute]
pub fn invalidate_cache(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidate_cache(args.into(), item.into()).into()
}
