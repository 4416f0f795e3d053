//! Secure user sessions for [cachemere](https://docs.rs/cachemere) on the `cache-core` stores.
//!
//! This crate is a skeleton in this release: the session manager is being built (see the
//! project's issue tracker). It re-exports the store layer it will be built on.

pub use cache_core::{MemoryStore, RedisStore, Store};
