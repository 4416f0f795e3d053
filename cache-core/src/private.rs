//! The runtime behind `#[cache_result]` and `#[invalidate_cache]`: the expansions call these
//! functions so that they stay small and carry no behaviour of their own.

use std::fmt::{self, Display};
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::refresh::{Detached, Factory, Inline};
use crate::cache::{Asked, Cache};
use crate::degrade::Lenient;
use crate::key::escape_glob;
use crate::plan::{Plan, Verdict};
use crate::ttl::SetOptions;

pub use crate::ttl::Ttl;
pub use crate::typed::Typed;
pub use std::format;
pub use std::vec;

/// A value that names the cache a call uses: a [`Cache`], an `Option<Cache>`, an
/// `Arc<Cache>`, or a reference to one of them.
pub trait AsCache {
    /// The cache, if there is one.
    fn as_cache(&self) -> Option<&Cache>;
}

impl AsCache for Cache {
    fn as_cache(&self) -> Option<&Cache> {
        Some(self)
    }
}

impl AsCache for Option<Cache> {
    fn as_cache(&self) -> Option<&Cache> {
        self.as_ref()
    }
}

impl AsCache for Arc<Cache> {
    fn as_cache(&self) -> Option<&Cache> {
        Some(self)
    }
}

impl<T: AsCache + ?Sized> AsCache for &T {
    fn as_cache(&self) -> Option<&Cache> {
        (**self).as_cache()
    }
}

/// The cache given by a `cache = ..` argument.
pub fn explicit<C: AsCache + ?Sized>(cache: &C) -> Option<Cache> {
    cache.as_cache().cloned()
}

/// The global cache; without one, the call runs uncached and this warns once per process.
pub fn global(function: &'static str) -> Option<Cache> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let cache = Cache::global();
    if cache.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            function,
            "no global cache is installed (Cache::set_global) and no `cache = ..` is given: \
             cached functions run uncached"
        );
    }
    cache
}

/// Formats a placeholder's value for a pattern template, escaping glob characters.
pub fn escaped<T: Display + ?Sized>(value: &T) -> String {
    escape_glob(&value.to_string())
}

/// Calls an `unless = ..` closure on the value about to be cached.
pub fn unless<T: ?Sized, F: FnOnce(&T) -> bool>(value: &T, unless: F) -> bool {
    unless(value)
}

/// Where a `#[cache_result]` call's value lives.
#[derive(Debug)]
pub struct Site {
    cache: Cache,
    key: String,
    options: SetOptions,
}

impl Site {
    /// A site in `cache` under `key`.
    #[inline]
    pub fn new(
        cache: Cache,
        key: String,
        ttl: Ttl,
        lock: bool,
        tags: Vec<String>,
        stale_for: Option<u64>,
    ) -> Site {
        let stale_for = stale_for.map(std::time::Duration::from_secs);
        Site {
            cache,
            key,
            options: SetOptions::of(ttl, tags, lock, stale_for),
        }
    }

    /// Turns early refresh on with this `beta` (`early_refresh = true`).
    pub fn early_refresh(mut self, beta: f64) -> Site {
        self.options = self.options.beta(beta);
        self
    }
}

/// Where the values of a batch `#[cache_result(batch(id in ids))]` call live.
#[derive(Debug)]
pub struct BatchSite {
    cache: Cache,
    options: SetOptions,
}

impl BatchSite {
    /// A batch site in `cache`; every id's value gets the same ttl, tags and stale window.
    pub fn new(cache: Cache, ttl: Ttl, tags: Vec<String>, stale_for: Option<u64>) -> BatchSite {
        let Site { cache, options, .. } =
            Site::new(cache, String::new(), ttl, false, tags, stale_for);
        BatchSite { cache, options }
    }
}

/// Fails to compile, at the parameter's type, unless a batch function's other parameter is
/// `Copy` (a reference, an id): the body may run for a second batch of ids.
pub fn copied<T: Copy>(_: &T) {}

