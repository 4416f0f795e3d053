//! Configuring a [`Cache`]: [`CacheBuilder`] and the constructors.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Inner};
use crate::codec::{Bincode, Codec};
use crate::config::Config;
use crate::encryption::EncryptionKeys;
use crate::error::Result;
use crate::flight::Flights;
use crate::frame::{Builtin, Format};
use crate::local::Local;
use crate::log::ErrorLog;
use crate::recovery::Recovery;
use crate::stats::Counters;
use crate::store::guard::Guarded;
use crate::store::{MemoryStore, RedisStore, Store};
use crate::telemetry::{Meter, Place};

const DEFAULT_COMPRESS_OVER: usize = 1024;
/// Memory for the fail-safe's in-process copies of last good values.
const LAST_GOOD_BYTES: u64 = 64 * 1024 * 1024;
/// The default [`CacheBuilder::refresh_timeout`](crate::CacheBuilder::refresh_timeout).
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`CacheBuilder::pending_invalidations`](crate::CacheBuilder::pending_invalidations).
pub const DEFAULT_PENDING_INVALIDATIONS: usize = 10_000;

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
    local_stale_window: Duration,
    pending_invalidations: usize,
    /// `None`: the default for the codec.
    fence: Option<Option<Duration>>,
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
    /// deleted and counted in [`CacheStats::decode_failures`](crate::CacheStats::decode_failures), never an error. Plain JSON
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
    /// [`try_build`](CacheBuilder::try_build) refuses the combination with [`Error::Config`](crate::Error::Config);
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
    /// Stale serves are counted in [`CacheStats::stale_served`](crate::CacheStats::stale_served). Per call:
    /// [`SetOptions::stale_for`](crate::SetOptions::stale_for).
    ///
    /// Not with the [`Json`](crate::codec::Json) codec: the fail-safe stamps each value with
    /// its freshness in a binary header, and `Json` promises plain JSON that other languages
    /// read. [`try_build`](CacheBuilder::try_build) refuses the combination with
    /// [`Error::Config`](crate::Error::Config); [`build`](CacheBuilder::build) logs that error and leaves the
    /// fail-safe off; a per-call `stale_for` on a `Json` cache is refused when the value is
    /// written (through `get_or_set` and the macros: returned, not cached, and counted).
    pub fn fail_safe(mut self, window: Option<Duration>) -> Self {
        self.fail_safe = window;
        self
    }

    /// Adds an in-process first tier (L1) of at most `max_bytes`, keeping each value at most
    /// `ttl` and never longer than the store does. Reads check it first; writes and
    /// invalidations update it and publish a notice on the store's message bus (Redis pub/sub)
    /// so that every other process drops its copy. On Redis 6 and later (one server or
    /// Sentinel) the server also reports every change any client makes to the cache's keys
    /// (`CLIENT TRACKING` in broadcast mode, see [`LocalMode`](crate::LocalMode)), so writes by
    /// other programs drop the copies too. After a lost subscription the tier is cleared and
    /// bypassed until it is back (see
    /// [`local_cache_stale_window`](CacheBuilder::local_cache_stale_window)). Needs a store
    /// with a bus (`RedisStore`). Default: off.
    pub fn local_cache(mut self, max_bytes: u64, ttl: Duration) -> Self {
        self.local = Some((max_bytes, ttl));
        self
    }

    /// How long the local tier keeps serving the copies it has after its subscription is
    /// lost (the server killed, or silent past the bus's ping): changes made meanwhile are
    /// missed, so copies may be stale by up to this long; such reads are counted in
    /// [`CacheStats::local_stale_hits`](crate::CacheStats::local_stale_hits) (metric
    /// `cachemere.cache.local_stale_hits`). Then every copy is dropped. Default: zero, drop
    /// them at once (what Redis's documentation asks of tracking clients).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// # use std::time::Duration;
    /// let cache = Cache::builder(MemoryStore::new())
    ///     .local_cache(16 << 20, Duration::from_secs(30))
    ///     .local_cache_stale_window(Duration::from_millis(500))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn local_cache_stale_window(mut self, window: Duration) -> Self {
        self.local_stale_window = window;
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
    /// [`CacheStats::early_refresh_failures`](crate::CacheStats::early_refresh_failures); the current value stays until its ttl. A
    /// refresh holds its key's single flight, so this is also the longest a miss of that key
    /// waits on a refresh that hangs before computing the value itself. The bound needs a
    /// tokio runtime with its timer (`#[tokio::main]` has one); under another executor (an
    /// in-process store needs no runtime) refreshes run unbounded.
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

    /// The value format: [`Bincode`](crate::Bincode) (default), [`Json`](crate::codec::Json) or your own.
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

    /// The ttl of writes that name [`Ttl::Default`](crate::Ttl::Default).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The ttl of [`Ttl::Short`](crate::Ttl::Short) writes.
    pub fn short_ttl(mut self, ttl: Duration) -> Self {
        self.short_ttl = ttl;
        self
    }

    /// The ttl of [`Ttl::Long`](crate::Ttl::Long) writes.
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
    /// with [`Error::ValueTooLarge`](crate::Error::ValueTooLarge) and nothing is written.
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
    /// keys it covers as misses (values, hashes, lists and sets alike; `exists` is false and `ttl` is `Missing`), in the store and in
    /// the local tier; a pending tag
    /// invalidation makes every read a miss, since only the store knows the tag's keys.
    /// Counted in [`CacheStats::pending_invalidations`](crate::CacheStats::pending_invalidations) and
    /// [`CacheStats::recovered_invalidations`](crate::CacheStats::recovered_invalidations).
    ///
    /// When more are waiting than `capacity`, the queue is replaced by one sweep of every
    /// key under the cache's [`prefix`](CacheBuilder::prefix) (counted in
    /// [`CacheStats::invalidation_overflows`](crate::CacheStats::invalidation_overflows) and logged): every read is a miss until the
    /// sweep has run. A cache without a prefix cannot sweep its own keys without touching
    /// other data in the database (sessions, say): instead, every read of this process is a
    /// miss until the values written before the overflow have expired (the longest expiry
    /// class, with jitter and fail-safe window; a longer exact ttl outlives it), and other
    /// instances may read replaced values until their ttl. Give a cache a prefix.
    pub fn pending_invalidations(mut self, capacity: usize) -> Self {
        self.pending_invalidations = capacity;
        self
    }

    /// How long an invalidation fences its key (default 60 s; `None` or zero: off), so that
    /// a get-or-set that computed from data read before the invalidation does not store its
    /// value after it (the cache-aside race: a miss reads the database, a writer updates it
    /// and invalidates the key, then the miss writes the old value back for a whole ttl).
    ///
    /// An invalidation ([`delete`](crate::Cache::delete),
    /// [`delete_multi`](crate::Cache::delete_multi),
    /// [`invalidate_tag`](crate::Cache::invalidate_tag),
    /// [`invalidate_pattern`](crate::Cache::invalidate_pattern), `#[invalidate_cache]`, and
    /// their replays) then leaves a short marker in each key for `window` instead of removing it,
    /// and a get-or-set miss writes only over what its read found: `SET NX` over nothing,
    /// a compare-and-set over a marker or a stale value. A value that loses is returned to
    /// its caller but not stored, counted in
    /// [`CacheStats::fenced_writes`](crate::CacheStats::fenced_writes). Hits cost nothing
    /// more; a miss writes with one `SET NX` (or one script over a marker) instead of one
    /// `SET`. A miss over nothing whose computation outlasts half the window does not write
    /// (a marker left meanwhile may have expired): keep the window above twice your slowest
    /// computation.
    ///
    /// Off by default with the [`Json`](crate::codec::Json) codec, whose keys other
    /// languages read: they would read a marker (bytes starting with
    /// [`FENCE_PREFIX`](crate::store::FENCE_PREFIX), which is not JSON) for the window after
    /// each invalidation. Turn it on there when only cachemere reads the keys. A tag or
    /// pattern invalidation fences the keys it finds: a key that does not exist yet (a miss
    /// computing it) is not found, so it is not fenced.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// let cache = Cache::builder(MemoryStore::new())
    ///     .fence(Some(Duration::from_secs(30)))
    ///     .build();
    /// let database = std::sync::Mutex::new(String::from("old"));
    /// let read = cache.get_or_set("user:42", Ttl::Default, || async {
    ///     let before = database.lock().unwrap().clone();
    ///     // meanwhile a writer updates the database and invalidates the key
    ///     *database.lock().unwrap() = "new".into();
    ///     cache.delete("user:42").await.unwrap();
    ///     before
    /// });
    /// assert_eq!(read.await?, "old"); // its caller gets what it computed,
    /// assert_eq!(cache.get::<String>("user:42").await?, None); // but it was not stored
    /// assert_eq!(cache.stats().fenced_writes, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fence(mut self, window: Option<Duration>) -> Self {
        self.fence = Some(window.filter(|window| !window.is_zero()));
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
            Some(Builtin::Json) => Err(crate::cache::write::plain_json_refusal(
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
        let place = Place::of(&*self.store);
        let meter = Meter::new(&self.name, self.store.backend(), &place);
        let guarded = Guarded::new(
            Arc::clone(&self.store),
            self.operation_timeout,
            (self.breaker_threshold, self.breaker_cooldown),
            meter.clone(),
            place,
        );
        let breakers = Arc::clone(&guarded.breakers);
        let local = self.local.map(|(max_bytes, ttl)| {
            let local = Arc::new(Local::new(
                max_bytes,
                ttl,
                self.local_stale_window,
                &self.prefix,
                meter.clone(),
            ));
            local.report_size();
            match self.store.watch(&local.channel, &self.prefix) {
                Some(events) => local.listen(events),
                None => tracing::warn!(
                    backend = self.store.backend(),
                    "the local cache needs a store with a message bus: it stays off"
                ),
            }
            local
        });
        let fence = self.fence.unwrap_or(match self.builtin {
            Some(Builtin::Json) => None,
            _ => Some(crate::fence::DEFAULT_WINDOW),
        });
        let recovery = Arc::new(
            Recovery::new(
                Arc::clone(&self.store),
                self.operation_timeout.filter(|_| !self.store.in_process()),
                self.pending_invalidations,
                &self.prefix,
                self.longest_lifetime(),
                local.clone(),
                meter.clone(),
            )
            .fenced(fence),
        );
        breakers.replay_on_closing(&recovery);
        Cache {
            inner: Arc::new(Inner {
                recovery,
                guarded,
                memory: (&*self.store as &dyn std::any::Any)
                    .downcast_ref::<MemoryStore>()
                    .cloned(),
                store: self.store,
                breakers,
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
                fence,
                local,
                factory_timeout: self.factory_timeout,
                refresh_timeout: self.refresh_timeout,
                last_good: moka::sync::Cache::builder()
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
            local_stale_window: Duration::ZERO,
            pending_invalidations: DEFAULT_PENDING_INVALIDATIONS,
            fence: None,
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
}
