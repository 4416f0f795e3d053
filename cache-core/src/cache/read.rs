//! The read path. Every read goes through these stages, for one key or many:
//!
//! 1. [`hidden`](Cache::hidden): a key that a pending invalidation may cover reads as absent;
//! 2. the in-process store's typed entry (a get-or-set hit copies the decoded value);
//! 3. the local tier ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache));
//! 4. the store (`GET`, or one `MGET` for many keys; with the key's ttl when the local tier
//!    or early refresh needs it), its errors counted and degraded;
//! 5. [`open`](Cache::open): decode, unseal and read the stamp; an invalidation's fence
//!    marker (see `fence.rs`) is a miss over it ([`Fetched::Fenced`], which a get-or-set
//!    writes over); other bytes that do not decode are a miss, counted, and
//!    [discarded](Cache::discard);
//! 6. the stamp's verdict (fresh, stale for the fail-safe, due for an early refresh), and a
//!    copy kept in the local tier.
//!
//! Stages 1 to 3 are in process and never wait ([`fetch_near`](Cache::fetch_near)): a
//! get-or-set whose value they hold is answered before any future of the computation is
//! built ([`Cache::answer`], which `#[cache_result]` calls first), and what they found is
//! carried into the rest ([`fetch_far`](Cache::fetch_far)) rather than asked twice.
//! [`fetch`](Cache::fetch) runs the stages for one key (`get`, get-or-set) and
//! [`fetch_many`](Cache::fetch_many) for several (`get_multi`); the collections, `exists`
//! and `ttl` use stages 1, 4 and 5 ([`read_stored`](Cache::read_stored),
//! [`decode_each`](Cache::decode_each), [`decode_field`](Cache::decode_field)).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::cache::refresh::refreshes_early;
use crate::cache::{Cache, now_millis};
use crate::degrade::{Strict, Strictness};
use crate::error::{Error, Result};
use crate::fence::{Over, is_marker};
use crate::frame::Stamp;
use crate::local::Local;
use crate::store::KeyTtl;
use crate::store::guard::Failure;
use crate::telemetry::Event;
use crate::typed::{Decoded, Entry, Typed};

/// A key of a multi-key read whose node failed (on a cluster; all keys on one server).
struct Unread;

/// What the in-process stages of a read found ([`Cache::fetch_near`]).
pub(super) enum Near<T> {
    /// Their answer.
    Found(Fetched<T>),
    /// Bytes of the in-process store that do not decode (a fence marker, or to discard).
    Unusable(Raw),
    /// Nothing: the store is read.
    Store,
}

/// What the in-process stages found, carried into the rest of a read: nothing when the store
/// is to be read, else their answer, boxed so that the futures carrying it stay as small as
/// they were (a read of the store carries nothing, and allocates nothing for it).
pub(super) type Carried<T> = Option<Box<Near<T>>>;

impl<T> Near<T> {
    /// This, to be carried into [`fetch_far`](Cache::fetch_far).
    pub(super) fn carried(self) -> Carried<T> {
        match self {
            Near::Store => None,
            near => Some(Box::new(near)),
        }
    }
}

/// What a read of the store found.
pub(super) enum Fetched<T> {
    /// The value, decoded, and as stored.
    Hit(T, Raw),
    /// A hit whose read decided to refresh the value early.
    Refresh(T, Raw),
    /// A fail-safe value past its ttl: a miss, kept in case the recomputation fails.
    Stale(T, Raw),
    Miss,
    /// A miss over an invalidation's fence marker (these bytes; see `fence.rs`).
    Fenced(Raw),
    /// The store failed (degraded, so not an error to the caller).
    Failed,
}

/// What an early-refresh read needs: its `beta`, and the fail-safe window the value's store
/// ttl carries past its freshness.
#[derive(Debug, Clone, Copy)]
pub(super) struct EarlyRead {
    pub(super) beta: f64,
    pub(super) window: Duration,
}

