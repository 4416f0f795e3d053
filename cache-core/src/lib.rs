//! The store layer and cache manager of [cachemere](https://docs.rs/cachemere).
//!
//! - [`Store`]: an object-safe async key-value interface over bytes with per-key expiry,
//!   implemented by [`RedisStore`] (Redis through `redis-rs`, auto-reconnecting; one server
//!   or a [Redis Cluster](RedisStore#redis-cluster), with multi-key work split by slot) and
//!   [`MemoryStore`] (in-process, on `moka`; the default when `REDIS_URL` is unset).
//! - [`Cache`]: typed values on a store, through a pluggable [`Codec`] ([`Bincode`] by
//!   default, or plain [`Json`] that other languages can share), with expiry classes
//!   ([`Ttl`]), statistics and health checks; get-or-set with stampede protection
//!   ([`Cache::get_or_set`], [`Cache::try_get_or_set`], [`Cache::get_or_refresh`]), and for
//!   many keys at once with one loader call ([`Cache::get_or_set_multi`]), multi-key
//!   operations, pattern and tag invalidation.
//! - Resilience: a deadline on every store operation and a circuit breaker
//!   ([`CacheBuilder::operation_timeout`], [`CacheBuilder::circuit_breaker`]), a fail-safe that
//!   serves stale values when a recomputation fails ([`CacheBuilder::fail_safe`]), and an
//!   optional in-process first tier kept coherent over Redis pub/sub
//!   ([`CacheBuilder::local_cache`]).
//! - [`Config`]: the seed's environment variables and defaults.
//!
//! ```
//! use cache_core::{Cache, MemoryStore, Ttl};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
//! let cache = Cache::builder(MemoryStore::new()).build();
//! cache.set("user:profile:42", &"Ada", Ttl::Default).await?;
//! assert_eq!(cache.get::<String>("user:profile:42").await?.as_deref(), Some("Ada"));
//! # Ok(())
//! # }
//! ```
//!
//! # How a value goes through a cache
//!
//! Every operation of [`Cache`] (get, set, get-or-set, get-or-refresh, multi-key,
//! collections, the macro runtime) passes through the same stages, each owned by one file
//! (under `src/`), so that a rule of a stage holds for every operation:
//!
//! | stage | file |
//! |---|---|
//! | key check (reserved names, ttl class, jitter) | `cache/write.rs` (`prepare`) |
//! | codec, frame and stamp (fail-safe, early refresh), seal (encryption) | `frame.rs`, `codec.rs`, `encryption.rs` |
//! | tag index, then the store write (one `SET`, or only over what a miss read: `SET NX` or compare-and-set; one pipeline for several) | `cache/write.rs` (`commit`), `cache/tags.rs`, `fence.rs` |
//! | deadline and circuit breaker on every store call | `store/guard.rs`, `breaker.rs` |
//! | announce to other processes' local tiers, this process's local tier | `cache/invalidate.rs` (`announce`), `local.rs` |
//! | last good copy (fail-safe) | `cache/write.rs` (`commit`) |
//! | read, for one key (`fetch`) or many (`fetch_many`): pending invalidations, in-process entry, local tier, store, open, stamp | `cache/read.rs`, `recovery.rs` |
//! | get-or-set of one key (single flight, lock, fail-safe fallback) or many (`get_or_set_multi`: one read, one loader call, one write) | `cache/compute.rs`, `cache/batch.rs` |
//! | invalidation (a short-lived fence marker in each key) and its replay when the store cannot take it | `cache/invalidate.rs`, `fence.rs`, `recovery.rs` |
//! | a marker seen by `exists`, `ttl`, `expire` and the collections (as nothing) | `cache/markers.rs` |
//! | single flight, lock, early refresh | `flight.rs`, `cache/lock.rs`, `cache/refresh.rs` |
//!
//! # Features
//! - `macros`: the [`cache_result`] and [`invalidate_cache`] attribute macros (when used
//!   through `cache_core` rather than `cachemere`, pass `crate = "cache_core"`).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod cache;
pub mod codec;
pub mod config;
mod degrade;
pub mod encryption;
pub mod error;
mod fence;
mod flight;
mod frame;
mod global;
mod health;
pub mod key;
mod local;
mod log;
mod plan;
mod private;
mod random;
mod recovery;
mod stats;
pub mod store;
mod telemetry;
mod ttl;
mod typed;

#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use cache_macros::{cache_result, invalidate_cache};

pub use crate::cache::builder::{
    CacheBuilder, DEFAULT_PENDING_INVALIDATIONS, DEFAULT_REFRESH_TIMEOUT,
};
pub use crate::cache::{BatchLoader, Cache, check_redis_connection};
pub use crate::codec::{Bincode, Codec, Json};
pub use crate::config::Config;
pub use crate::error::{BoxError, Error, Result};
pub use crate::health::HealthReport;
pub use crate::local::LocalMode;
pub use crate::stats::CacheStats;
pub use crate::store::{BusEvent, KeyTtl, MemoryStore, RedisStore, Store};
pub use crate::ttl::{SetOptions, Ttl};