/// A batch function returning a map of id to value (any `IntoIterator<Item = (I, T)>` that
/// can be collected from one): `body` loads the ids that are not cached.
pub async fn cached_map<I, T, M, K, F, Fut>(
    site: Option<BatchSite>,
    ids: Vec<I>,
    key: K,
    mut body: F,
) -> M
where
    I: Eq + Hash + Clone,
    T: Serialize + DeserializeOwned,
    M: IntoIterator<Item = (I, T)> + FromIterator<(I, T)>,
    K: Fn(&I) -> String,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = M>,
{
    let Some(site) = site else {
        return body(ids).await;
    };
    let found = site.cache.batch_lenient(ids, key, site.options, body).await;
    found.into_iter().collect()
}

/// A batch function returning one `Option<T>` per id, in the ids' order.
pub async fn cached_aligned<I, T, K, F, Fut>(
    site: Option<BatchSite>,
    ids: Vec<I>,
    key: K,
    mut body: F,
) -> Vec<Option<T>>
where
    I: Eq + Hash + Clone,
    T: Serialize + DeserializeOwned + Clone,
    K: Fn(&I) -> String,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Vec<Option<T>>>,
{
    let Some(site) = site else {
        return body(ids).await;
    };
    let load = |missing: Vec<I>| {
        let asked = missing.clone();
        let loading = body(missing);
        async move { paired(asked, loading.await) }
    };
    let found = site
        .cache
        .batch_lenient(ids.iter().cloned(), key, site.options, load)
        .await;
    aligned(&ids, &found)
}

/// [`cached_map`] for a body returning `Result`: its error is returned, nothing cached.
pub async fn cached_map_result<I, T, E, M, K, F, Fut>(
    site: Option<BatchSite>,
    ids: Vec<I>,
    key: K,
    mut body: F,
) -> Result<M, E>
where
    I: Eq + Hash + Clone,
    T: Serialize + DeserializeOwned,
    M: IntoIterator<Item = (I, T)> + FromIterator<(I, T)>,
    K: Fn(&I) -> String,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Result<M, E>>,
{
    let Some(site) = site else {
        return body(ids).await;
    };
    let found = site
        .cache
        .try_get_or_set_multi(ids, key, site.options, body)
        .await?;
    Ok(found.into_iter().collect())
}

/// [`cached_aligned`] for a body returning `Result`: its error is returned, nothing cached.
pub async fn cached_aligned_result<I, T, E, K, F, Fut>(
    site: Option<BatchSite>,
    ids: Vec<I>,
    key: K,
    mut body: F,
) -> Result<Vec<Option<T>>, E>
where
    I: Eq + Hash + Clone,
    T: Serialize + DeserializeOwned + Clone,
    K: Fn(&I) -> String,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<Option<T>>, E>>,
{
    let Some(site) = site else {
        return body(ids).await;
    };
    let load = |missing: Vec<I>| {
        let asked = missing.clone();
        let loading = body(missing);
        async move { loading.await.map(|values| paired(asked, values)) }
    };
    let found = site
        .cache
        .try_get_or_set_multi(ids.iter().cloned(), key, site.options, load)
        .await?;
    Ok(aligned(&ids, &found))
}

/// The ids a body was asked for, paired with the values it returned for them in order.
fn paired<I, T>(asked: Vec<I>, values: Vec<Option<T>>) -> Vec<(I, T)> {
    asked
        .into_iter()
        .zip(values)
        .filter_map(|(id, value)| Some((id, value?)))
        .collect()
}

/// One entry per id, in order, from what the batch found.
fn aligned<I: Eq + Hash, T: Clone>(
    ids: &[I],
    found: &std::collections::HashMap<I, T>,
) -> Vec<Option<T>> {
    ids.iter().map(|id| found.get(id).cloned()).collect()
}

/// A `#[cache_result]` call that the cache's in-process stages did not answer ([`answer`]),
/// with what they found.
pub struct Pending<T>(Asked<T>);

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// What [`answer`] made of a call.
#[derive(Debug)]
pub enum Answered<O, T> {
    /// The function's output, from a fresh value in process.
    Hit(O),
    /// The call goes on through the cache (or, without one, runs its body).
    Pending(Pending<T>),
}

