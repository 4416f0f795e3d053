//! Attribute macros for [cachemere](https://docs.rs/cachemere): `#[cache_result]` and
//! `#[invalidate_cache]`.
//!
//! This crate is a skeleton in this release: the macros are being built (see the project's
//! issue tracker) and nothing is exported yet. Use `cache_core::Cache` directly meanwhile.
