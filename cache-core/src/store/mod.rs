//! Byte-level storage backends.
//!
//! [`Store`] is the object-safe interface the [`Cache`](crate::Cache) and the session manager
//! are written against; [`RedisStore`] and [`MemoryStore`] implement it and pass one
//! conformance suite. Keys are strings, values are raw bytes, and every write carries a ttl.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::health::HealthReport;

pub(crate) mod cluster;
pub(crate) mod endpoint;
pub(crate) mod guard;
mod memory;
mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::{RedisConnection, RedisStore};
pub use crate::fence::{FENCE_PREFIX, is_marker};

/// What a conditional write ([`Store::set_many_if`]) expects the key to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected<'a> {
    /// Anything: a plain `SET`.
    Anything,
    /// Nothing: `SET NX`.
    Nothing,
    /// Exactly these bytes (a compare-and-set, as [`Store::replace_if_equals`]).
    Bytes(&'a [u8]),
}

/// The remaining lifetime of a key, as reported by [`Store::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// The key does not exist.
    Missing,
    /// The key exists and never expires (written outside cachemere).
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

/// What a [`Store::subscribe`] subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// The subscription is (again) active: messages from now on will arrive.
    Subscribed,
    /// The connection was lost: messages may be missed until the next `Subscribed`.
    Interrupted,
    /// A published message.
    Message(Vec<u8>),
    /// From now on, until the next `Interrupted`, the subscription also reports every change
    /// any client makes to the watched keys ([`Store::watch`]; Redis `CLIENT TRACKING`),
    /// sent right after `Subscribed`.
    Tracking,
    /// These keys were changed, by any client (a write, a deletion, an expiry or an
    /// eviction).
    Changed(Vec<String>),
    /// The server forgot what it tracked (a `FLUSHALL`, or it ran out of memory to track):
    /// any key may have changed.
    ChangedAll,
}