/// Answers a `#[cache_result]` call from its cache's in-process stages (the in-process
/// store's decoded value, the local tier), before any future is built: a fresh value there
/// is the function's output (`hit`); any other call is [`Pending`].
#[inline]
pub fn answer<T, O>(
    site: &Option<Site>,
    typed: Option<Typed<T>>,
    hit: impl FnOnce(T) -> O,
) -> Answered<O, T>
where
    T: DeserializeOwned,
{
    let asked = match site {
        Some(site) => match site.cache.answer(&site.key, &site.options, typed) {
            Ok(value) => return Answered::Hit(hit(value)),
            Err(asked) => asked,
        },
        None => Asked::not_yet(),
    };
    Answered::Pending(Pending(asked))
}

/// `#[cache_result]` on a function returning `T` or `Option<T>`: the whole value is cached
/// when `store_if` approves it.
pub fn cached<T, S, F>(
    site: Option<Site>,
    pending: Pending<T>,
    store_if: S,
    body: F,
    typed: Option<Typed<T>>,
) -> impl Future<Output = T>
where
    T: Serialize + DeserializeOwned,
    S: FnOnce(&T) -> bool,
    F: Future<Output = T>,
{
    run(site, pending, WholeIf(store_if, typed), Inline(|| body))
}

/// [`cached`] with `early_refresh = true`: the body may run as its own task, after the call
/// returned, so it owns what it needs.
pub fn cached_early<T, S, F>(
    site: Option<Site>,
    pending: Pending<T>,
    store_if: S,
    body: F,
    typed: Option<Typed<T>>,
) -> impl Future<Output = T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    S: FnOnce(&T) -> bool + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    run(
        site,
        pending,
        WholeIf(store_if, typed),
        Detached::new(|| body),
    )
}

/// `#[cache_result]` on a function returning `Result<T, E>`: `Ok` values approved by
/// `store_if` are cached; errors are returned untouched and never cached.
pub fn cached_result<R, S, F>(
    site: Option<Site>,
    pending: Pending<R::Ok>,
    store_if: S,
    body: F,
    typed: Option<Typed<R::Ok>>,
) -> impl Future<Output = R>
where
    R: Fallible,
    R::Ok: Serialize + DeserializeOwned,
    S: FnOnce(&R::Ok) -> bool,
    F: Future<Output = R>,
{
    run(
        site,
        pending,
        OkIf(store_if, typed, PhantomData),
        Inline(|| body),
    )
}

/// [`cached_result`] with `early_refresh = true` (see [`cached_early`]).
pub fn cached_result_early<R, S, F>(
    site: Option<Site>,
    pending: Pending<R::Ok>,
    store_if: S,
    body: F,
    typed: Option<Typed<R::Ok>>,
) -> impl Future<Output = R>
where
    R: Fallible + Send + 'static,
    R::Ok: Serialize + DeserializeOwned,
    S: FnOnce(&R::Ok) -> bool + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    let plan = OkIf(store_if, typed, PhantomData);
    run(site, pending, plan, Detached::new(|| body))
}

/// Runs the body through the site's cache, or on its own without one.
async fn run<P: Plan, F: Factory<P>>(
    site: Option<Site>,
    pending: Pending<P::Value>,
    plan: P,
    factory: F,
) -> P::Output {
    match site {
        Some(site) => {
            site.cache
                .compute_lenient(&site.key, site.options, plan, factory, pending.0)
                .await
        }
        None => factory.call().await,
    }
}

/// A `Result`-shaped return type.
pub trait Fallible: Sized {
    /// The success type.
    type Ok;
    /// The success value, if this is one.
    fn ok(&self) -> Option<&Self::Ok>;
    /// A success.
    fn from_ok(value: Self::Ok) -> Self;
}

