//! # cachemere
//!
//! Declarative, resilient caching and user sessions for async Rust services, on Redis or an
//! in-process store.
//!
//! This crate re-exports the workspace's crates:
//! - [`cache_core`]: the [`Store`] layer ([`RedisStore`], [`MemoryStore`]), codecs,
//!   configuration, health checks and the [`Cache`] manager;
//! - the [`cache_result`] and [`invalidate_cache`] attribute macros (feature `macros`, on by
//!   default);
//! - [`cache_session`]: the session manager and session service, and with the `axum`
//!   feature its tower layer and axum extractors (`cache_session::web`).
//!
//! Features:
//! - `macros` (default): `#[cache_result]` and `#[invalidate_cache]`;
//! - `metrics`: cache and session metrics through the `metrics` facade;
//! - `tls`: `rediss://` (TLS to Redis, one server or a cluster) on rustls;
//! - `axum`: sessions in axum (a layer, extractors, cookies and bearer tokens).
//!
//! ```
//! use cachemere::{Cache, MemoryStore, Ttl};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cachemere::Result<()> {
//! let cache = Cache::builder(MemoryStore::new()).build();
//! cache.set("user:profile:42", &"Ada", Ttl::Default).await?;
//! assert_eq!(cache.get::<String>("user:profile:42").await?.as_deref(), Some("Ada"));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use cache_core::{self, *};
pub use cache_session;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
