//! The distributed lock of one key (`SetOptions::lock`): `SET NX PX` with a random token,
//! released only by its holder.

use crate::cache::Cache;
use crate::degrade::Lenient;
use crate::error::Result;
use crate::random::random_token;

/// The distributed lock of one key, held by this caller. Dropped without
/// [`release`](HeldLock::release) (the caller's future was cancelled), it is released in the
/// background at once, so that the waiters in every process take over without waiting for
/// it to expire.
pub(crate) struct HeldLock {
    cache: Cache,
    key: String,
    token: [u8; 16],
    released: bool,
}

impl HeldLock {
    pub(crate) async fn release(mut self) {
        self.released = true;
        self.cache.release_lock(&self.key, &self.token).await;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, key, token) = (
            self.cache.clone(),
            std::mem::take(&mut self.key),
            self.token,
        );
        runtime.spawn(async move { cache.release_lock(&key, &token).await });
    }
}

impl Cache {
    pub(crate) fn lock_key(full_key: &str) -> String {
        format!("{full_key}.{}lock", crate::key::RESERVED)
    }

    /// Takes the distributed lock of `full_key` if it is free (`None` when it is held).
    pub(crate) async fn acquire_lock(&self, full_key: &str) -> Result<Option<HeldLock>> {
        let token = random_token();
        let lock_key = Cache::lock_key(full_key);
        let acquired = self.counted(
            self.inner
                .guarded
                .set_if_absent(&lock_key, &token, self.inner.lock_wait)
                .await,
        )?;
        Ok(acquired.then(|| HeldLock {
            cache: self.clone(),
            key: full_key.to_owned(),
            token,
            released: false,
        }))
    }

    /// [`acquire_lock`](Cache::acquire_lock), a store failure logged and counted as the lock
    /// not taken.
    pub(crate) async fn try_lock(&self, full_key: &str) -> Option<HeldLock> {
        match self.acquire_lock(full_key).await {
            Ok(held) => held,
            Err(err) => {
                let _ = self.degrade::<Lenient>("SET NX", &Cache::lock_key(full_key), err);
                None
            }
        }
    }

    pub(crate) async fn release_lock(&self, full_key: &str, token: &[u8]) {
        let lock_key = Cache::lock_key(full_key);
        let released = self.counted(self.inner.guarded.delete_if_equals(&lock_key, token).await);
        if let Err(err) = released {
            let _ = self.degrade::<Lenient>("DELETE IF EQUALS", &lock_key, err);
        }
    }
}