impl EarlyRead {
    /// When, by this process's clock, a value the store keeps for `left` more stops being
    /// fresh: the store's own countdown, so neither the writer's clock nor a later
    /// `expire()` skews the decision.
    fn expires_at(self, left: Duration) -> u64 {
        let fresh_for = left.saturating_sub(self.window);
        now_millis().saturating_add(u64::try_from(fresh_for.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<T> Fetched<T> {
    /// A hit; a stale value once its freshness stamp has passed; given an early-refresh
    /// `beta`, a hit that refreshes, as the value's early stamp decides.
    #[inline(always)]
    pub(super) fn of((value, stamp): Decoded<T>, bytes: Raw, beta: Option<f64>) -> Fetched<T> {
        if stamp == Stamp::default() {
            return Fetched::Hit(value, bytes);
        }
        Fetched::stamped(value, stamp, bytes, beta)
    }

    #[inline(never)]
    fn stamped(value: T, stamp: Stamp, bytes: Raw, beta: Option<f64>) -> Fetched<T> {
        let now = now_millis();
        if stamp.fresh_until.is_some_and(|at| at <= now) {
            return Fetched::Stale(value, bytes);
        }
        match (beta, stamp.early) {
            (Some(beta), Some(early)) if refreshes_early(now, early, beta) => {
                Fetched::Refresh(value, bytes)
            }
            _ => Fetched::Hit(value, bytes),
        }
    }

    /// The usable value (a hit, refreshing or not), if any.
    #[inline(always)]
    pub(super) fn into_value(self) -> Option<T> {
        match self {
            Fetched::Hit(value, _) | Fetched::Refresh(value, _) => Some(value),
            Fetched::Stale(..) | Fetched::Miss | Fetched::Fenced(_) | Fetched::Failed => None,
        }
    }

    /// Whether this is a usable value (a hit, refreshing or not).
    pub(super) fn is_hit(&self) -> bool {
        matches!(self, Fetched::Hit(..) | Fetched::Refresh(..))
    }

    /// What a miss's write may replace, given the cache's `fence` window: what this read
    /// found (a stale value, a marker: its bytes; nothing, or a failed read: nothing), or
    /// anything without a fence. A stale value's bytes are shared with the fallback it stays.
    pub(super) fn over(&mut self, fence: Option<Duration>) -> Over {
        if fence.is_none() {
            return Over::Anything;
        }
        match self {
            Fetched::Hit(_, bytes)
            | Fetched::Refresh(_, bytes)
            | Fetched::Stale(_, bytes)
            | Fetched::Fenced(bytes) => Over::Bytes(bytes.share()),
            Fetched::Miss | Fetched::Failed => Over::Nothing {
                since: Instant::now(),
            },
        }
    }
}

/// What a caller of [`Cache::fetch_many`] keeps of each [`Fetched`]: all of it, or only the
/// usable value (`Option<T>`), built in place on the common hit path.
pub(super) trait Kept<T> {
    /// A fresh hit.
    fn hit(value: T, bytes: Raw) -> Self;
    fn from_fetched(fetched: Fetched<T>) -> Self;
}

impl<T> Kept<T> for Fetched<T> {
    #[inline(always)]
    fn hit(value: T, bytes: Raw) -> Self {
        Fetched::Hit(value, bytes)
    }

    #[inline(always)]
    fn from_fetched(fetched: Fetched<T>) -> Self {
        fetched
    }
}

impl<T> Kept<T> for Option<T> {
    #[inline(always)]
    fn hit(value: T, _: Raw) -> Self {
        Some(value)
    }

    #[inline(always)]
    fn from_fetched(fetched: Fetched<T>) -> Self {
        fetched.into_value()
    }
}

/// What [`Cache::open_all`] made of a multi-key read: the results, the keys whose values do
/// not decode, and the copies for the local tier with their store ttls.
struct Opened<'k, O> {
    fetched: Vec<O>,
    undecodable: Vec<&'k str>,
    copies: Vec<(&'k str, (Arc<Entry>, Duration))>,
}

/// A value's stored bytes: as read from the store, or shared with the local tier (so that a
/// local hit copies nothing).
pub(super) enum Raw {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Raw {
    pub(super) fn into_shared(self) -> Arc<Vec<u8>> {
        match self {
            Raw::Owned(bytes) => Arc::new(bytes),
            Raw::Shared(bytes) => bytes,
        }
    }

    /// The bytes, shared from now on.
    fn share(&mut self) -> Arc<Vec<u8>> {
        if let Raw::Owned(bytes) = self {
            *self = Raw::Shared(Arc::new(std::mem::take(bytes)));
        }
        match self {
            Raw::Shared(bytes) => Arc::clone(bytes),
            Raw::Owned(_) => Arc::default(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Raw::Owned(bytes) => bytes,
            Raw::Shared(bytes) => bytes,
        }
    }
}

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
            // an invalidation's marker: no value, and not a failure
            Err(_) if is_marker(bytes) => None,
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

    /// Stored bytes that do not decode: an invalidation's fence marker is a miss over it
    /// ([`Fetched::Fenced`]); anything else is [discarded](Cache::discard), and a miss.
    #[cold]
    async fn unusable<T>(&self, full_key: &str, bytes: Raw) -> Fetched<T> {
        if is_marker(bytes.as_slice()) {
            return Fetched::Fenced(bytes);
        }
        self.discard(&[full_key]).await;
        Fetched::Miss
    }

    #[cold]
    fn undecodable<T>(&self, key: &str, err: &Error) -> Option<T> {
        self.inner.counters.count(Event::DecodeFailure, 1);
        tracing::warn!(
            key = crate::log::traced(key),
            error = %crate::log::without_key(err, key),
            "discarding a cached value that does not decode"
        );
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

    /// The local tier, while it may serve reads (subscribed to the invalidation notices, or
    /// within its stale window after losing them; it keeps new copies only when subscribed).
    #[inline(always)]
    fn local_tier(&self) -> Option<&Local> {
        self.inner
            .local
            .as_deref()
            .filter(|local| local.may_serve())
    }

    /// Reads and decodes `full_key`; a store failure is a miss unless strict.
    pub(crate) async fn read_or_degrade<S: Strictness, T: DeserializeOwned>(
        &self,
        full_key: &str,
    ) -> std::result::Result<Option<T>, S::Error> {
        Ok(self.fetch::<S, T>(full_key, None, None).await?.into_value())
    }

    /// Reads `full_key` through every stage of the read path and returns the value with its
    /// stored bytes; a store failure is [`Fetched::Failed`] unless strict. Given `typed`, an
    /// in-process hit copies the decoded value the store keeps. Given an early-refresh read,
    /// a hit may decide to refresh ([`Fetched::Refresh`]).
    pub(super) async fn fetch<S: Strictness, T: DeserializeOwned>(
        &self,
        full_key: &str,
        typed: Option<Typed<T>>,
        early: Option<EarlyRead>,
    ) -> std::result::Result<Fetched<T>, S::Error> {
        match self.fetch_near(full_key, typed, early.map(|early| early.beta)) {
            Near::Found(fetched) => Ok(fetched),
            near => {
                self.fetch_far::<S, T>(full_key, near.carried(), early)
                    .await
            }
        }
    }

    /// Stages 1 to 3 of [`fetch`](Cache::fetch), in process and without a wait: a key
    /// that is [`hidden`](Cache::hidden) is a miss; given `typed`, the in-process store
    /// answers with the value it keeps decoded; the local tier answers a fresh copy.
    #[inline(always)]
    pub(super) fn fetch_near<T: DeserializeOwned>(
        &self,
        full_key: &str,
        typed: Option<Typed<T>>,
        beta: Option<f64>,
    ) -> Near<T> {
        if self.hidden(full_key) {
            return Near::Found(Fetched::Miss);
        }
        // Stage 2, then 3: the entry kept in process, and whether it is the store's own.
        let stored = match (typed, &self.inner.memory) {
            // an error (a key of another type) takes the general path, which reports it
            (Some(_), Some(memory)) => self.timed_read(|| memory.entry(full_key)).ok(),
            _ => None,
        };
        let (entry, in_store) = match stored {
            Some(Some(entry)) => (entry, true),
            Some(None) => return Near::Found(Fetched::Miss),
            None => match self.local_tier().and_then(|local| local.get(full_key)) {
                Some(entry) => (entry, false),
                None => return Near::Store,
            },
        };
        let decoded = match typed {
            Some(typed) => entry.read(typed, |bytes| self.decode_stamped(full_key, bytes)),
            None => self.decode_stamped(full_key, &entry.bytes),
        };
        let bytes = Raw::Shared(Arc::clone(&entry.bytes));
        match decoded {
            Some(decoded) => match Fetched::of(decoded, bytes, beta) {
                // the local tier answers only a usable value: the store may hold a fresher
                // one than a stale copy
                fetched if in_store || fetched.is_hit() => Near::Found(fetched),
                _ => Near::Store,
            },
            None if in_store => Near::Unusable(bytes),
            // a copy that does not decode is left to expire; the store's value is read
            None => Near::Store,
        }
    }

    /// The rest of [`fetch`](Cache::fetch) after what its first stages found (`near`).
    pub(super) async fn fetch_far<S: Strictness, T: DeserializeOwned>(
        &self,
        full_key: &str,
        near: Carried<T>,
        early: Option<EarlyRead>,
    ) -> std::result::Result<Fetched<T>, S::Error> {
        if let Some(near) = near {
            match *near {
                Near::Found(fetched) => return Ok(fetched),
                Near::Unusable(bytes) => return Ok(self.unusable(full_key, bytes).await),
                Near::Store => {}
            }
        }
        let local = self.local_tier();
        // Only the local tier needs the time of the read (to age the copy it keeps).
        let read_at = local.map(|_| Instant::now());
        // The local tier needs the store's ttl (to age its copy), and early refresh (to decide
        // by the store's own countdown rather than by the writer's clock).
        let found = match local.is_some() || early.is_some() {
            true => self
                .inner
                .guarded
                .get_with_ttl(full_key)
                .await
                .map(|found| found.map(|(bytes, ttl)| (bytes, Some(ttl)))),
            false => self
                .inner
                .guarded
                .get(full_key)
                .await
                .map(|found| found.map(|bytes| (bytes, None))),
        };
        let found = match self.counted(found) {
            Ok(found) => found,
            Err(err) => {
                return self
                    .degrade::<S>("GET", full_key, err)
                    .map(|()| Fetched::Failed);
            }
        };
        let Some((bytes, ttl)) = found else {
            return Ok(Fetched::Miss);
        };
        let Some(decoded) = self.decode_stamped(full_key, &bytes) else {
            return Ok(self.unusable(full_key, Raw::Owned(bytes)).await);
        };
        Ok(match local {
            None => Cache::verdict(decoded, Raw::Owned(bytes), ttl, early),
            Some(_) => {
                self.open(full_key, decoded, bytes, ttl, early, local, read_at)
                    .await
            }
        })
    }

    /// [`fetch`](Cache::fetch) for several keys: the stages run per key, and the keys that
    /// neither stage 1 nor the local tier answer are read from the store in one `MGET` (one
    /// per slot on a cluster, pipelined per primary). Undecodable values are discarded in one
    /// request. The result has one entry per key, in order: each [`Fetched`], or only what
    /// the caller keeps of it ([`Kept`]: a caller that keeps the value builds no list of
    /// `Fetched`). No caller decides on early refresh here: a value's stamp only tells
    /// fresh from stale.
    pub(super) async fn fetch_many<S: Strictness, T: DeserializeOwned, O: Kept<T>>(
        &self,
        full_keys: &[&str],
    ) -> std::result::Result<Vec<O>, S::Error> {
        let local = self.local_tier();
        // Stages 1 to 3 (untyped, so the in-process store is read with the others): the keys
        // they answer, by index; the others go to the store. Until one is answered, the keys
        // to read are all of them (no list to build).
        let mut answered: Vec<(usize, Fetched<T>)> = Vec::new();
        let mut to_read: Vec<&str> = Vec::new();
        // Nothing is answered while nothing is pending and there is no local tier.
        let answering = local.is_some() || self.inner.recovery.is_hiding();
        for (index, &key) in full_keys.iter().enumerate().filter(|_| answering) {
            let answer = match self.fetch_near::<T>(key, None, None) {
                Near::Found(fetched) => Some(fetched),
                Near::Unusable(_) | Near::Store => None,
            };
            match answer {
                Some(answer) => {
                    if answered.is_empty() {
                        to_read.extend_from_slice(&full_keys[..index]);
                    }
                    answered.push((index, answer));
                }
                None if !answered.is_empty() => to_read.push(key),
                None => {}
            }
        }
        let to_read: &[&str] = match answered.is_empty() {
            true => full_keys,
            false => &to_read,
        };
        let read_at = local.map(|_| Instant::now());
        // Stage 4: one of the two is read, with the ttls when the local tier keeps copies.
        // On a cluster, the keys of a node that fails are lost, the others read.
        let (mut plain, mut with_ttl) = (Vec::new(), Vec::new());
        let failure = match (to_read.is_empty(), local.is_some()) {
            (true, _) => None,
            (false, true) => {
                let found = self.inner.guarded.mget_with_ttl(to_read).await;
                with_ttl = found.replies;
                found.failure
            }
            (false, false) => {
                let found = self.inner.guarded.mget(to_read).await;
                plain = found.replies;
                found.failure
            }
        };
        let lost = match failure {
            None => None,
            Some(Failure { error, lost }) => {
                let first = (0..to_read.len())
                    .find(|&index| lost.as_ref().is_none_or(|lost| lost[index]))
                    .map_or(to_read[0], |index| to_read[index]);
                if let Err(err) = self.counted::<()>(Err(error)) {
                    self.degrade::<S>("MGET", first, err)?;
                }
                Some(lost)
            }
        };
        let found = plain
            .into_iter()
            .map(|found| found.map(|bytes| (bytes, None)))
            .chain(
                with_ttl
                    .into_iter()
                    .map(|found| found.map(|(bytes, ttl)| (bytes, Some(ttl)))),
            )
            .enumerate()
            .map(|(index, found)| match &lost {
                Some(None) => Err(Unread),
                Some(Some(lost)) if lost[index] => Err(Unread),
                _ => Ok(found),
            });
        let Opened {
            fetched,
            undecodable,
            copies,
        } = self.open_all(full_keys, answered, found, local.is_some());
        if let (Some(local), Some(read_at)) = (local, read_at) {
            for (key, (entry, ttl)) in copies {
                local.put(key, entry, ttl, read_at);
            }
        }
        if !undecodable.is_empty() {
            self.discard(&undecodable).await;
        }
        Ok(fetched)
    }

    /// Stages 5 and 6 of [`fetch_many`](Cache::fetch_many), in the keys' order: the
    /// `answered` keys as they were answered, the others from what the store `found` (or
    /// `failed` to read). A function of its own, without waits, so that the decoding is
    /// compiled into its loop.
    fn open_all<'k, T: DeserializeOwned, O: Kept<T>>(
        &self,
        full_keys: &[&'k str],
        answered: Vec<(usize, Fetched<T>)>,
        mut found: impl Iterator<Item = std::result::Result<Option<(Vec<u8>, Option<KeyTtl>)>, Unread>>,
        local: bool,
    ) -> Opened<'k, O> {
        let mut answered = answered.into_iter().peekable();
        let (mut undecodable, mut copies) = (Vec::new(), Vec::new());
        // Collected rather than pushed: each value is decoded into its place in the list.
        let fetched = full_keys
            .iter()
            .enumerate()
            .map(|(index, &key)| {
                if let Some((_, answer)) = answered.next_if(|(at, _)| *at == index) {
                    return O::from_fetched(answer);
                }
                let Some((bytes, ttl)) = (match found.next() {
                    Some(Ok(found)) => found,
                    Some(Err(Unread)) => return O::from_fetched(Fetched::Failed),
                    None => None,
                }) else {
                    return O::from_fetched(Fetched::Miss);
                };
                // The common case (no stamp: fresh, nothing to refresh) decodes straight
                // into the value, when there is no local copy to keep.
                if !local && let Some(value) = self.inner.format.decode_common::<T>(&bytes) {
                    return O::hit(value, Raw::Owned(bytes));
                }
                let Some(decoded) = self.decode_stamped(key, &bytes) else {
                    if is_marker(&bytes) {
                        return O::from_fetched(Fetched::Fenced(Raw::Owned(bytes)));
                    }
                    undecodable.push(key);
                    return O::from_fetched(Fetched::Miss);
                };
                let (bytes, copy) = Cache::local_copy(local, &decoded, bytes, ttl);
                if let Some(copy) = copy {
                    copies.push((key, copy));
                }
                O::from_fetched(Cache::verdict(decoded, bytes, ttl, None))
            })
            .collect();
        Opened {
            fetched,
            undecodable,
            copies,
        }
    }

    /// Stage 6 for a value read from the store: a fresh value is kept in the local tier
    /// (unless an invalidation overtook the read, made at `read_at`), then
    /// [`verdict`](Cache::verdict).
    #[allow(clippy::too_many_arguments)]
    async fn open<T>(
        &self,
        full_key: &str,
        decoded: Decoded<T>,
        bytes: Vec<u8>,
        ttl: Option<KeyTtl>,
        early: Option<EarlyRead>,
        local: Option<&Local>,
        read_at: Option<Instant>,
    ) -> Fetched<T> {
        let (bytes, copy) = Cache::local_copy(local.is_some(), &decoded, bytes, ttl);
        if let (Some(local), Some((entry, ttl))) = (local, copy) {
            let read_at = read_at.unwrap_or_else(Instant::now);
            local.put(full_key, entry, ttl, read_at);
        }
        Cache::verdict(decoded, bytes, ttl, early)
    }

    /// The copy of a value read from the store that the local tier may keep, with its store
    /// ttl: only a fresh value with a ttl, and only with a local tier (`local`).
    #[inline(always)]
    fn local_copy<T>(
        local: bool,
        decoded: &Decoded<T>,
        bytes: Vec<u8>,
        ttl: Option<KeyTtl>,
    ) -> (Raw, Option<(Arc<Entry>, Duration)>) {
        match ttl {
            Some(KeyTtl::ExpiresIn(ttl))
                if local
                    && decoded
                        .1
                        .fresh_until
                        .is_none_or(|fresh_until| fresh_until > now_millis()) =>
            {
                let entry = Arc::new(Entry::new(bytes));
                (Raw::Shared(Arc::clone(&entry.bytes)), Some((entry, ttl)))
            }
            _ => (Raw::Owned(bytes), None),
        }
    }

    /// The stamp's verdict on a value read from the store (fresh, stale, due for an early
    /// refresh), its early-refresh stamp following the store's countdown (`ttl`) rather than
    /// the writer's clock.
    #[inline(always)]
    fn verdict<T>(
        mut decoded: Decoded<T>,
        bytes: Raw,
        ttl: Option<KeyTtl>,
        early: Option<EarlyRead>,
    ) -> Fetched<T> {
        if let (Some(early), Some(KeyTtl::ExpiresIn(left)), Some(stamp)) =
            (early, ttl, decoded.1.early.as_mut())
        {
            stamp.expires_at = early.expires_at(left);
        }
        Fetched::of(decoded, bytes, early.map(|early| early.beta))
    }

    /// Removes values that do not decode, from the local tier and the store (one request);
    /// a failure is logged and counted, never returned (the read is a miss either way).
    pub(crate) async fn discard(&self, full_keys: &[&str]) {
        let owned: Vec<String> = full_keys.iter().map(|&key| key.to_owned()).collect();
        if let Some(local) = &self.inner.local {
            local.forget(&owned, &[]);
        }
        if let Err(err) = self.inner.guarded.delete_many(&owned).await {
            self.inner.counters.error();
            tracing::warn!(
                keys = crate::log::traced(tracing::field::debug(full_keys)),
                error = %err,
                "could not delete undecodable values"
            );
        }
    }

    /// An in-process read outside the guarded store, timed for the metrics as the guarded
    /// store times its operations.
    #[inline]
    fn timed_read<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let result = read();
        #[cfg(feature = "metrics")]
        self.inner.counters.meter.store_operation(
            crate::telemetry::Op::command("GET"),
            Some(started.elapsed()),
            result.as_ref().err(),
        );
        result
    }
}
