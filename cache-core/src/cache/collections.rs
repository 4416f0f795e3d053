//! Typed hashes, lists and sets: their values and members pass through the codec and the
//! seal like any value, hash values bound to their field.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::degrade::Lenient;
use crate::error::Result;
use crate::telemetry::Event;
use crate::ttl::Ttl;

impl Cache {
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
        let added = self.counted(
            self.on_collection(&full, None, || {
                self.inner.guarded.hset(&full, field, &bytes, ttl)
            })
            .await,
        )?;
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
        let bytes = self
            .read_stored(
                &full,
                None,
                self.on_collection(&full, Some(None), || self.inner.guarded.hget(&full, field)),
            )
            .await?;
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
        let fields = self
            .read_stored(
                &full,
                Vec::new(),
                self.on_collection(&full, Some(Vec::new()), || {
                    self.inner.guarded.hgetall(&full)
                }),
            )
            .await?;
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
        let full = self.full_key(key);
        let removal =
            self.on_collection(&full, Some(false), || self.inner.guarded.hdel(&full, field));
        self.counted(removal.await)
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
        let push = self.on_collection(&full, None, || {
            self.inner.guarded.lpush(&full, &encoded, ttl)
        });
        self.counted(push.await)
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
        let push = self.on_collection(&full, None, || {
            self.inner.guarded.rpush(&full, &encoded, ttl)
        });
        self.counted(push.await)
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
        let items = self
            .read_stored(
                &full,
                Vec::new(),
                self.on_collection(&full, Some(Vec::new()), || {
                    self.inner.guarded.lrange(&full, start, stop)
                }),
            )
            .await?;
        Ok(self.decode_each(&full, items.iter().map(Vec::as_slice)))
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
        let add = self.on_collection(&full, None, || {
            self.inner.guarded.sadd(&full, &current, ttl)
        });
        let added = self.counted(add.await)?;
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
        let removal = self.on_collection(&full, Some(0), || {
            self.inner.guarded.srem(&full, &every_form)
        });
        self.counted(removal.await)
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
        let members = self
            .read_stored(
                &full,
                Vec::new(),
                self.on_collection(&full, Some(Vec::new()), || {
                    self.inner.guarded.smembers(&full)
                }),
            )
            .await?;
        let distinct = self.inner.format.distinct_members(&full, &members);
        Ok(self.decode_each(&full, distinct))
    }
}
