use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::{join, join_all};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::breaker::Breaker;
use crate::codec::{Bincode, Codec};
use crate::config::Config;
use crate::degrade::{Lenient, Strict, Strictness};
use crate::encryption::EncryptionKeys;
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::frame::{Builtin, Format, Stamp};
use crate::health::HealthReport;
use crate::local::Local;
use crate::log::ErrorLog;
use crate::recovery::{Pending, Recovery};
use crate::stats::{CacheStats, Counters};
use crate::store::guard::Guarded;
use crate::store::{KeyTtl, MemoryStore, RedisStore, Store};
use crate::telemetry::{Event, Meter};
use crate::ttl::{SetOptions, Ttl};
use crate::write::Condition;

const DEFAULT_COMPRESS_OVER: usize = 1024;
/// Memory for the fail-safe's in-process copies of last good values.
const LAST_GOOD_BYTES: u64 = 64 * 1024 * 1024;
/// The default [`CacheBuilder::refresh_timeout`].
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`CacheBuilder::pending_invalidations`].
pub const DEFAULT_PENDING_INVALIDATIONS: usize = 10_000;

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The store behind the deadline and the circuit breaker: every cache operation uses it.
    pub(crate) guarded: Guarded,
    store: Arc<dyn Store>,
    /// The store, when it is the in-process one: `#[cache_result]` hits there copy the
    /// decoded value it keeps instead of decoding.
    pub(crate) memory: Option<MemoryStore>,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) format: Format,
    pub(crate) prefix: String,
    name: String,
    default_ttl: Duration,
    short_ttl: Duration,
    long_ttl: Duration,
    pub(crate) jitter_percent: u8,
    pub(crate) strict: bool,
    pub(crate) lock_wait: Duration,
    pub(crate) counters: Counters,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) factory_timeout: Option<Duration>,
    pub(crate) refresh_timeout: Duration,
    pub(crate) local: Option<Arc<Local>>,
    /// The last good bytes of fail-safe keys, for when the store cannot be read.
    pub(crate) last_good: moka::future::Cache<String, Arc<Vec<u8>>>,
    pub(crate) flights: Flights,
    pub(crate) errors: ErrorLog,
    /// Invalidations that could not reach the store, until they do.
    pub(crate) recovery: Arc<Recovery>,
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

/// Configures a [`Cache`]; made by [`Cache::builder`].
///
/// ```
/// use cache_core::{Cache, Config, Json, MemoryStore};
/// use std::time::Duration;
///
/// let cache = Cache::builder(MemoryStore::new())
///     .config(&Config::default())
///     .codec(Json)
///     .prefix("edu:")
///     .default_ttl(Duration::from_secs(3600))
///     .short_ttl(Duration::from_secs(300))
///     .long_ttl(Duration::from_secs(86_400))
///     .ttl_jitter(10)
///     .compress_over(Some(4096))
///     .max_value_bytes(8 * 1024 * 1024)
///     .lock_wait(Duration::from_secs(2))
///     .strict(false)
///     .build();
/// assert_eq!(cache.full_key("user:1"), "edu:user:1");
/// ```
#[derive(Debug)]
#[must_use = "call .build() to get the cache"]
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    codec: Arc<dyn Codec>,
    builtin: Option<Builtin>,
    prefix: String,
    default_ttl: Duration,
    short_ttl: Duration,
    long_ttl: Duration,
    compress_over: Option<usize>,
    max_value_bytes: usize,
    jitter_percent: u8,
    strict: bool,
    lock_wait: Duration,
    operation_timeout: Option<Duration>,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    fail_safe: Option<Duration>,
    factory_timeout: Option<Duration>,
    refresh_timeout: Duration,
    local: Option<(u64, Duration)>,
    pending_invalidations: usize,
    name: String,
    encryption: Option<EncryptionKeys>,
    encrypt_json: bool,
}

impl CacheBuilder {
    /// Names the cache (default `"default"`): the name is the `cache.name` label of every
    /// metric (feature `metrics`) and a field of every span of its operations, so that an
    /// application's caches can be told apart on a dashboard.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// let profiles = Cache::builder(MemoryStore::new()).name("profiles").build();
    /// assert_eq!(profiles.name(), "profiles");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Takes the expiry classes, key prefix and maximum value size from `config`.
    pub fn config(mut self, config: &Config) -> Self {
        self.default_ttl = config.default_ttl;
        self.short_ttl = config.short_ttl;
        self.long_ttl = config.long_ttl;
        self.prefix.clone_from(&config.key_prefix);
        self.max_value_bytes = config.max_value_bytes;
        self.operation_timeout = Some(config.cache_operation_timeout);
        self.breaker_threshold = u32::try_from(config.cache_breaker_threshold).unwrap_or(u32::MAX);
        self.breaker_cooldown = config.cache_breaker_cooldown;
        self.encryption.clone_from(&config.encryption_keys);
        self
    }

