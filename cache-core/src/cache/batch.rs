//! Batch get-or-set: many keys, one read, one loader call, one write, through the same read
//! stages ([`fetch_many`](Cache::fetch_many)), single flight and write path
//! ([`prepare`](Cache::prepare), [`commit`](Cache::commit)) as a single key.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::cache::read::Fetched;
use crate::cache::write::Prepared;
use crate::degrade::{Lenient, Strict, Strictness};
use crate::error::Result;
use crate::fence::Over;
use crate::flight::{Leader, Outcome, Role, follow};
use crate::telemetry::Event;
use crate::ttl::SetOptions;

/// A key still without a value.
struct Wanted<I> {
    id: I,
    full: String,
    /// Whether it may wait on another caller's computation (not after that caller gave up
    /// on it).
    may_follow: bool,
    /// What its write may replace (what the batch's read found).
    over: Over,
}

impl Cache {
    /// Reads the values of many ids at once; the ids whose values are not cached are loaded
    /// with **one** call of `loader`, and its values are cached and returned.
    ///
    /// `key` gives each id's cache key. The cached values are read in one `MGET` (on a
    /// cluster one per slot, pipelined per primary), `loader` receives only the missing ids,
    /// and what it returns is written in one pipeline. Every key goes through the stages of a
    /// single [`get_or_set`](Cache::get_or_set): the local tier, encryption, ttl classes,
    /// jitter, tags and the fail-safe apply per key, and single flight is shared with the
    /// single-key calls: an id that another caller (a `get_or_set`, or another batch) is
    /// already computing is waited on, not loaded twice.
    ///
    /// The result maps each id that has a value to it. An id that `loader` leaves out has
    /// no value: it is absent from the result and nothing is cached for it. To remember that
    /// an id has no value (negative caching, like the macros' `cache_none`), make the value
    /// an `Option` and return `None` for it. Ids that `loader` returns but was not asked
    /// for are ignored.
    ///
    /// `loader` is called once, with every id that is neither cached nor being computed by
    /// another caller; it is called again only for ids whose other caller gave up (was
    /// cancelled, or could not share its value), and not at all when every value is cached.
    /// The loader cannot fail, so a fail-safe value past its ttl is a miss here (it is kept
    /// for the single-key calls); the distributed [`lock`](SetOptions::lock) is not taken
    /// per key.
    ///
    /// Store errors count as misses and failed writes are logged and counted; in
    /// [strict](crate::CacheBuilder::strict) mode they are returned instead.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # use std::collections::HashMap;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// async fn names_from_db(ids: Vec<u64>) -> HashMap<u64, String> {
    ///     ids.into_iter().filter(|id| *id != 404).map(|id| (id, format!("user {id}"))).collect()
    /// }
    /// cache.set("user:name:1", &"Ada", Ttl::Default).await?;
    /// let names = cache
    ///     .get_or_set_multi([1, 2, 404], |id| format!("user:name:{id}"), Ttl::Default, names_from_db)
    ///     .await?;
    /// assert_eq!(names[&1], "Ada");
    /// assert_eq!(names[&2], "user 2");
    /// assert!(!names.contains_key(&404));
    /// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_set_multi<I, T, K, F, Fut, L>(
        &self,
        ids: impl IntoIterator<Item = I>,
        key: K,
        options: impl Into<SetOptions>,
        loader: F,
    ) -> Result<HashMap<I, T>>
    where
        I: Eq + Hash + Clone,
        T: Serialize + DeserializeOwned,
        K: Fn(&I) -> String,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = L>,
        L: IntoIterator<Item = (I, T)>,
    {
        let options = options.into();
        if self.inner.strict {
            return match self
                .batch::<Strict, _, _, _, _, _, _, _>(ids, key, options, infallible(loader))
                .await
            {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(never)) => match never {},
                Err(err) => Err(err),
            };
        }
        Ok(self.batch_lenient(ids, key, options, loader).await)
    }

    /// Like [`get_or_set_multi`](Cache::get_or_set_multi) for a loader that may fail: its
    /// `Err` is returned and nothing it was asked for is cached. Callers waiting on the ids
    /// it was loading (a `get_or_set`, another batch) then compute them on their own.
    ///
    /// The error channel belongs to the loader, so store errors are always degraded here
    /// (counted and logged), even in strict mode, as in
    /// [`try_get_or_set`](Cache::try_get_or_set).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # use std::collections::HashMap;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let down = cache
    ///     .try_get_or_set_multi([1u64, 2], |id| format!("user:name:{id}"), Ttl::Default, |_ids| async {
    ///         Err::<HashMap<u64, String>, _>("database down")
    ///     })
    ///     .await;
    /// assert_eq!(down, Err("database down"));
    /// let names = cache
    ///     .try_get_or_set_multi([1u64, 2], |id| format!("user:name:{id}"), Ttl::Default, |ids: Vec<u64>| async move {
    ///         Ok::<_, &str>(ids.into_iter().map(|id| (id, format!("user {id}"))).collect::<Vec<_>>())
    ///     })
    ///     .await;
    /// assert_eq!(names.map(|names| names.len()), Ok(2));
    /// # }
    /// ```
    pub async fn try_get_or_set_multi<I, T, E, K, F, Fut, L>(
        &self,
        ids: impl IntoIterator<Item = I>,
        key: K,
        options: impl Into<SetOptions>,
        loader: F,
    ) -> std::result::Result<HashMap<I, T>, E>
    where
        I: Eq + Hash + Clone,
        T: Serialize + DeserializeOwned,
        K: Fn(&I) -> String,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = std::result::Result<L, E>>,
        L: IntoIterator<Item = (I, T)>,
    {
        match self
            .batch::<Lenient, _, _, _, _, _, _, _>(ids, key, options.into(), loader)
            .await
        {
            Ok(found) => found,
            Err(never) => match never {},
        }
    }

    /// [`get_or_set_multi`](Cache::get_or_set_multi) with store failures degraded whatever
    /// the cache's mode (the macros' batch form: caching never breaks the function).
    pub(crate) async fn batch_lenient<I, T, K, F, Fut, L>(
        &self,
        ids: impl IntoIterator<Item = I>,
        key: K,
        options: SetOptions,
        loader: F,
    ) -> HashMap<I, T>
    where
        I: Eq + Hash + Clone,
        T: Serialize + DeserializeOwned,
        K: Fn(&I) -> String,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = L>,
        L: IntoIterator<Item = (I, T)>,
    {
        match self
            .batch::<Lenient, _, _, _, _, _, _, _>(ids, key, options, infallible(loader))
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(never)) | Err(never) => match never {},
        }
    }

    /// A batch whose loader may fail: its error ends the batch (the outer result is the
    /// store's, for strict mode).
    async fn batch<S: Strictness, I, T, E, K, F, Fut, L>(
        &self,
        ids: impl IntoIterator<Item = I>,
        key: K,
        options: SetOptions,
        mut loader: F,
    ) -> std::result::Result<std::result::Result<HashMap<I, T>, E>, S::Error>
    where
        I: Eq + Hash + Clone,
        T: Serialize + DeserializeOwned,
        K: Fn(&I) -> String,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = std::result::Result<L, E>>,
        L: IntoIterator<Item = (I, T)>,
    {
        let mut seen = HashSet::new();
        let ids: Vec<I> = ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        drop(seen);
        let fulls: Vec<String> = ids
            .iter()
            .map(|id| self.full_key(&key(id)).into_owned())
            .collect();
        let names: Vec<&str> = fulls.iter().map(String::as_str).collect();
        let window = self.fail_safe_window(&options);
        let fetched = self.fetch_many::<S, T, Fetched<T>>(&names).await?;
        let mut found = HashMap::with_capacity(ids.len());
        let mut pending = Vec::new();
        for ((id, full), fetched) in ids.into_iter().zip(fulls).zip(fetched) {
            match fetched {
                Fetched::Hit(value, bytes) | Fetched::Refresh(value, bytes) => {
                    if window.is_some() {
                        self.remember(&full, bytes);
                    }
                    found.insert(id, value);
                }
                mut missed => pending.push(Wanted {
                    id,
                    full,
                    may_follow: true,
                    over: missed.over(self.inner.fence),
                }),
            }
        }
        self.inner.counters.count(Event::Hit, found.len() as u64);
        self.inner.counters.count(Event::Miss, pending.len() as u64);
        let mut failed = None;
        while !pending.is_empty() && failed.is_none() {
            pending = self
                .load_missing::<S, _, _, _, _, _, _>(
                    pending,
                    &options,
                    &mut loader,
                    &mut found,
                    &mut failed,
                )
                .await?;
        }
        Ok(match failed {
            Some(err) => Err(err),
            None => Ok(found),
        })
    }

    /// One round of a batch's misses: leads the keys nobody computes (one loader call, one
    /// write), then waits for the others; returns the keys whose leader gave up.
    /// A loader's error goes to `failed`, and ends the round.
    async fn load_missing<S: Strictness, I, T, E, F, Fut, L>(
        &self,
        pending: Vec<Wanted<I>>,
        options: &SetOptions,
        loader: &mut F,
        found: &mut HashMap<I, T>,
        failed: &mut Option<E>,
    ) -> std::result::Result<Vec<Wanted<I>>, S::Error>
    where
        I: Eq + Hash + Clone,
        T: Serialize + DeserializeOwned,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = std::result::Result<L, E>>,
        L: IntoIterator<Item = (I, T)>,
    {
        let mut leading: Vec<(Wanted<I>, Option<Leader<'_>>)> = Vec::new();
        let mut following = Vec::new();
        for wanted in pending {
            if !wanted.may_follow {
                leading.push((wanted, None));
                continue;
            }
            match self.inner.flights.join(&wanted.full) {
                Role::Leader(leader) => leading.push((wanted, Some(leader))),
                Role::Follower(receiver) => {
                    self.inner.counters.count(Event::StampedeJoin, 1);
                    following.push((wanted, receiver));
                }
            }
        }
        // Leaders publish before any wait, so that two batches each waiting on the other's
        // keys cannot deadlock.
        if !leading.is_empty() {
            let ask = leading
                .iter()
                .map(|(wanted, _)| wanted.id.clone())
                .collect();
            let mut loaded: HashMap<I, T> = match self.timed(loader(ask)).await {
                Ok(loaded) => loaded.into_iter().collect(),
                Err(err) => {
                    // Nothing to share: the other callers compute on their own.
                    for (_, leader) in &leading {
                        if let Some(leader) = leader {
                            leader.publish(Outcome::Alone);
                        }
                    }
                    *failed = Some(err);
                    return Ok(Vec::new());
                }
            };
            let window = self.fail_safe_window(options);
            let mut writes: Vec<Prepared> = Vec::with_capacity(loaded.len());
            let mut sharing: Vec<Option<&Leader<'_>>> = Vec::with_capacity(loaded.len());
            let mut failure = None;
            for (wanted, leader) in &leading {
                let Some(value) = loaded.remove(&wanted.id) else {
                    if let Some(leader) = leader {
                        leader.publish(Outcome::Absent);
                    }
                    continue;
                };
                match self.prepare(&wanted.full, &value, options, window, None) {
                    Ok(prepared) => {
                        writes.push(prepared.over(wanted.over.clone()));
                        sharing.push(leader.as_ref());
                    }
                    Err(err) => {
                        if let Some(leader) = leader {
                            leader.publish(Outcome::Alone);
                        }
                        failure.get_or_insert((wanted.full.clone(), err));
                    }
                }
                found.insert(wanted.id.clone(), value);
            }
            for leader in sharing.iter().flatten() {
                leader.close();
            }
            let written = self.commit(&writes, options.tag_names()).await;
            // Shared once written, as a single key's value is (see `share_and_store`).
            for (index, leader) in sharing.into_iter().enumerate() {
                if let Some(leader) = leader {
                    leader.publish(match written.as_deref().map(|each| each[index]) {
                        Ok(false) => Outcome::Alone,
                        _ => Outcome::Encoded(Arc::clone(&writes[index].bytes)),
                    });
                }
            }
            // (the flights were closed before the write: see `Leader::close`)
            drop(leading);
            if let Some((full, err)) = failure {
                self.degrade::<S>("SET", &full, err)?;
            }
            if let Err(err) = written {
                let first = writes.first().map_or("", |write| write.key.as_str());
                self.degrade::<S>("SET", first, err)?;
            }
        }
        let mut again = Vec::new();
        for (mut wanted, receiver) in following {
            match follow(receiver).await {
                Some(Outcome::Encoded(bytes)) => {
                    if let Some(value) = self.decode::<T>(&wanted.full, &bytes) {
                        found.insert(wanted.id, value);
                    } else {
                        wanted.may_follow = false;
                        again.push(wanted);
                    }
                }
                Some(Outcome::Absent) => {}
                Some(Outcome::Failed(_) | Outcome::Alone) => {
                    wanted.may_follow = false;
                    again.push(wanted);
                }
                // the leader was cancelled: lead or follow again
                None => again.push(wanted),
            }
        }
        Ok(again)
    }
}

/// An infallible loader's future as a fallible one's.
type Infallibly<Fut, L> =
    futures_util::future::Map<Fut, fn(L) -> std::result::Result<L, Infallible>>;

/// An infallible loader as a fallible one.
fn infallible<I, F, Fut, L>(mut loader: F) -> impl FnMut(Vec<I>) -> Infallibly<Fut, L>
where
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = L>,
{
    move |ids| futures_util::FutureExt::map(loader(ids), Ok as fn(L) -> _)
}