/// A key-value store over bytes with per-key expiry.
///
/// Every method is one round trip to the backend. Methods that take several keys do the work
/// in one command or pipeline, whatever the number of keys.
///
/// # Implementing a store
///
/// A third-party store is a full backend of [`Cache`](crate::Cache): every stage of the
/// cache (codec, stamps, encryption, tags through [`tag`](Store::tag) and
/// [`take_tagged`](Store::take_tagged), early refresh through
/// [`replace_if_equals`](Store::replace_if_equals), the fail-safe, the recovery queue, the
/// circuit breaker) runs on top of these methods, and the deadline of each operation is put
/// around them by the cache when [`with_deadline`](Store::with_deadline) returns `None`.
/// Run the conformance suite of `cache-core/tests/store_conformance.rs` against it. What it
/// must do beyond the method docs:
///
/// - [`delete_matching`](Store::delete_matching) never matches keys holding
///   [`key::RESERVED`](crate::key::RESERVED), and removes the
///   [`key::tags_record`](crate::key::tags_record) of each key it removes;
/// - [`answers`](Store::answers) must be cheap: the breaker's probe calls it every cool-down.
///
/// What it does not get, because the cache recognises the built-in stores by type:
///
/// - the in-process fast path of [`MemoryStore`] (a hit copies the decoded value it keeps
///   instead of decoding bytes);
/// - the allocation-free hit path of [`RedisStore`] (`GET` and `MGET` awaited in place rather
///   than through this trait's boxed futures: about 1,000 instructions per hit);
/// - the local tier ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache)), unless
///   the store implements [`publish`](Store::publish) and [`subscribe`](Store::subscribe).
///
/// [`in_process`](Store::in_process) returning `true` tells the cache to put no deadline on
/// the store's operations: only for a store that cannot wait on a network.
#[async_trait]
pub trait Store: std::any::Any + fmt::Debug + Send + Sync + 'static {
    /// A short name for the backend (`"redis"`, `"memory"`), for logs and health reports.
    fn backend(&self) -> &'static str;

    /// Whether the store lives in this process, so that its operations cannot hang on a
    /// network: a [`Cache`](crate::Cache) then puts no deadline on them (and needs no timer).
    fn in_process(&self) -> bool {
        false
    }

    /// A handle on this store, sharing its connections, that bounds each request by
    /// `deadline` itself (or by the store's own timeout where that is shorter), a timeout
    /// failing with [`Error::Timeout`](crate::Error::Timeout); `None` (the default) if the
    /// store cannot.
    ///
    /// A [`Cache`](crate::Cache) with an operation deadline (`CACHE_OPERATION_TIMEOUT`) sends
    /// its requests through such a handle, so that each one runs under a single timer;
    /// without one, the cache wraps each request in a timeout of its own.
    fn with_deadline(&self, deadline: Duration) -> Option<std::sync::Arc<dyn Store>> {
        let _ = deadline;
        None
    }

    /// Reads a plain value.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Writes a plain value that expires after `ttl`, replacing whatever the key held.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;

    /// Removes a key of any type; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Whether a key of any type exists.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// Sets a new ttl on an existing key; returns whether the key existed.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;

    /// The remaining lifetime of a key.
    async fn ttl(&self, key: &str) -> Result<KeyTtl>;

    /// Reads several plain values at once; the result has one entry per key, in order.
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Writes several plain values, each expiring after its own ttl.
    async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()>;

    /// Removes several keys; returns how many existed.
    async fn delete_many(&self, keys: &[String]) -> Result<u64>;

    /// Removes every key matching a Redis glob `pattern` (`*`, `?`, `[...]`, `\` escapes),
    /// by cursored scan, never by `KEYS`; returns how many were removed. Keys holding
    /// [`key::RESERVED`](crate::key::RESERVED) (cachemere's locks and tag indexes) are not
    /// matched, but each removed key's [`key::tags_record`](crate::key::tags_record) is
    /// removed with it (not counted): a third-party store must do the same, or tag records
    /// of swept keys stay until their ttl.
    ///
    /// Build patterns from caller input with [`escape_glob`](crate::key::escape_glob).
    async fn delete_matching(&self, pattern: &str) -> Result<u64>;

    /// Sets a field of a hash and refreshes the hash's ttl; returns whether the field is new.
    async fn hset(&self, key: &str, field: &str, value: &[u8], ttl: Duration) -> Result<bool>;

    /// Reads a field of a hash.
    async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>>;

    /// Reads every field of a hash (empty when the key does not exist).
    async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>>;

    /// Removes a field of a hash; returns whether it existed.
    async fn hdel(&self, key: &str, field: &str) -> Result<bool>;

    /// Prepends values to a list (the last value ends up first) and refreshes its ttl; returns
    /// the new length.
    async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64>;

    /// Appends values to a list and refreshes its ttl; returns the new length.
    async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64>;

    /// Reads a range of a list; `start` and `stop` are inclusive and may count from the end
    /// (`-1` is the last element), as in Redis.
    async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>>;

    /// Adds members to a set and refreshes its ttl; returns how many were new.
    async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64>;

    /// Removes members from a set; returns how many were present.
    async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64>;

    /// Reads every member of a set, in no particular order.
    async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>>;

    /// Writes a plain value only if the key does not exist; returns whether it was written.
    /// This is the acquire step of a lock (`SET NX PX`).
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;

    /// Removes a key only if it holds exactly `expected`; returns whether it was removed.
    /// This is the token-checked release step of a lock.
    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool>;

    /// Overwrites a key with a plain `value` expiring after `ttl`, only if it holds exactly
    /// `expected`, atomically; returns whether it was written. Early refresh writes with it,
    /// so that a value deleted (invalidated) or rewritten while it was being recomputed is
    /// not overwritten by the recomputation.
    async fn replace_if_equals(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool>;

    /// Invalidates `keys` and fences them: each key that holds a plain value or nothing is
    /// set to `marker` for `window` (so that a write expecting what was there before fails,
    /// see [`set_many_if`](Store::set_many_if)); a key of another type (hash, list, set) is
    /// removed. Returns how many keys held something other than a marker (bytes starting
    /// with [`FENCE_PREFIX`]), as [`delete_many`](Store::delete_many) counts what it removed.
    ///
    /// The default runs [`get`](Store::get), then [`set`](Store::set) or
    /// [`delete`](Store::delete), key by key: a store that can should do each key atomically
    /// and all of them in one round trip, as [`RedisStore`] (a script) and [`MemoryStore`] do.
    async fn fence(&self, keys: &[String], marker: &[u8], window: Duration) -> Result<u64> {
        let mut held = 0;
        for key in keys {
            match self.get(key).await {
                Ok(found) => {
                    held += u64::from(found.is_some_and(|bytes| !is_marker(&bytes)));
                    self.set(key, marker, window).await?;
                }
                Err(crate::Error::WrongType { .. }) => {
                    held += u64::from(self.delete(key).await?);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(held)
    }

    /// [`delete_matching`](Store::delete_matching), but [fencing](Store::fence) the keys it
    /// finds instead of removing them; returns how many held a value (markers do not
    /// count). The tag records of the keys found are removed, as `delete_matching` does.
    ///
    /// The default removes them with `delete_matching` (markers it finds then count, and
    /// are removed): a store that can should fence, as [`RedisStore`] and [`MemoryStore`] do.
    async fn fence_matching(&self, pattern: &str, marker: &[u8], window: Duration) -> Result<u64> {
        let _ = (marker, window);
        self.delete_matching(pattern).await
    }

    /// Writes several plain values, each only if its key holds what it [expects](Expected),
    /// each expiring after its own ttl; returns, in order, whether each was written. A
    /// get-or-set miss writes this way (one round trip for a batch), so that a value whose
    /// key was invalidated (and [fenced](Store::fence)) while it was computed is not stored.
    ///
    /// The default runs [`set`](Store::set), [`set_if_absent`](Store::set_if_absent) or
    /// [`replace_if_equals`](Store::replace_if_equals) for each write; [`RedisStore`]
    /// pipelines them.
    async fn set_many_if(
        &self,
        writes: &[(&str, &[u8], Duration, Expected<'_>)],
    ) -> Result<Vec<bool>> {
        let mut written = Vec::with_capacity(writes.len());
        for &(key, value, ttl, expected) in writes {
            written.push(match expected {
                Expected::Anything => self.set(key, value, ttl).await.map(|()| true)?,
                Expected::Nothing => self.set_if_absent(key, value, ttl).await?,
                Expected::Bytes(bytes) => self.replace_if_equals(key, bytes, value, ttl).await?,
            });
        }
        Ok(written)
    }

    /// Records that `members` (store keys) carry the tag whose index lives at `tag_key`, each
    /// for `ttl`. Entries whose ttl has passed are pruned, and the index itself lives exactly
    /// as long as its longest-lived entry, so it never outgrows the live keys it tracks.
    async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()>;

    /// Removes the tag index at `tag_key` and returns the members that were still live.
    async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>>;

    /// Probes the backend: reachability, round-trip latency and server facts.
    async fn health_check(&self) -> HealthReport;

    /// Whether the store serves requests again, for a circuit breaker deciding to close: by
    /// default, whether its health check passes. A Redis Cluster answers as soon as any
    /// primary does, since the slots of a lost node fail on their own.
    async fn answers(&self) -> bool {
        self.health_check().await.healthy
    }

    /// For a store spread over several servers (a Redis Cluster): which server each of `keys`
    /// lives on, as groups of indices into `keys`, each with its server's name (its address
    /// for Redis), in the order of each group's first key. `None` (the default) for a store
    /// on one server, or while the store does not know its layout.
    ///
    /// A [`Cache`](crate::Cache) keeps a circuit breaker per server this names, so that a
    /// lost server fails fast for its own keys only, and splits each multi-key operation
    /// into one per server, so that the keys of the servers that answer are still served.
    /// It is called on the error path, on every multi-key operation, and on every
    /// operation while a server's breaker has failures counted: it must be cheap (no I/O).
    ///
    /// ```
    /// # use cache_core::{MemoryStore, Store};
    /// assert_eq!(MemoryStore::new().locate(&["a", "b"]), None);
    /// ```
    fn locate(&self, keys: &[&str]) -> Option<Vec<(String, Vec<usize>)>> {
        let _ = keys;
        None
    }

    /// Whether the keys that lived on `server` (a name [`locate`](Store::locate) gave) are
    /// served again: the server answers, or its keys moved to another one (a replica took
    /// over). A server's circuit breaker asks it every cool-down while it is open; by default,
    /// [`answers`](Store::answers).
    async fn answers_for(&self, server: &str) -> bool {
        let _ = server;
        self.answers().await
    }

    /// Reads a value and its remaining lifetime together (one round trip where the backend
    /// can pipeline them).
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
        match self.get(key).await? {
            Some(bytes) => Ok(Some((bytes, self.ttl(key).await?))),
            None => Ok(None),
        }
    }

    /// Reads several values and their remaining lifetimes; the result has one entry per key,
    /// in order. The default reads the values in one [`mget`](Store::mget), then the
    /// lifetime of each value found with [`ttl`](Store::ttl); a backend that can pipeline
    /// should do it all in one round trip, as [`RedisStore`] does.
    async fn mget_with_ttl(&self, keys: &[&str]) -> Result<Vec<Option<(Vec<u8>, KeyTtl)>>> {
        let mut found = Vec::with_capacity(keys.len());
        for (key, bytes) in keys.iter().zip(self.mget(keys).await?) {
            found.push(match bytes {
                Some(bytes) => Some((bytes, self.ttl(key).await?)),
                None => None,
            });
        }
        Ok(found)
    }

    /// Sends `message` to every subscriber of `channel` in any process sharing the store
    /// (Redis `PUBLISH`). Stores without a message bus do nothing.
    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        let _ = (channel, message);
        Ok(())
    }

    /// Subscribes to `channel`, re-subscribing after connection losses; `None` for stores
    /// without a message bus. The subscription ends when the receiver is dropped.
    fn subscribe(&self, channel: &str) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        let _ = channel;
        None
    }

    /// [`subscribe`](Store::subscribe), and where the store can, reports of every change any
    /// client makes to keys starting with `prefix` ([`BusEvent::Tracking`], then
    /// [`BusEvent::Changed`]); by default, `subscribe` alone. Redis 6 and later track the
    /// keys (`CLIENT TRACKING ON BCAST PREFIX`) on one server, under Sentinel and on every
    /// primary of a cluster; a server that refuses it gives `subscribe` alone, and so does a
    /// cluster while one of its primaries cannot be reached (tracking is tried again every
    /// 10 s).
    fn watch(&self, channel: &str, prefix: &str) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        let _ = prefix;
        self.subscribe(channel)
    }
}
