//! Invalidation: keys, patterns and tags removed from the store and every local tier, and
//! kept for replay when the store cannot take them (see `recovery.rs`).

use crate::cache::Cache;
use crate::cache::multi::DELETE_BATCH;
use crate::degrade::Lenient;
use crate::error::{Error, Result};
use crate::key::escape_glob;
use crate::recovery::Pending;
use crate::telemetry::Event;
use futures_util::future::join;

impl Cache {
    /// Drops the local copies of `keys` and of keys matching `patterns` here and, through a
    /// notice on the store's bus, in every other process.
    pub(crate) async fn announce(&self, keys: &[String], patterns: &[String]) {
        let Some(local) = &self.inner.local else {
            return;
        };
        local.forget(keys, patterns);
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
            self.inner.last_good.invalidate(key);
        }
        let removed = self.unlink_with_records(keys).await;
        match self.counted(removed) {
            Ok(removed) => {
                self.announce(keys, &[]).await;
                Ok(removed)
            }
            Err(err) => {
                if let Some(local) = &self.inner.local {
                    local.forget(keys, &[]);
                }
                self.keep_if_retryable(&err, || keys.iter().cloned().map(Pending::Key));
                Err(err)
            }
        }
    }

    /// Removes (or [fences](crate::CacheBuilder::fence)) `keys` and removes their tag records
    /// ([`crate::key::tags_record`]), in one round trip;
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
        let removing = self.inner.guarded.remove(keys, self.inner.fence);
        let (removed, records) = join(removing, self.inner.guarded.delete_many(&records)).await;
        if let Err(err) = self.counted(records) {
            let _ = self.degrade::<Lenient>("UNLINK", first, err);
        }
        removed
    }

    /// Removes a key; returns whether it existed.
    ///
    /// When the store cannot be reached (an error, a timeout, the open circuit), the error is
    /// returned and the removal is not lost: it is replayed as soon as the store answers,
    /// and this process reads the key as a miss until then (see
    /// [`CacheBuilder::pending_invalidations`](crate::CacheBuilder::pending_invalidations)). The same holds for
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

    /// Removes several keys in one round trip (`UNLINK`); returns how many existed.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("a", &1u8, Ttl::Default).await?;
    /// assert_eq!(cache.delete_multi(&["a", "b"]).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(name = "cache.invalidate", level = "debug", skip_all, fields(cache.name = self.name(), kind = "keys"))]
    pub async fn delete_multi<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let full = self.full_keys(keys);
        if full.is_empty() {
            return Ok(0);
        }
        let removed = self.invalidate_keys(&full).await?;
        self.inner.counters.count(Event::Delete, removed);
        Ok(removed)
    }

    /// Removes every key matching a Redis glob `pattern` (behind the cache's prefix), by
    /// cursored `SCAN` in batches, never `KEYS`, each batch removed (with the
    /// [fence](crate::CacheBuilder::fence): fenced) in one request; returns how many held a
    /// value.
    ///
    /// Escape anything that comes from outside the program with
    /// [`escape_glob`](crate::key::escape_glob), so that a user id of `*` cannot widen the
    /// invalidation to every user.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl, key::escape_glob};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("user:profile:42", &1u8, Ttl::Default).await?;
    /// cache.set("user:classes:42", &2u8, Ttl::Default).await?;
    /// cache.set("user:profile:7", &3u8, Ttl::Default).await?;
    /// let user_id = "42";
    /// let removed = cache.invalidate_pattern(&format!("user:*:{}", escape_glob(user_id))).await?;
    /// assert_eq!(removed, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(name = "cache.invalidate", level = "debug", skip_all, fields(cache.name = self.name(), kind = "pattern"))]
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        let full = format!("{}{pattern}", escape_glob(&self.inner.prefix));
        self.inner.last_good.invalidate_all();
        let swept = self.inner.guarded.remove_matching(&full, self.inner.fence);
        match self.counted(swept.await) {
            Ok(removed) => {
                self.inner.counters.count(Event::Delete, removed);
                self.announce(&[], &[full]).await;
                Ok(removed)
            }
            Err(err) => {
                if let Some(local) = &self.inner.local {
                    local.forget(&[], std::slice::from_ref(&full));
                }
                self.keep_if_retryable(&err, || [Pending::Pattern(full)]);
                Err(err)
            }
        }
    }

    /// Removes every live value written with `tag` (see [`SetOptions::tags`](crate::SetOptions::tags)); returns how
    /// many were removed. Values that expired on their own are simply gone already.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, SetOptions, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let tagged = SetOptions::new(Ttl::Default).tags(["user:42"]);
    /// cache.set("user:profile:42", &"Ada", tagged.clone()).await?;
    /// cache.set("ai:context:42", &"...", tagged).await?;
    /// assert_eq!(cache.invalidate_tag("user:42").await?, 2);
    /// assert!(!cache.exists("user:profile:42").await?);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(name = "cache.invalidate", level = "debug", skip_all, fields(cache.name = self.name(), kind = "tag"))]
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        let tag_key = self.tag_key(tag);
        self.inner.last_good.invalidate_all();
        let members = match self.counted(self.inner.guarded.take_tagged(&tag_key).await) {
            Ok(members) => members,
            Err(err) => {
                self.keep_if_retryable(&err, || [Pending::Tag(tag_key)]);
                return Err(err);
            }
        };
        let mut removed = 0;
        for (done, batch) in members.chunks(DELETE_BATCH).enumerate() {
            match self.counted(self.unlink_with_records(batch).await) {
                Ok(count) => removed += count,
                Err(err) => {
                    let rest = &members[done * DELETE_BATCH..];
                    if let Some(local) = &self.inner.local {
                        local.forget(rest, &[]);
                    }
                    self.keep_if_retryable(&err, || rest.iter().cloned().map(Pending::Key));
                    return Err(err);
                }
            }
        }
        self.inner.counters.count(Event::Delete, removed);
        self.announce(&members, &[]).await;
        Ok(removed)
    }
}
