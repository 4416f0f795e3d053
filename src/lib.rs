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
//! - [`cache_session`]: the session manager and session service.
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