    /// Encrypts every value this cache stores (default `CACHE_ENCRYPTION_KEY`, off when
    /// unset), so that a Redis snapshot, replica or backup does not expose cached data: see
    /// [`EncryptionKeys`] for the format. The full Redis key is authenticated with the value,
    /// so a value copied under another key does not decrypt there. A stored value that does
    /// not decrypt (another key, altered, copied, or written unencrypted) is a miss: it is
    /// deleted and counted in [`CacheStats::decode_failures`], never an error. Plain JSON
    /// written by other programs is then unreadable, as it should be.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Store, Ttl};
    /// # use cache_core::encryption::EncryptionKeys;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// let store = MemoryStore::new();
    /// let keys = EncryptionKeys::new([[7u8; 32]]);
    /// let cache = Cache::builder(store.clone()).encryption(keys).build();
    /// cache.set("grades:42", &"A+", Ttl::Short).await?;
    /// let stored = store.get("grades:42").await?.expect("stored");
    /// assert!(!stored.windows(2).any(|w| w == b"A+"));
    /// assert_eq!(cache.get::<String>("grades:42").await?.as_deref(), Some("A+"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Not with the [`Json`](crate::codec::Json) codec unless you opt in with
    /// [`encrypt_json`](CacheBuilder::encrypt_json): `Json` promises plain JSON that other
    /// languages read, and sealed bytes break that promise.
    /// [`try_build`](CacheBuilder::try_build) refuses the combination with [`Error::Config`];
    /// [`build`](CacheBuilder::build) logs that error and refuses every write with it (never
    /// writing the values unencrypted), while reads still open sealed values.
    pub fn encryption(mut self, keys: Option<EncryptionKeys>) -> Self {
        self.encryption = keys;
        self
    }

    /// Lets a cache with the [`Json`](crate::codec::Json) codec encrypt its values (default
    /// `false`): its values are then sealed bytes, no longer plain JSON that other programs
    /// read. Without it, [`encryption`](CacheBuilder::encryption) with `Json` is refused.
    ///
    /// ```
    /// use cache_core::encryption::EncryptionKeys;
    /// use cache_core::{Cache, Json, MemoryStore};
    ///
    /// let keys = EncryptionKeys::new([[7u8; 32]]);
    /// let refused = Cache::builder(MemoryStore::new())
    ///     .codec(Json)
    ///     .encryption(keys.clone())
    ///     .try_build();
    /// assert!(refused.unwrap_err().to_string().contains("plain JSON"));
    /// let sealed = Cache::builder(MemoryStore::new())
    ///     .codec(Json)
    ///     .encryption(keys)
    ///     .encrypt_json(true)
    ///     .try_build();
    /// assert!(sealed.is_ok());
    /// ```
    pub fn encrypt_json(mut self, allow: bool) -> Self {
        self.encrypt_json = allow;
        self
    }

    /// The deadline of each store operation made through the cache (default
    /// `CACHE_OPERATION_TIMEOUT`, 0.5 s): a read that takes longer is a miss, a write that
    /// takes longer is a failed write. `None` leaves only the store's own timeout. Pattern and
    /// tag sweeps, whose length grows with the data, keep the store's timeout.
    pub fn operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Fail-safe for every computed value (default off): values are kept for `window` past
    /// their ttl, and a stale value is served when its recomputation fails, outlasts
    /// [`factory_timeout`](CacheBuilder::factory_timeout), or the store cannot be read and the
    /// computation fails (the last good value is then taken from a bounded in-process copy).
    /// Stale serves are counted in [`CacheStats::stale_served`]. Per call:
    /// [`SetOptions::stale_for`].
    ///
    /// Not with the [`Json`](crate::codec::Json) codec: the fail-safe stamps each value with
    /// its freshness in a binary header, and `Json` promises plain JSON that other languages
    /// read. [`try_build`](CacheBuilder::try_build) refuses the combination with
    /// [`Error::Config`]; [`build`](CacheBuilder::build) logs that error and leaves the
    /// fail-safe off; a per-call `stale_for` on a `Json` cache is refused when the value is
    /// written (through `get_or_set` and the macros: returned, not cached, and counted).
    pub fn fail_safe(mut self, window: Option<Duration>) -> Self {
        self.fail_safe = window;
        self
    }

    /// Adds an in-process first tier (L1) of at most `max_bytes`, keeping each value at most
    /// `ttl` and never longer than the store does. Reads check it first; writes and
    /// invalidations update it and publish a notice on the store's message bus (Redis pub/sub)
    /// so that every other process drops its copy; after a lost subscription the tier is
    /// cleared and bypassed until it is back. Needs a store with a bus (`RedisStore`), and
    /// every process sharing the keys should enable it, since only they publish notices.
    /// Default: off.
    pub fn local_cache(mut self, max_bytes: u64, ttl: Duration) -> Self {
        self.local = Some((max_bytes, ttl));
        self
    }

    /// How long a recomputation may take when a stale value could be served instead
    /// (default: no limit). When it runs out, the stale value is returned and the
    /// computation is dropped; without a stale value the computation always runs to the end.
    pub fn factory_timeout(mut self, limit: Option<Duration>) -> Self {
        self.factory_timeout = limit;
        self
    }

