//! The [`Cache`] handle and the state it shares between its stages. Each operation lives in
//! the file of its stage (see the crate docs' map): `write.rs` (the one write path),
//! `read.rs` (the read stages, for one key or many), `compute.rs` and `batch.rs`
//! (get-or-set of one key or many), `invalidate.rs`, `tags.rs`,
//! `collections.rs`, `multi.rs`, `refresh.rs`, `lock.rs`; `builder.rs` configures it. The
//! state is private to this module and its files.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::breaker::Breakers;
use crate::codec::Codec;
use crate::degrade::Strictness;
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::frame::Format;
use crate::health::HealthReport;
use crate::local::Local;
use crate::log::ErrorLog;
use crate::recovery::Recovery;
use crate::stats::{CacheStats, Counters};
use crate::store::guard::Guarded;
use crate::store::{KeyTtl, MemoryStore, Store};
use crate::ttl::{SetOptions, Ttl};

mod batch;
pub(crate) mod builder;
pub use loader::BatchLoader;
mod collections;
mod compute;
pub(crate) use compute::Asked;
mod invalidate;
mod loader;
mod lock;
mod markers;
mod multi;
mod read;
pub(crate) mod refresh;
mod tags;
mod write;

/// A typed cache over a [`Store`]: values are any `serde` type, encoded by the cache's
/// [`Codec`], under keys that are the literal store keys behind an optional prefix.
///
/// `Cache` is a cheap handle (an `Arc` inside): clone it into every task that needs it.
///
/// ```
/// use cache_core::{Cache, MemoryStore, Ttl};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
/// let cache = Cache::builder(MemoryStore::new()).prefix("app:").build();
/// cache.set("user:profile:42", &("Ada", 36u32), Ttl::Short).await?;
/// let profile: Option<(String, u32)> = cache.get("user:profile:42").await?;
/// assert_eq!(profile, Some(("Ada".to_owned(), 36)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store behind the deadline and the circuit breaker: every cache operation uses it.
    guarded: Guarded,
    store: Arc<dyn Store>,
    /// The store, when it is the in-process one: `#[cache_result]` hits there copy the
    /// decoded value it keeps instead of decoding.
    memory: Option<MemoryStore>,
    breakers: Arc<Breakers>,
    format: Format,
    prefix: String,
    name: String,
    default_ttl: Duration,
    short_ttl: Duration,
    long_ttl: Duration,
    jitter_percent: u8,
    strict: bool,
    lock_wait: Duration,
    counters: Counters,
    fail_safe: Option<Duration>,
    /// How long an invalidation fences its key (see `fence.rs`), if it does.
    fence: Option<Duration>,
    factory_timeout: Option<Duration>,
    refresh_timeout: Duration,
    local: Option<Arc<Local>>,
    /// The last good bytes of fail-safe keys, for when the store cannot be read.
    last_good: moka::sync::Cache<String, Arc<Vec<u8>>>,
    flights: Flights,
    errors: ErrorLog,
    /// Invalidations that could not reach the store, until they do.
    recovery: Arc<Recovery>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.guarded)
            .field("codec", &self.inner.format.codec.name())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The cache's name ([`CacheBuilder::name`](crate::CacheBuilder::name), `"default"` unless set).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The store under this cache, for byte-level access.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// println!("caching on {}", cache.store().backend());
    /// ```
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Whether the in-process first tier is in use: `None` without one
    /// ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache)), `Some(false)` while its invalidation subscription is
    /// down (it is then bypassed).
    pub fn local_cache_active(&self) -> Option<bool> {
        self.inner.local.as_ref().map(|local| local.is_active())
    }

    /// The codec values are written with.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.codec().name(), "bincode");
    /// ```
    pub fn codec(&self) -> &dyn Codec {
        &*self.inner.format.codec
    }

    /// The store key for a cache key: the key behind this cache's prefix.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// let cache = Cache::builder(MemoryStore::new()).prefix("app:").build();
    /// assert_eq!(cache.full_key("user:1"), "app:user:1");
    /// ```
    pub fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.inner.prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{}{key}", self.inner.prefix))
        }
    }

    /// How long past its ttl a value written with `options` is kept as a fail-safe: the
    /// options' own window, else the cache's ([`CacheBuilder::fail_safe`](crate::CacheBuilder::fail_safe)).
    #[inline]
    pub(crate) fn fail_safe_window(&self, options: &SetOptions) -> Option<Duration> {
        options.stale_window().or(self.inner.fail_safe)
    }

    /// The duration a [`Ttl`] stands for in this cache (before jitter).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # use std::time::Duration;
    /// let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.resolve_ttl(Ttl::Short), Duration::from_secs(300));
    /// ```
    pub fn resolve_ttl(&self, ttl: impl Into<Ttl>) -> Duration {
        match ttl.into() {
            Ttl::Default => self.inner.default_ttl,
            Ttl::Short => self.inner.short_ttl,
            Ttl::Long => self.inner.long_ttl,
            Ttl::Exact(duration) => duration,
        }
    }

    /// Counts a store error and passes it on.
    pub(crate) fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if result
            .as_ref()
            .is_err_and(|err| !matches!(err, Error::CircuitOpen { .. }))
        {
            self.inner.counters.error();
        }
        result
    }

    /// Returns a failure in strict mode, or logs it (rate-limited) and carries on. Store
    /// errors are already counted by `counted`; local ones (encoding, size) are counted here.
    pub(crate) fn degrade<S: Strictness>(
        &self,
        operation: &str,
        key: &str,
        err: Error,
    ) -> std::result::Result<(), S::Error> {
        if matches!(
            err,
            Error::Encode { .. }
                | Error::ValueTooLarge { .. }
                | Error::InvalidTtl { .. }
                | Error::Config { .. }
        ) {
            self.inner.counters.error();
        }
        if !S::SURFACES {
            self.inner.errors.store_error(operation, key, &err);
        }
        S::fail(err)
    }

    /// Whether a key exists.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert!(!cache.exists("k").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let full = self.full_key(key);
        Ok(self.lifetime(&full).await? != KeyTtl::Missing)
    }

    /// Gives an existing key a new ttl; returns whether the key existed. A tagged key stays
    /// in its tags' indexes for its new lifetime, so [`invalidate_tag`](Cache::invalidate_tag)
    /// still removes it. With the [fence](crate::CacheBuilder::fence), an invalidation's
    /// marker is no key: `expire` leaves it and returns `false` (it reads the key's ttl
    /// first, one more round trip).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("k", &1, Ttl::Short).await?;
    /// assert!(cache.expire("k", Ttl::Long).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn expire(&self, key: &str, ttl: impl Into<Ttl>) -> Result<bool> {
        let full = self.full_key(key);
        let ttl = self.ttl_for(&full, ttl)?;
        // an invalidation's marker is no key to keep (an extra round trip, with the fence)
        if self.inner.fence.is_some() && self.lifetime(&full).await? == KeyTtl::Missing {
            return Ok(false);
        }
        let changed = self.counted(self.inner.guarded.expire(&full, ttl).await)?;
        if changed {
            self.retag(&full, ttl).await?;
        }
        self.announce(&[full.into_owned()], &[]).await;
        Ok(changed)
    }

    /// The remaining lifetime of a key.
    ///
    /// ```
    /// # use cache_core::{Cache, KeyTtl, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.ttl("missing").await?, KeyTtl::Missing);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let full = self.full_key(key);
        self.lifetime(&full).await
    }

    /// How the local tier learns of changes now (`None` without one): from the server's
    /// tracking of every client's writes, from cachemere's own notices, or not at all while
    /// its subscription is lost.
    pub fn local_mode(&self) -> Option<crate::LocalMode> {
        self.inner.local.as_ref().map(|local| local.mode())
    }

    /// A snapshot of this cache's counters.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.get::<u32>("missing").await?;
    /// assert_eq!(cache.stats().misses, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.inner.counters.snapshot();
        stats.short_circuits = self.inner.breakers.short_circuits();
        stats.circuit_trips = self.inner.breakers.trips();
        stats.local_hits = self
            .inner
            .local
            .as_ref()
            .map_or(0, |local| local.hits.load(Ordering::Relaxed));
        stats.local_stale_hits = self
            .inner
            .local
            .as_ref()
            .map_or(0, |local| local.stale_hits.load(Ordering::Relaxed));
        let recovery = &self.inner.recovery;
        stats.pending_invalidations = recovery.pending();
        stats.recovered_invalidations = recovery.recovered.load(Ordering::Relaxed);
        stats.invalidation_overflows = recovery.overflows.load(Ordering::Relaxed);
        stats
    }

    /// Sets every counter [`stats`](Cache::stats) reports back to zero, the circuit
    /// breaker's and the local tier's included (not the gauge `pending_invalidations`).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.get::<u8>("missing").await?;
    /// cache.reset_stats();
    /// assert_eq!(cache.stats().misses, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_stats(&self) {
        self.inner.counters.reset();
        self.inner.breakers.reset_counts();
        if let Some(local) = &self.inner.local {
            local.hits.store(0, Ordering::Relaxed);
            local.stale_hits.store(0, Ordering::Relaxed);
        }
        self.inner.recovery.recovered.store(0, Ordering::Relaxed);
        self.inner.recovery.overflows.store(0, Ordering::Relaxed);
    }

    /// Probes the store: reachability, latency, server version and memory use.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let report = cache.health_check().await;
    /// assert!(report.healthy);
    /// # }
    /// ```
    pub async fn health_check(&self) -> HealthReport {
        self.inner.guarded.health_check().await
    }
}

/// Whether the cache's store answers: the seed's `check_redis_connection()`.
///
/// ```
/// # use cache_core::{Cache, MemoryStore, check_redis_connection};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryStore::new()).build();
/// assert!(check_redis_connection(&cache).await);
/// # }
/// ```
pub async fn check_redis_connection(cache: &Cache) -> bool {
    cache.health_check().await.healthy
}

/// Wall-clock time in milliseconds since the Unix epoch (fail-safe freshness stamps).
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    /// A minimal executor that is not tokio's.
    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::park();
        }
    }
}
