//! How the operations that do not decode a value see an invalidation's fence marker (see
//! `fence.rs`): as nothing. `exists` and `ttl` report it missing, `expire` leaves it, a
//! collection read finds nothing there, and a collection write replaces it.

use std::future::Future;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::fence::is_marker;
use crate::store::KeyTtl;

impl Cache {
    /// The remaining lifetime of `full_key`, a marker's reported as [`KeyTtl::Missing`].
    /// Only a key that expires within the fence window can be a marker: only such a key is
    /// read (a second round trip) to tell, and only by a cache that fences.
    pub(crate) async fn lifetime(&self, full_key: &str) -> Result<KeyTtl> {
        let ttl = self
            .read_stored(full_key, KeyTtl::Missing, self.inner.guarded.ttl(full_key))
            .await?;
        let Some(window) = self.inner.fence else {
            return Ok(ttl);
        };
        match ttl {
            KeyTtl::ExpiresIn(left) if left <= window => {
                match self.counted(self.marker_at(full_key).await)? {
                    Some(_) => Ok(KeyTtl::Missing),
                    None => Ok(ttl),
                }
            }
            ttl => Ok(ttl),
        }
    }

    /// The marker `full_key` holds, if it holds one (a collection does not).
    async fn marker_at(&self, full_key: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.guarded.get(full_key).await {
            Ok(found) => Ok(found.filter(|bytes| is_marker(bytes))),
            Err(Error::WrongType { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A command on the collection at `full_key`, where a marker may stand (a string, so
    /// the command fails with [`Error::WrongType`]): a read or a removal (`absent` given)
    /// then finds nothing; a write removes the marker and runs again. Errors are returned
    /// as they are, for the caller to count.
    pub(crate) async fn on_collection<R, Fut>(
        &self,
        full_key: &str,
        absent: Option<R>,
        command: impl Fn() -> Fut,
    ) -> Result<R>
    where
        Fut: Future<Output = Result<R>>,
    {
        let failed = match command().await {
            Err(err @ Error::WrongType { .. }) => err,
            result => return result,
        };
        let Some(marker) = self.marker_at(full_key).await? else {
            return Err(failed);
        };
        match absent {
            Some(absent) => Ok(absent),
            None => {
                self.inner
                    .guarded
                    .delete_if_equals(full_key, &marker)
                    .await?;
                command().await
            }
        }
    }
}
