//! Coalescing for callers that ask one key at a time (a GraphQL resolver, a data loader):
//! loads made within one scheduling tick become one [`get_or_set_multi`](Cache::get_or_set_multi).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::ttl::SetOptions;

type KeyOf<I> = dyn Fn(&I) -> String + Send + Sync;
type LoadFuture<I, T> = Pin<Box<dyn Future<Output = Vec<(I, T)>> + Send>>;
type Load<I, T> = dyn Fn(Vec<I>) -> LoadFuture<I, T> + Send + Sync;
/// A batch's outcome, shared by every load that joined it.
type Outcome<I, T> = Option<Arc<std::result::Result<HashMap<I, T>, Arc<Error>>>>;

/// Loads values one id at a time, joining the loads made within one scheduling tick into one
/// [`get_or_set_multi`](Cache::get_or_set_multi): one `MGET` and one call of the batch
/// function for all of them. Made by [`Cache::loader`]; cheap to clone.
pub struct BatchLoader<I, T> {
    inner: Arc<Shared<I, T>>,
}

struct Shared<I, T> {
    cache: Cache,
    key: Box<KeyOf<I>>,
    options: SetOptions,
    load: Arc<Load<I, T>>,
    /// The batch that loads are joining, until its dispatch takes it.
    open: Mutex<Option<Batch<I, T>>>,
}

struct Batch<I, T> {
    ids: Vec<I>,
    done: watch::Receiver<Outcome<I, T>>,
}

impl<I, T> Clone for BatchLoader<I, T> {
    fn clone(&self) -> Self {
        BatchLoader {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<I, T> fmt::Debug for BatchLoader<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchLoader")
            .field("cache", &self.inner.cache.name())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A [`BatchLoader`]: `load(id)` calls made within one scheduling tick are joined into
    /// one [`get_or_set_multi`](Cache::get_or_set_multi), so that a thousand resolvers
    /// asking for one user each cost one `MGET` and at most one call of `load` with the
    /// missing ids.
    ///
    /// `key` gives each id's cache key and `load` loads a batch of ids, returning the
    /// values it found (ids it leaves out have no value). In a tokio runtime the batch runs
    /// as its own task, so a caller that is cancelled does not cancel the others' batch;
    /// under another executor the load that opened the batch runs it (the others fail with
    /// [`Error::ComputationFailed`] if it is cancelled).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let users = cache.loader(
    ///     |id: &u64| format!("user:name:{id}"),
    ///     Ttl::Default,
    ///     |ids: Vec<u64>| async move {
    ///         ids.into_iter().map(|id| (id, format!("user {id}"))).collect::<Vec<_>>()
    ///     },
    /// );
    /// let (ada, alan) = tokio::join!(users.load(1), users.load(2));
    /// assert_eq!(ada?.as_deref(), Some("user 1"));
    /// assert_eq!(alan?.as_deref(), Some("user 2"));
    /// assert_eq!(cache.stats().misses, 2, "both in one batch");
    /// # Ok(())
    /// # }
    /// ```
    pub fn loader<I, T, K, F, Fut, L>(
        &self,
        key: K,
        options: impl Into<SetOptions>,
        load: F,
    ) -> BatchLoader<I, T>
    where
        I: Eq + Hash + Clone + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        K: Fn(&I) -> String + Send + Sync + 'static,
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = L> + Send + 'static,
        L: IntoIterator<Item = (I, T)> + 'static,
    {
        let load = move |ids: Vec<I>| -> LoadFuture<I, T> {
            let loading = load(ids);
            Box::pin(async move { loading.await.into_iter().collect() })
        };
        BatchLoader {
            inner: Arc::new(Shared {
                cache: self.clone(),
                key: Box::new(key),
                options: options.into(),
                load: Arc::new(load),
                open: Mutex::new(None),
            }),
        }
    }
}

impl<I, T> BatchLoader<I, T>
where
    I: Eq + Hash + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The value of `id`: cached, or loaded in the batch of this tick; `None` if the batch
    /// function has no value for it.
    ///
    /// A store failure is degraded as in [`get_or_set_multi`](Cache::get_or_set_multi);
    /// in [strict](crate::CacheBuilder::strict) mode every load of the batch fails with
    /// [`Error::BatchFailed`]. A batch whose function panicked fails its loads with
    /// [`Error::ComputationFailed`].
    pub async fn load(&self, id: I) -> Result<Option<T>> {
        let (mut done, dispatch) = self.join(id.clone());
        if let Some(dispatch) = dispatch {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(dispatch)),
                // Without a tokio runtime the caller that opened the batch runs it.
                Err(_) => dispatch.await,
            }
        }
        let outcome = match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome.as_deref() {
            Some(Ok(found)) => Ok(found.get(&id).cloned()),
            Some(Err(err)) => Err(Error::BatchFailed {
                source: Arc::clone(err),
            }),
            None => Err(Error::ComputationFailed {
                key: (self.inner.key)(&id),
            }),
        }
    }

    /// Adds `id` to the open batch; if there is none, opens one and returns its dispatch,
    /// to run after this tick.
    fn join(
        &self,
        id: I,
    ) -> (
        watch::Receiver<Outcome<I, T>>,
        Option<impl Future<Output = ()> + Send + 'static + use<I, T>>,
    ) {
        let mut open = lock(&self.inner.open);
        if let Some(batch) = open.as_mut() {
            batch.ids.push(id);
            return (batch.done.clone(), None);
        }
        let (sender, done) = watch::channel(None);
        *open = Some(Batch {
            ids: vec![id],
            done: done.clone(),
        });
        drop(open);
        let shared = Arc::clone(&self.inner);
        let dispatch = async move {
            // Let the loads of this tick join before the batch is taken.
            tokio::task::yield_now().await;
            let Some(batch) = lock(&shared.open).take() else {
                return;
            };
            let load = Arc::clone(&shared.load);
            let found = shared
                .cache
                .get_or_set_multi(
                    batch.ids,
                    |id| (shared.key)(id),
                    shared.options.clone(),
                    |ids| load(ids),
                )
                .await;
            let _ = sender.send(Some(Arc::new(found.map_err(Arc::new))));
        };
        (done, Some(dispatch))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use crate::cache::tests::block_on;
    use crate::{Cache, MemoryStore, Ttl};

    #[test]
    fn outside_a_tokio_runtime_the_opening_load_runs_the_batch() {
        let cache = Cache::builder(MemoryStore::new()).build();
        let loader =
            cache.loader(
                |id: &u32| format!("n:{id}"),
                Ttl::Default,
                |ids: Vec<u32>| async move {
                    ids.into_iter().map(|id| (id, id * 2)).collect::<Vec<_>>()
                },
            );
        let (a, b) = block_on(async { futures_util::join!(loader.load(1), loader.load(2)) });
        assert_eq!((a.expect("load"), b.expect("load")), (Some(2), Some(4)));
        assert_eq!(cache.stats().misses, 2, "one batch of two");
        assert_eq!(block_on(loader.load(1)).expect("load"), Some(2));
    }
}