impl<T, E> Fallible for Result<T, E> {
    type Ok = T;
    fn ok(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn from_ok(value: T) -> Self {
        Ok(value)
    }
}

/// Whether a call succeeded, for `#[invalidate_cache]`'s after-success default.
pub fn succeeded<R: Fallible>(output: &R) -> bool {
    output.ok().is_some()
}

struct WholeIf<T, S>(S, Option<Typed<T>>);

impl<T, S> Plan for WholeIf<T, S>
where
    T: Serialize + DeserializeOwned,
    S: FnOnce(&T) -> bool,
{
    type Output = T;
    type Value = T;
    fn hit(value: T) -> T {
        value
    }
    fn verdict(self, output: &T) -> Verdict<'_, T> {
        match (self.0)(output) {
            true => Verdict::Store(output),
            false => Verdict::Share(output),
        }
    }
    fn typed(&self) -> Option<Typed<T>> {
        self.1
    }
}

struct OkIf<R: Fallible, S>(S, Option<Typed<R::Ok>>, PhantomData<fn() -> R>);

impl<R, S> Plan for OkIf<R, S>
where
    R: Fallible,
    R::Ok: Serialize + DeserializeOwned,
    S: FnOnce(&R::Ok) -> bool,
{
    type Output = R;
    type Value = R::Ok;
    fn hit(value: R::Ok) -> R {
        R::from_ok(value)
    }
    fn verdict(self, output: &R) -> Verdict<'_, R::Ok> {
        match output.ok() {
            Some(value) if (self.0)(value) => Verdict::Store(value),
            Some(value) => Verdict::Share(value),
            None => Verdict::Fail(None),
        }
    }
    fn typed(&self) -> Option<Typed<R::Ok>> {
        self.1
    }
}

/// Names the type of a `#[cache_result]` value for [`KeepDecoded`] and [`DecodeEachTime`],
/// which pick, at compile time, whether hits on the in-process store may copy a decoded value
/// (`Clone + Send + Sync + 'static` types) or decode the stored bytes.
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// The probe of `T`.
    pub fn new() -> Probe<T> {
        Probe(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Probe::new()
    }
}

/// Chosen (by method resolution on `&Probe<T>`) when `T` can be kept decoded.
pub trait KeepDecoded<T> {
    /// How to keep a `T`.
    fn typed(&self) -> Option<Typed<T>>;
}

impl<T: Clone + Send + Sync + 'static> KeepDecoded<T> for Probe<T> {
    fn typed(&self) -> Option<Typed<T>> {
        Some(Typed::new())
    }
}

/// The fallback (through one more reference): every hit decodes.
pub trait DecodeEachTime<T> {
    /// Nothing: `T` is not kept decoded.
    fn typed(&self) -> Option<Typed<T>>;
}

impl<T> DecodeEachTime<T> for &Probe<T> {
    fn typed(&self) -> Option<Typed<T>> {
        None
    }
}

/// What a `#[invalidate_cache]` call removes.
#[derive(Debug)]
pub struct Invalidation {
    cache: Cache,
    keys: Vec<String>,
    patterns: Vec<String>,
    tags: Vec<String>,
}

impl Invalidation {
    /// Removes `keys`, every key matching one of `patterns` and every value tagged with one
    /// of `tags`, from `cache`.
    pub fn new(
        cache: Cache,
        keys: Vec<String>,
        patterns: Vec<String>,
        tags: Vec<String>,
    ) -> Invalidation {
        Invalidation {
            cache,
            keys,
            patterns,
            tags,
        }
    }
}

/// Runs an invalidation; store failures are logged and counted, never returned.
pub async fn invalidate(invalidation: Option<Invalidation>) {
    let Some(Invalidation {
        cache,
        keys,
        patterns,
        tags,
    }) = invalidation
    else {
        return;
    };
    if !keys.is_empty()
        && let Err(err) = cache.delete_multi(&keys).await
    {
        let _ = cache.degrade::<Lenient>("DELETE", &keys.join(" "), err);
    }
    for pattern in &patterns {
        if let Err(err) = cache.invalidate_pattern(pattern).await {
            let _ = cache.degrade::<Lenient>("SCAN DELETE", pattern, err);
        }
    }
    for tag in &tags {
        if let Err(err) = cache.invalidate_tag(tag).await {
            let _ = cache.degrade::<Lenient>("DELETE TAG", tag, err);
        }
    }
}

/// A placeholder's value, required to implement `Display` where the template is written.
pub fn displayed<T: Display>(value: &T) -> &dyn Display {
    value
}