    /// How long an early refresh may compute (default 10 s, [`DEFAULT_REFRESH_TIMEOUT`]).
    /// A refresh that runs out is dropped and counted in
    /// [`CacheStats::early_refresh_failures`]; the current value stays until its ttl. A
    /// refresh holds its key's single flight, so this is also the longest a miss of that key
    /// waits on a refresh that hangs before computing the value itself.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # use std::time::Duration;
    /// let cache = Cache::builder(MemoryStore::new())
    ///     .refresh_timeout(Duration::from_secs(2))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn refresh_timeout(mut self, limit: Duration) -> Self {
        self.refresh_timeout = limit;
        self
    }

    /// Opens the circuit after `threshold` consecutive store failures (timeouts, lost
    /// connections): calls then skip the store (reads are misses, writes are dropped, both
    /// without waiting) until a background health check, every `cooldown`, finds it answering.
    /// Default `CACHE_BREAKER_THRESHOLD` (5) and `CACHE_BREAKER_COOLDOWN` (5 s); a threshold
    /// of 0 disables the breaker.
    pub fn circuit_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cooldown = cooldown;
        self
    }

    /// The value format: [`Bincode`] (default), [`Json`](crate::codec::Json) or your own.
    pub fn codec<C: Codec>(mut self, codec: C) -> Self {
        self.builtin = Builtin::of::<C>();
        self.codec = Arc::new(codec);
        self
    }

    /// A prefix prepended to every key this cache reads or writes (`"app:"`, say).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The ttl of writes that name [`Ttl::Default`].
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The ttl of [`Ttl::Short`] writes.
    pub fn short_ttl(mut self, ttl: Duration) -> Self {
        self.short_ttl = ttl;
        self
    }

    /// The ttl of [`Ttl::Long`] writes.
    pub fn long_ttl(mut self, ttl: Duration) -> Self {
        self.long_ttl = ttl;
        self
    }

    /// Compress encoded values larger than `bytes` with lz4 (default 1 KiB); `None` disables
    /// compression. Reads are transparent either way. Plain-JSON values are never compressed.
    pub fn compress_over(mut self, bytes: Option<usize>) -> Self {
        self.compress_over = bytes;
        self
    }

    /// The largest encoded value the cache writes (default 64 MiB); larger ones are refused
    /// with [`Error::ValueTooLarge`] and nothing is written.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Lengthens every ttl by a random 0 to `percent` % (capped at 100), so that keys written
    /// together do not all expire together.
    pub fn ttl_jitter(mut self, percent: u8) -> Self {
        self.jitter_percent = percent.min(100);
        self
    }

    /// Strict mode: store errors and timeouts are returned to callers of
    /// [`get`](Cache::get_or_set)-style methods instead of being degraded to misses.
    /// Off by default: caching never breaks the code it wraps.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// How long a caller that finds the distributed lock taken waits for the holder's value
    /// before computing it anyway (default 5 s). A holder whose future is dropped (a client
    /// that disconnected mid-request) releases the lock at once, in the background, so the
    /// waiters take over within a poll (20 ms); the lock also expires after `wait`, so a
    /// crashed process never blocks a key for longer.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How many invalidations (keys, patterns, tags, local-tier notices) this cache keeps
    /// while the store cannot take them (default 10,000).
    ///
    /// An invalidation that fails or is skipped by the open circuit is not lost: it waits in
    /// an in-process queue, de-duplicated, and is replayed in order as soon as the store
    /// answers (the replay starts when the circuit closes, which does not wait for it: an
    /// invalidation that cannot land, for a cluster node that is down, never keeps the rest of
    /// the cache from being served). While it waits, this process treats the
    /// keys it covers as misses (values, hashes, lists and sets alike), in the store and in
    /// the local tier; a pending tag
    /// invalidation makes every read a miss, since only the store knows the tag's keys.
    /// Counted in [`CacheStats::pending_invalidations`] and
    /// [`CacheStats::recovered_invalidations`].
    ///
    /// When more are waiting than `capacity`, the queue is replaced by one sweep of every
    /// key under the cache's [`prefix`](CacheBuilder::prefix) (counted in
    /// [`CacheStats::invalidation_overflows`] and logged): every read is a miss until the
    /// sweep has run. A cache without a prefix cannot sweep its own keys without touching
    /// other data in the database (sessions, say): instead, every read of this process is a
    /// miss until the values written before the overflow have expired (the longest expiry
    /// class, with jitter and fail-safe window; a longer exact ttl outlives it), and other
    /// instances may read replaced values until their ttl. Give a cache a prefix.
    pub fn pending_invalidations(mut self, capacity: usize) -> Self {
        self.pending_invalidations = capacity;
        self
    }

    /// Builds the cache, or says why its settings do not go together (today: the
    /// [`fail_safe`](CacheBuilder::fail_safe) with the [`Json`](crate::codec::Json) codec).
    ///
    /// ```
    /// use cache_core::{Cache, Json, MemoryStore};
    /// use std::time::Duration;
    ///
    /// let refused = Cache::builder(MemoryStore::new())
    ///     .codec(Json)
    ///     .fail_safe(Some(Duration::from_secs(60)))
    ///     .try_build();
    /// assert!(refused.unwrap_err().to_string().contains("plain JSON"));
    /// ```
    pub fn try_build(self) -> Result<Cache> {
        if let Some(window) = self.fail_safe {
            self.plain_json_refuses("fail_safe", window)?;
        }
        self.sealed_json_refused()?;
        Ok(self.build())
    }

    /// Refuses encryption with the `Json` codec unless [`encrypt_json`](CacheBuilder::encrypt_json).
    fn sealed_json_refused(&self) -> Result<()> {
        match (&self.encryption, self.builtin) {
            (Some(_), Some(Builtin::Json)) if !self.encrypt_json => {
                Err(crate::frame::sealed_json_refusal())
            }
            _ => Ok(()),
        }
    }

    /// The longest a value written with an expiry class lives, jitter and fail-safe window
    /// included.
    fn longest_lifetime(&self) -> Duration {
        let longest = self.default_ttl.max(self.short_ttl).max(self.long_ttl);
        longest
            .mul_f64(1.0 + f64::from(self.jitter_percent) / 100.0)
            .saturating_add(self.fail_safe.unwrap_or_default())
    }

    fn plain_json_refuses(&self, name: &'static str, window: Duration) -> Result<()> {
        match self.builtin {
            Some(Builtin::Json) => Err(crate::write::plain_json_refusal(
                name,
                format!("{window:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// Builds the cache. Settings that do not go together are logged as errors and the
    /// offending one left off; [`try_build`](CacheBuilder::try_build) returns them instead.
    pub fn build(mut self) -> Cache {
        if let Some(window) = self.fail_safe
            && let Err(err) = self.plain_json_refuses("fail_safe", window)
        {
            tracing::error!(error = %err, "the fail-safe stays off");
            self.fail_safe = None;
        }
        let refuse_writes = self.sealed_json_refused().err();
        if let Some(err) = &refuse_writes {
            tracing::error!(error = %err, "every write of this cache is refused");
        }
        let meter = Meter::new(&self.name, self.store.backend());
        let guarded = Guarded::new(
            Arc::clone(&self.store),
            self.operation_timeout,
            Breaker::new(self.breaker_threshold, self.breaker_cooldown, meter.clone()),
            meter.clone(),
        );
        let breaker = Arc::clone(&guarded.breaker);
        let local = self.local.map(|(max_bytes, ttl)| {
            let local = Arc::new(Local::new(max_bytes, ttl, &self.prefix, meter.clone()));
            match self.store.subscribe(&local.channel) {
                Some(events) => local.listen(events),
                None => tracing::warn!(
                    backend = self.store.backend(),
                    "the local cache needs a store with a message bus: it stays off"
                ),
            }
            local
        });
        let recovery = Arc::new(Recovery::new(
            Arc::clone(&self.store),
            self.operation_timeout.filter(|_| !self.store.in_process()),
            self.pending_invalidations,
            &self.prefix,
            self.longest_lifetime(),
            local.clone(),
            meter.clone(),
        ));
        breaker.replay_on_closing(&recovery);
        Cache {
            inner: Arc::new(Inner {
                recovery,
                guarded,
                memory: (&*self.store as &dyn std::any::Any)
                    .downcast_ref::<MemoryStore>()
                    .cloned(),
                store: self.store,
                breaker,
                format: Format {
                    codec_id: self.codec.id().0,
                    codec: self.codec,
                    builtin: self.builtin,
                    compress_over: self.compress_over,
                    max_value_bytes: self.max_value_bytes,
                    encryption: self.encryption,
                    refuse_writes: refuse_writes.is_some(),
                },
                prefix: self.prefix,
                name: self.name,
                default_ttl: self.default_ttl,
                short_ttl: self.short_ttl,
                long_ttl: self.long_ttl,
                jitter_percent: self.jitter_percent,
                strict: self.strict,
                lock_wait: self.lock_wait,
                counters: Counters::new(meter),
                fail_safe: self.fail_safe,
                local,
                factory_timeout: self.factory_timeout,
                refresh_timeout: self.refresh_timeout,
                last_good: moka::future::Cache::builder()
                    .max_capacity(LAST_GOOD_BYTES)
                    .weigher(|key: &String, bytes: &Arc<Vec<u8>>| {
                        u32::try_from(key.len() + bytes.len()).unwrap_or(u32::MAX)
                    })
                    .build(),
                flights: Flights::default(),
                errors: ErrorLog::default(),
            }),
        }
    }
}

impl Cache {
    /// Starts configuring a cache over `store`.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.store().backend(), "memory");
    /// ```
    pub fn builder(store: impl Store) -> CacheBuilder {
        Cache::builder_shared(Arc::new(store))
    }

    /// Starts configuring a cache over a store that is shared with other users (a session
    /// manager, another cache with another prefix).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Store};
    /// # use std::sync::Arc;
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    /// let users = Cache::builder_shared(store.clone()).prefix("users:").build();
    /// let classes = Cache::builder_shared(store).prefix("classes:").build();
    /// # let _ = (users, classes);
    /// ```
    pub fn builder_shared(store: Arc<dyn Store>) -> CacheBuilder {
        let defaults = Config::default();
        CacheBuilder {
            store,
            codec: Arc::new(Bincode),
            builtin: Some(Builtin::Bincode),
            prefix: String::new(),
            default_ttl: defaults.default_ttl,
            short_ttl: defaults.short_ttl,
            long_ttl: defaults.long_ttl,
            compress_over: Some(DEFAULT_COMPRESS_OVER),
            max_value_bytes: defaults.max_value_bytes,
            jitter_percent: 0,
            strict: false,
            lock_wait: Duration::from_secs(5),
            operation_timeout: Some(defaults.cache_operation_timeout),
            breaker_threshold: u32::try_from(defaults.cache_breaker_threshold).unwrap_or(u32::MAX),
            breaker_cooldown: defaults.cache_breaker_cooldown,
            fail_safe: None,
            factory_timeout: None,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            local: None,
            pending_invalidations: DEFAULT_PENDING_INVALIDATIONS,
            name: "default".into(),
            encryption: None,
            encrypt_json: false,
        }
    }

    /// A cache as `config` describes it: on Redis when `redis_url` is set (connected lazily,
    /// so an unreachable server does not stop start-up), else on a [`MemoryStore`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// let cache = cache_core::Cache::from_config(&cache_core::Config::default())?;
    /// assert_eq!(cache.store().backend(), "memory");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_config(config: &Config) -> Result<Cache> {
        let store: Arc<dyn Store> = match config.redis_url {
            Some(_) => Arc::new(RedisStore::connect_lazy(config)?),
            None => Arc::new(MemoryStore::new()),
        };
        Ok(Cache::builder_shared(store).config(config).build())
    }

    /// [`Config::from_env`] then [`Cache::from_config`]: Redis if `REDIS_URL` is set, else
    /// the in-process store.
    ///
    /// ```no_run
    /// # async fn demo() -> cache_core::Result<()> {
    /// let cache = cache_core::Cache::from_env().await?;
    /// println!("caching on {}", cache.store().backend());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn from_env() -> Result<Cache> {
        Cache::from_config(&Config::from_env()?)
    }

    /// The cache's name ([`CacheBuilder::name`], `"default"` unless set).
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
    /// ([`CacheBuilder::local_cache`]), `Some(false)` while its invalidation subscription is
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

    #[inline(always)]
    pub(crate) fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        match self.inner.format.decode_common(bytes) {
            Some(value) => Some(value),
            None => self.decode_in_general(key, bytes),
        }
    }

    /// [`decode`](Cache::decode) of what the common case does not cover: stamped,
    /// compressed, sealed, JSON or custom-codec values, and failures (reported).
    #[inline(never)]
    fn decode_in_general<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        self.decode_stamped(key, bytes).map(|(value, _)| value)
    }

    /// Decodes a value and its stamp.
    #[inline(always)]
    pub(crate) fn decode_stamped<T: DeserializeOwned>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Option<(T, Stamp)> {
        match self.inner.format.decode_stamped(key, bytes) {
            Ok(decoded) => Some(decoded),
            Err(err) => self.undecodable(key, &err),
        }
    }

    /// Decodes the value of a hash field, reporting a failure.
    fn decode_field<T: DeserializeOwned>(&self, key: &str, field: &str, bytes: &[u8]) -> Option<T> {
        match self.inner.format.decode_field(key, field, bytes) {
            Ok(value) => Some(value),
            Err(err) => self.undecodable(key, &err),
        }
    }

    #[cold]
    fn undecodable<T>(&self, key: &str, err: &Error) -> Option<T> {
        self.inner.counters.count(Event::DecodeFailure, 1);
        tracing::warn!(key, error = %err, "discarding a cached value that does not decode");
        None
    }

    pub(crate) fn record_read(&self, hit: bool) {
        let event = if hit { Event::Hit } else { Event::Miss };
        self.inner.counters.count(event, 1);
    }

    /// Reads a value.
    ///
    /// A stored value that does not decode as `T` (corrupt, another codec, another type) is a
    /// miss: it is deleted and counted in [`CacheStats::decode_failures`]. Store errors are
    /// returned.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.get::<u32>("missing").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let value = self
            .read_or_degrade::<Strict, T>(&self.full_key(key))
            .await?;
        self.record_read(value.is_some());
        Ok(value)
    }

    pub(crate) async fn discard(&self, full_key: &str) {
        if let Some(local) = &self.inner.local {
            local.forget(&[full_key.to_owned()], &[]).await;
        }
        if let Err(err) = self.inner.guarded.delete(full_key).await {
            self.inner.counters.error();
            tracing::warn!(key = full_key, error = %err, "could not delete an undecodable value");
        }
    }

    /// Writes a value that expires after `ttl` (a [`Duration`], an expiry class, `None` for
    /// the default class, or [`SetOptions`] to add tags).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, SetOptions, Ttl};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("analytics:daily", &vec![1, 2, 3], Ttl::Short).await?;
    /// cache.set("grading:result:7", &"A+", Duration::from_secs(86_400)).await?;
    /// cache.set("class:students:3", &["ada", "alan"], None).await?;
    /// cache.set("user:profile:42", &"Ada", SetOptions::new(Ttl::Long).tags(["user:42"])).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: impl Into<SetOptions>,
    ) -> Result<()> {
        let options = options.into();
        let full = self.full_key(key);
        let prepared = self.prepare(&full, value, &options, options.stale_window(), None)?;
        self.commit(&[prepared], options.tag_names(), Condition::Always)
            .await
            .map(drop)
    }

    /// Drops the local copies of `keys` and of keys matching `patterns` here and, through a
    /// notice on the store's bus, in every other process.
    pub(crate) async fn announce(&self, keys: &[String], patterns: &[String]) {
        let Some(local) = &self.inner.local else {
            return;
        };
        local.forget(keys, patterns).await;
        let notice = local.notice(keys, patterns);
        let published = self.counted(self.inner.guarded.publish(&local.channel, &notice).await);
        if let Err(err) = published {
            self.keep_if_retryable(&err, || {
                [Pending::Notice {
                    keys: keys.to_vec(),
                    patterns: patterns.to_vec(),
                }]
            });
            let _ = self.degrade::<Lenient>("PUBLISH", &local.channel, err);
        }
    }

    /// Keeps invalidations for replay when `err` says the store may take them later.
    pub(crate) fn keep_if_retryable<I: IntoIterator<Item = Pending>>(
        &self,
        err: &Error,
        pending: impl FnOnce() -> I,
    ) {
        if err.is_transient() || matches!(err, Error::CircuitOpen { .. }) {
            self.inner.recovery.keep(pending());
        }
    }

    /// Removes `keys` from the store, this process's tiers and every other process's local
    /// tier; keys the store cannot remove now are kept and removed once it answers.
    pub(crate) async fn invalidate_keys(&self, keys: &[String]) -> Result<u64> {
        for key in keys {
            self.inner.last_good.invalidate(key).await;
        }
        let removed = self.unlink_with_records(keys).await;
        match self.counted(removed) {
            Ok(removed) => {
                self.announce(keys, &[]).await;
                Ok(removed)
            }
            Err(err) => {
                if let Some(local) = &self.inner.local {
                    local.forget(keys, &[]).await;
                }
                self.keep_if_retryable(&err, || keys.iter().cloned().map(Pending::Key));
                Err(err)
            }
        }
    }

    /// Removes `keys` and their tag records ([`crate::key::tags_record`]), in one round trip;
    /// returns how many of `keys` existed. A record that cannot be removed is logged: it
    /// expires with its key's old ttl.
    pub(crate) async fn unlink_with_records(&self, keys: &[String]) -> Result<u64> {
        let Some(first) = keys.first() else {
            return Ok(0);
        };
        let records: Vec<String> = keys
            .iter()
            .map(|key| crate::key::tags_record_of(key))
            .collect();
        let removing = async {
            match keys {
                [key] => self.inner.guarded.delete(key).await.map(u64::from),
                keys => self.inner.guarded.delete_many(keys).await,
            }
        };
        let (removed, records) = join(removing, self.inner.guarded.delete_many(&records)).await;
        if let Err(err) = self.counted(records) {
            let _ = self.degrade::<Lenient>("UNLINK", first, err);
        }
        removed
    }

    /// Adds `members` (store keys) to the index of every tag in `tags`.
    pub(crate) async fn record_tags(
        &self,
        members: &[String],
        ttl: Duration,
        tags: &[String],
    ) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tag_keys: Vec<String> = tags.iter().map(|tag| self.tag_key(tag)).collect();
        let names: Vec<Vec<u8>> = tags.iter().map(|tag| tag.clone().into_bytes()).collect();
        let tags_of: Vec<String> = members
            .iter()
            .map(|member| crate::key::tags_record_of(member))
            .collect();
        let indexes = tag_keys
            .iter()
            .map(|tag_key| self.inner.guarded.tag(tag_key, members, ttl));
        let reverse = tags_of
            .iter()
            .map(|key| async { self.inner.guarded.sadd(key, &names, ttl).await.map(drop) });
        // Concurrent, so that a tagged write costs one round trip more, not one per tag and key.
        let (indexed, reversed) = join(join_all(indexes), join_all(reverse)).await;
        indexed
            .into_iter()
            .chain(reversed)
            .map(|recorded| self.counted(recorded))
            .fold(Ok(()), Result::and)
    }

    /// Moves `full_key`'s entry in each of its tags' indexes to its new expiry.
    async fn retag(&self, full_key: &str, ttl: Duration) -> Result<()> {
        let tags_of = crate::key::tags_record_of(full_key);
        let tags = self.counted(self.inner.guarded.smembers(&tags_of).await)?;
        if tags.is_empty() {
            return Ok(());
        }
        let member = [full_key.to_owned()];
        for tag in &tags {
            let tag_key = self.tag_key(&String::from_utf8_lossy(tag));
            self.counted(self.inner.guarded.tag(&tag_key, &member, ttl).await)?;
        }
        self.counted(self.inner.guarded.expire(&tags_of, ttl).await)?;
        Ok(())
    }

    /// The store key of a tag's index.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        format!("{}{}tag:{tag}", self.inner.prefix, crate::key::RESERVED)
    }

    /// Removes a key; returns whether it existed.
    ///
    /// When the store cannot be reached (an error, a timeout, the open circuit), the error is
    /// returned and the removal is not lost: it is replayed as soon as the store answers,
    /// and this process reads the key as a miss until then (see
    /// [`CacheBuilder::pending_invalidations`]). The same holds for
    /// [`delete_multi`](Cache::delete_multi), [`invalidate_pattern`](Cache::invalidate_pattern),
    /// [`invalidate_tag`](Cache::invalidate_tag) and `#[invalidate_cache]`.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("k", &1, None).await?;
    /// assert!(cache.delete("k").await?);
    /// assert!(!cache.delete("k").await?);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(name = "cache.invalidate", level = "debug", skip_all, fields(cache.name = self.name(), kind = "key"))]
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let removed = self
            .invalidate_keys(&[self.full_key(key).into_owned()])
            .await?;
        self.inner.counters.count(Event::Delete, removed);
        Ok(removed > 0)
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
        self.counted(self.inner.guarded.exists(&self.full_key(key)).await)
    }

    /// Gives an existing key a new ttl; returns whether the key existed. A tagged key stays
    /// in its tags' indexes for its new lifetime, so [`invalidate_tag`](Cache::invalidate_tag)
    /// still removes it.
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
        self.counted(self.inner.guarded.ttl(&self.full_key(key)).await)
    }

    /// Sets a field of a hash to an encoded value and refreshes the hash's ttl; returns
    /// whether the field is new.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.hset("user:42", "name", &"Ada", None).await?;
    /// assert_eq!(cache.hget::<String>("user:42", "name").await?.as_deref(), Some("Ada"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hset<T: Serialize + ?Sized>(
        &self,
        key: &str,
        field: &str,
        value: &T,
        ttl: impl Into<Ttl>,
    ) -> Result<bool> {
        let full = self.full_key(key);
        let ttl = self.ttl_for(&full, ttl)?;
        let bytes = self.inner.format.encode_field(&full, field, value)?;
        let added = self.counted(self.inner.guarded.hset(&full, field, &bytes, ttl).await)?;
        self.inner.counters.count(Event::Set, 1);
        Ok(added)
    }

    /// Reads a field of a hash; a field that does not decode is a miss and is removed.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.hget::<u32>("user:42", "age").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hget<T: DeserializeOwned>(&self, key: &str, field: &str) -> Result<Option<T>> {
        let full = self.full_key(key);
        if self.inner.recovery.hides(&full) {
            self.record_read(false);
            return Ok(None);
        }
        let bytes = self.counted(self.inner.guarded.hget(&full, field).await)?;
        let value = match bytes {
            None => None,
            Some(bytes) => {
                let value = self.decode_field(&full, field, &bytes);
                if value.is_none() {
                    let _ = self.counted(self.inner.guarded.hdel(&full, field).await);
                }
                value
            }
        };
        self.record_read(value.is_some());
        Ok(value)
    }

    /// Reads every field of a hash whose value decodes as `T`; fields that do not decode are
    /// skipped and counted.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.hset("scores", "ada", &92u32, None).await?;
    /// let all: Vec<(String, u32)> = cache.hgetall("scores").await?;
    /// assert_eq!(all, vec![("ada".to_owned(), 92)]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hgetall<T: DeserializeOwned>(&self, key: &str) -> Result<Vec<(String, T)>> {
        let full = self.full_key(key);
        if self.inner.recovery.hides(&full) {
            return Ok(Vec::new());
        }
        let fields = self.counted(self.inner.guarded.hgetall(&full).await)?;
        Ok(fields
            .into_iter()
            .filter_map(|(field, bytes)| {
                let value = self.decode_field(&full, &field, &bytes)?;
                Some((field, value))
            })
            .collect())
    }

    /// Removes a field of a hash; returns whether it existed.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.hset("user:42", "name", &"Ada", None).await?;
    /// assert!(cache.hdel("user:42", "name").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.counted(self.inner.guarded.hdel(&self.full_key(key), field).await)
    }

    fn encode_all<T: Serialize>(&self, key: &str, values: &[T]) -> Result<Vec<Vec<u8>>> {
        values
            .iter()
            .map(|value| self.inner.format.encode(key, value))
            .collect()
    }

    /// Prepends values to a list and refreshes its ttl; returns the new length.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.lpush("recent", &["b", "a"], None).await?;
    /// assert_eq!(cache.lrange::<String>("recent", 0, -1).await?, ["a", "b"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lpush<T: Serialize>(
        &self,
        key: &str,
        values: &[T],
        ttl: impl Into<Ttl>,
    ) -> Result<u64> {
        let full = self.full_key(key);
        let ttl = self.ttl_for(&full, ttl)?;
        let encoded = self.encode_all(&full, values)?;
        self.counted(self.inner.guarded.lpush(&full, &encoded, ttl).await)
    }

    /// Appends values to a list and refreshes its ttl; returns the new length.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.rpush("log", &[1, 2], None).await?;
    /// assert_eq!(cache.rpush("log", &[3], None).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn rpush<T: Serialize>(
        &self,
        key: &str,
        values: &[T],
        ttl: impl Into<Ttl>,
    ) -> Result<u64> {
        let full = self.full_key(key);
        let ttl = self.ttl_for(&full, ttl)?;
        let encoded = self.encode_all(&full, values)?;
        self.counted(self.inner.guarded.rpush(&full, &encoded, ttl).await)
    }

    /// Reads a range of a list (inclusive, negative indexes count from the end); elements
    /// that do not decode are skipped and counted.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.rpush("log", &[1u32, 2, 3], None).await?;
    /// assert_eq!(cache.lrange::<u32>("log", -2, -1).await?, [2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lrange<T: DeserializeOwned>(
        &self,
        key: &str,
        start: i64,
        stop: i64,
    ) -> Result<Vec<T>> {
        let full = self.full_key(key);
        if self.inner.recovery.hides(&full) {
            return Ok(Vec::new());
        }
        let items = self.counted(self.inner.guarded.lrange(&full, start, stop).await)?;
        Ok(items
            .iter()
            .filter_map(|bytes| self.decode(&full, bytes))
            .collect())
    }

    /// Adds members to a set and refreshes its ttl; returns how many were new.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// assert_eq!(cache.sadd("online", &["ada", "alan", "ada"], None).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sadd<T: Serialize>(
        &self,
        key: &str,
        members: &[T],
        ttl: impl Into<Ttl>,
    ) -> Result<u64> {
        let full = self.full_key(key);
        let ttl = self.ttl_for(&full, ttl)?;
        let mut current = Vec::with_capacity(members.len());
        let mut earlier = Vec::new();
        for member in members {
            let mut forms = self.inner.format.encode_member(&full, member)?.into_iter();
            current.extend(forms.next());
            earlier.extend(forms);
        }
        let added = self.counted(self.inner.guarded.sadd(&full, &current, ttl).await)?;
        if earlier.is_empty() {
            return Ok(added);
        }
        // After a key rotation a member may be stored sealed under an old key: it is
        // replaced, not duplicated, and was not new.
        match self.counted(self.inner.guarded.srem(&full, &earlier).await) {
            Ok(replaced) => Ok(added.saturating_sub(replaced)),
            Err(err) => {
                let _ = self.degrade::<Lenient>("SREM", &full, err);
                Ok(added)
            }
        }
    }

    /// Removes members from a set; returns how many were present.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.sadd("online", &["ada"], None).await?;
    /// assert_eq!(cache.srem("online", &["ada", "bob"]).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn srem<T: Serialize>(&self, key: &str, members: &[T]) -> Result<u64> {
        let full = self.full_key(key);
        let mut every_form = Vec::with_capacity(members.len());
        for member in members {
            every_form.extend(self.inner.format.encode_member(&full, member)?);
        }
        self.counted(self.inner.guarded.srem(&full, &every_form).await)
    }

    /// Reads every member of a set, in no particular order; members that do not decode are
    /// skipped and counted.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.sadd("online", &["ada"], None).await?;
    /// assert_eq!(cache.smembers::<String>("online").await?, ["ada"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn smembers<T: DeserializeOwned>(&self, key: &str) -> Result<Vec<T>> {
        let full = self.full_key(key);
        if self.inner.recovery.hides(&full) {
            return Ok(Vec::new());
        }
        let members = self.counted(self.inner.guarded.smembers(&full).await)?;
        Ok(self
            .inner
            .format
            .distinct_members(&full, &members)
            .into_iter()
            .filter_map(|bytes| self.decode(&full, bytes))
            .collect())
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
        stats.short_circuits = self.inner.breaker.short_circuits.load(Ordering::Relaxed);
        stats.circuit_trips = self.inner.breaker.trips.load(Ordering::Relaxed);
        stats.local_hits = self
            .inner
            .local
            .as_ref()
            .map_or(0, |local| local.hits.load(Ordering::Relaxed));
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
        self.inner
            .breaker
            .short_circuits
            .store(0, Ordering::Relaxed);
        self.inner.breaker.trips.store(0, Ordering::Relaxed);
        if let Some(local) = &self.inner.local {
            local.hits.store(0, Ordering::Relaxed);
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
