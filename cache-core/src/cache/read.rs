//! The read stages every read shares: a key that a pending invalidation may cover reads as
//! absent ([`Cache::hidden`]), the store read is counted ([`Cache::read_stored`]), and bytes
//! that do not decode are a miss, counted ([`Cache::decode`]). `get`, `exists`, `ttl`, the
//! collections and `get_multi` use them; the get-or-set read (`compute.rs`'s `fetch`) starts
//! with the same [`hidden`](Cache::hidden) and adds the local tier and the stamps.

use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::degrade::Strict;
use crate::error::{Error, Result};
use crate::frame::Stamp;
use crate::telemetry::Event;

impl Cache {
    /// Whether a read of `full_key` must be absent because an invalidation that may cover it
    /// has not reached the store yet (see
    /// [`CacheBuilder::pending_invalidations`](crate::CacheBuilder::pending_invalidations)).
    #[inline]
    pub(crate) fn hidden(&self, full_key: &str) -> bool {
        self.inner.recovery.hides(full_key)
    }

    /// Reads `full_key` from the store through the shared stages: `absent` without a round
    /// trip when the key is [`hidden`](Cache::hidden), else `read`'s result, its error
    /// counted.
    pub(crate) async fn read_stored<R>(
        &self,
        full_key: &str,
        absent: R,
        read: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        if self.hidden(full_key) {
            return Ok(absent);
        }
        self.counted(read.await)
    }

    /// Decodes each of several stored values of `full_key` (list items, set members),
    /// skipping and counting those that do not decode.
    pub(crate) fn decode_each<'b, T: DeserializeOwned>(
        &self,
        full_key: &str,
        values: impl IntoIterator<Item = &'b [u8]>,
    ) -> Vec<T> {
        values
            .into_iter()
            .filter_map(|bytes| self.decode(full_key, bytes))
            .collect()
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
    pub(crate) fn decode_field<T: DeserializeOwned>(
        &self,
        key: &str,
        field: &str,
        bytes: &[u8],
    ) -> Option<T> {
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
    /// miss: it is deleted and counted in [`CacheStats::decode_failures`](crate::CacheStats::decode_failures). Store errors are
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
}
