//! Reading a value: decoding its bytes (a failure is a miss, counted and deleted) and the
//! plain `get`. The get-or-set read path is in `compute.rs`.

use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::degrade::Strict;
use crate::error::{Error, Result};
use crate::frame::Stamp;
use crate::telemetry::Event;

impl Cache {
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
