//! Multi-key operations and invalidation.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::cache::write::Prepared;
use crate::degrade::Strict;
use crate::error::Result;
use crate::telemetry::Event;
use crate::ttl::SetOptions;

pub(super) const DELETE_BATCH: usize = 1000;

impl Cache {
    pub(super) fn full_keys<K: AsRef<str>>(&self, keys: &[K]) -> Vec<String> {
        keys.iter()
            .map(|key| self.full_key(key.as_ref()).into_owned())
            .collect()
    }

    /// Reads several values in one round trip (`MGET`); the result has one entry per key, in
    /// order. Values that do not decode are misses, and are deleted and counted. Each key
    /// goes through the same read stages as [`get`](Cache::get): a key with a pending
    /// invalidation is absent, the local tier answers what it holds (only the other keys are
    /// read from the store) and keeps a copy of what the store returns, and a fail-safe value
    /// past its ttl is a miss.
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
        let values: Vec<Option<T>> = self.fetch_many::<Strict, T, Option<T>>(&names).await?;
        let hits = values.iter().filter(|value| value.is_some()).count() as u64;
        self.inner.counters.count(Event::Hit, hits);
        self.inner
            .counters
            .count(Event::Miss, values.len() as u64 - hits);
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
        self.commit(&prepared, options.tag_names()).await.map(drop)
    }
}
