//! Multi-key operations and invalidation.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Result;
use crate::key::escape_glob;
use crate::recovery::Pending;
use crate::telemetry::Event;
use crate::ttl::SetOptions;
use crate::write::{Condition, Prepared};

const DELETE_BATCH: usize = 1000;

impl Cache {
    fn full_keys<K: AsRef<str>>(&self, keys: &[K]) -> Vec<String> {
        keys.iter()
            .map(|key| self.full_key(key.as_ref()).into_owned())
            .collect()
    }

    /// Reads several values in one round trip (`MGET`); the result has one entry per key, in
    /// order. Values that do not decode are misses, and are deleted and counted.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set_multi(&[("key1", 1u32), ("key3", 3)], Ttl::Default).await?;
    /// let values = cache.get_multi::<u32, _>(&["key1", "key2", "key3"]).await?;
    /// assert_eq!(values, [Some(1), None, Some(3)]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_multi<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>> {
        // Without a prefix the keys are the store's keys: nothing to build per key.
        let prefixed: Vec<String>;
        let names: Vec<&str> = match self.inner.prefix.is_empty() {
            true => keys.iter().map(AsRef::as_ref).collect(),
            false => {
                prefixed = self.full_keys(keys);
                prefixed.iter().map(String::as_str).collect()
            }
        };
        let found = self.counted(self.inner.guarded.mget(&names).await)?;
        let mut undecodable = Vec::new();
        let hiding = self.inner.recovery.is_hiding();
        let values: Vec<Option<T>> = found
            .into_iter()
            .zip(names)
            .map(|(bytes, key)| {
                if hiding && self.inner.recovery.hides(key) {
                    return None;
                }
                let value = self.decode(key, bytes.as_deref()?);
                if value.is_none() {
                    undecodable.push(key.to_owned());
                }
                value
            })
            .collect();
        let hits = values.iter().filter(|value| value.is_some()).count() as u64;
        self.inner.counters.count(Event::Hit, hits);
        self.inner
            .counters
            .count(Event::Miss, values.len() as u64 - hits);
        if !undecodable.is_empty() {
            let _ = self.counted(self.inner.guarded.delete_many(&undecodable).await);
        }
        Ok(values)
    }

    /// Writes several values with the same ttl class and tags, in one pipeline. With
    /// [`ttl_jitter`](crate::CacheBuilder::ttl_jitter), each key draws its own jitter.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let data = [("key1", "value1"), ("key2", "value2")];
    /// cache.set_multi(&data, Ttl::Default).await?;
    /// assert_eq!(cache.stats().sets, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_multi<K: AsRef<str>, T: Serialize>(
        &self,
        items: &[(K, T)],
        options: impl Into<SetOptions>,
    ) -> Result<()> {
        let options = options.into();
        if items.is_empty() {
            return Ok(());
        }
        let prepared = items
            .iter()
            .map(|(key, value)| {
                let full = self.full_key(key.as_ref());
                self.prepare(&full, value, &options, options.stale_window(), None)
            })
            .collect::<Result<Vec<Prepared>>>()?;
        self.commit(&prepared, options.tag_names(), Condition::Always)
            .await
            .map(drop)
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
    /// cursored `SCAN` + `UNLINK` in batches, never `KEYS`; returns how many were removed.
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
        match self.counted(self.inner.guarded.delete_matching(&full).await) {
            Ok(removed) => {
                self.inner.counters.count(Event::Delete, removed);
                self.announce(&[], &[full]).await;
                Ok(removed)
            }
            Err(err) => {
                if let Some(local) = &self.inner.local {
                    local.forget(&[], std::slice::from_ref(&full)).await;
                }
                self.keep_if_retryable(&err, || [Pending::Pattern(full)]);
                Err(err)
            }
        }
    }

    /// Removes every live value written with `tag` (see [`SetOptions::tags`]); returns how
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
                        local.forget(rest, &[]).await;
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
