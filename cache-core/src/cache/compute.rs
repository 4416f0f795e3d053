//! Get-or-set with stampede protection and graceful degradation.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::cache::Cache;
use crate::cache::lock::HeldLock;
use crate::cache::read::{Carried, EarlyRead, Fetched, Near, Raw};
use crate::cache::refresh::writing;
use crate::cache::refresh::{Detached, Factory, Inline};
use crate::cache::write::Prepared;
use crate::degrade::{Lenient, Strict, Strictness};
use crate::error::{Error, Result};
use crate::fence::Over;
use crate::flight::{Leader, Outcome, Role, follow};
use crate::plan::{Fallible, Plan, Verdict, Whole};
use crate::telemetry::Event;
use crate::ttl::SetOptions;
use crate::typed::Typed;

const LOCK_POLL: Duration = Duration::from_millis(20);

/// Why a background computation gave no value to its caller.
#[derive(Debug, Clone, Copy)]
enum Unavailable {
    TimedOut,
    Failed,
}

/// What a caller asking for the distributed lock ends up with.
enum Led<T> {
    /// Another process computed the value meanwhile (decoded, and as stored).
    Found(T, Raw),
    /// This caller must compute, holding the lock if it got it.
    Compute(Option<HeldLock>),
}

impl Cache {
    /// Reads `key`; on a miss runs `factory`, caches its value and returns it.
    ///
    /// Concurrent misses on one key in this process run `factory` once: the other callers
    /// wait and decode the computed value (so `T` need not be `Clone`). A caller that is
    /// cancelled while computing hands the job to one of the waiters. With
    /// [`SetOptions::lock`](crate::SetOptions::lock), processes sharing the store also compute a key once (waiting at
    /// most [`CacheBuilder::lock_wait`](crate::CacheBuilder::lock_wait)).
    ///
    /// Store errors and timeouts count as misses and failed writes are logged (rate-limited)
    /// and counted: the factory's value is returned whatever the store does. In
    /// [strict](crate::CacheBuilder::strict) mode they are returned instead.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let compute = || async { vec!["algebra".to_owned(), "geometry".to_owned()] };
    /// let first = cache.get_or_set("user:classes:42", Ttl::Default, compute).await?;
    /// let second = cache.get_or_set("user:classes:42", Ttl::Default, compute).await?;
    /// assert_eq!(first, second);
    /// assert_eq!((cache.stats().misses, cache.stats().hits), (1, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_set<T, F, Fut>(
        &self,
        key: &str,
        options: impl Into<SetOptions>,
        factory: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let plan = Whole(PhantomData);
        let factory = Inline(factory);
        if self.inner.strict {
            return self
                .compute::<Strict, _, _>(key, options.into(), plan, factory, Asked::not_yet())
                .await;
        }
        match self
            .compute::<Lenient, _, _>(key, options.into(), plan, factory, Asked::not_yet())
            .await
        {
            Ok(value) => Ok(value),
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_set`](Cache::get_or_set) for a fallible factory: an `Err` is returned to
    /// the caller and to every caller waiting on the same computation, and nothing is cached.
    ///
    /// The error channel belongs to the factory, so store errors are always degraded here
    /// (counted and logged), even in strict mode.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// let failed: Result<u32, String> = cache
    ///     .try_get_or_set("grading:result:9", Ttl::Long, || async { Err("model offline".to_owned()) })
    ///     .await;
    /// assert_eq!(failed, Err("model offline".to_owned()));
    /// let ok = cache
    ///     .try_get_or_set("grading:result:9", Ttl::Long, || async { Ok::<_, String>(97u32) })
    ///     .await;
    /// assert_eq!(ok, Ok(97));
    /// # }
    /// ```
    pub async fn try_get_or_set<T, E, F, Fut>(
        &self,
        key: &str,
        options: impl Into<SetOptions>,
        factory: F,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.compute_lenient(
            key,
            options.into(),
            Fallible(PhantomData),
            Inline(factory),
            Asked::not_yet(),
        )
        .await
    }

    /// Like [`get_or_set`](Cache::get_or_set) for a computation that may outlive the call:
    /// it runs as its own tokio task. With a stale value at hand (see
    /// [`CacheBuilder::fail_safe`](crate::CacheBuilder::fail_safe)) and the computation slower
    /// than [`factory_timeout`](crate::CacheBuilder::factory_timeout), the stale value is
    /// returned at once and the computation finishes in the background, caching its value when
    /// done (a soft timeout). Without a stale value the call waits at most `hard`, then fails
    /// with [`Error::Timeout`](crate::Error::Timeout) while the computation still completes and caches its value.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, Ttl};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// let cache = Cache::builder(MemoryStore::new())
    ///     .fail_safe(Some(Duration::from_secs(600)))
    ///     .factory_timeout(Some(Duration::from_millis(50)))
    ///     .build();
    /// let report = cache
    ///     .get_or_refresh("analytics:daily", Ttl::Short, Duration::from_secs(5), || async { 42u64 })
    ///     .await?;
    /// assert_eq!(report, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_refresh<T, F, Fut>(
        &self,
        key: &str,
        options: impl Into<SetOptions>,
        hard: Duration,
        factory: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let options = options.into();
        let window = self.fail_safe_window(&options);
        let (cache, full, background) = (
            self.clone(),
            self.full_key(key).into_owned(),
            options.clone(),
        );
        // The computation starts when the future is first polled, so that an early refresh
        // (which makes the future, then decides) starts nothing it does not run.
        let factory = move || {
            let computation = factory();
            async move {
                let over = crate::cache::refresh::writing_over(&full);
                let (sender, receiver) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let value = computation.await;
                    if let Err(value) = sender.send(value) {
                        let took = Some(started.elapsed());
                        let prepared = cache.prepare(&full, &value, &background, window, took);
                        drop(value);
                        let over = over.unwrap_or(Over::Anything);
                        let prepared = prepared.map(|prepared| prepared.over(over));
                        cache.store_prepared(&full, prepared, &background).await;
                    }
                });
                match tokio::time::timeout(hard, receiver).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(_)) => Err(Unavailable::Failed),
                    Err(_) => Err(Unavailable::TimedOut),
                }
            }
        };
        match self
            .compute_lenient(
                key,
                options,
                Fallible(PhantomData),
                Detached::new(factory),
                Asked::not_yet(),
            )
            .await
        {
            Ok(value) => Ok(value),
            Err(Unavailable::TimedOut) => Err(Error::Timeout {
                operation: "computation",
                after: hard,
            }),
            Err(Unavailable::Failed) => Err(Error::ComputationFailed {
                key: key.to_owned(),
            }),
        }
    }

    /// Caches the value of a computation whose caller was already answered, over what the
    /// early refresh or the miss that started it saw.
    async fn store_prepared(
        &self,
        full_key: &str,
        prepared: Result<Prepared>,
        options: &SetOptions,
    ) {
        let written = match prepared {
            Ok(prepared) => self.commit(&[prepared], options.tag_names()).await,
            Err(err) => Err(err),
        };
        match written.map(|each| each.iter().all(|&written| written)) {
            Ok(true) => {}
            Ok(false) => tracing::debug!("the value changed while it was computed; not written"),
            Err(err) => {
                let _ = self.degrade::<Lenient>("SET", full_key, err);
            }
        }
    }

    /// Runs a computation whose store failures are degraded whatever the cache's mode;
    /// `asked`: what [`answer`](Cache::answer) found, if it was asked.
    pub(crate) async fn compute_lenient<P: Plan, F: Factory<P>>(
        &self,
        key: &str,
        options: SetOptions,
        plan: P,
        factory: F,
        asked: Asked<P::Value>,
    ) -> P::Output {
        match self
            .compute::<Lenient, _, _>(key, options, plan, factory, asked)
            .await
        {
            Ok(output) => output,
            Err(never) => match never {},
        }
    }

    /// The first stages of a get-or-set, in process and without a wait
    /// ([`fetch_near`](Cache::fetch_near)): a fresh value they hold is the answer (counted,
    /// its span recorded, kept for the fail-safe); else what they found, for
    /// [`compute`](Cache::compute) to go on from (nothing, on a cache without an in-process
    /// tier: there is nothing to look up).
    #[inline(always)]
    pub(crate) fn answer<T: DeserializeOwned>(
        &self,
        key: &str,
        options: &SetOptions,
        typed: Option<Typed<T>>,
    ) -> std::result::Result<T, Asked<T>> {
        if self.inner.memory.is_none() && self.inner.local.is_none() {
            return Err(Asked(None));
        }
        self.answer_near(key, options, typed)
    }

    fn answer_near<T: DeserializeOwned>(
        &self,
        key: &str,
        options: &SetOptions,
        typed: Option<Typed<T>>,
    ) -> std::result::Result<T, Asked<T>> {
        let full = self.full_key(key);
        match self.fetch_near(&full, typed, options.early_refresh_beta()) {
            Near::Found(Fetched::Hit(value, bytes)) => {
                outcome(&self.operation_span(key), "hit");
                let window = self.fail_safe_window(options);
                Ok(self.hit(&full, window, value, bytes))
            }
            near => Err(Asked(Some(near.carried()))),
        }
    }

    /// A hit: counted, and its bytes kept in process for a fail-safe key (`window`).
    #[inline]
    fn hit<T>(&self, full: &str, window: Option<Duration>, value: T, bytes: Raw) -> T {
        self.record_read(true);
        if window.is_some() {
            self.remember(full, bytes);
        }
        value
    }

    /// The span of a get-or-set, `cache.get_or_set`: debug level, the key only at trace
    /// level, `outcome` (`hit` or `miss`) recorded as it is known.
    #[inline]
    fn operation_span(&self, key: &str) -> tracing::Span {
        let span = tracing::debug_span!(
            "cache.get_or_set",
            cache.name = self.name(),
            key = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if !span.is_disabled() && tracing::enabled!(tracing::Level::TRACE) {
            span.record("key", key);
        }
        span
    }

    /// A get-or-set in its span ([`operation_span`](Cache::operation_span)). With no
    /// subscriber listening the computation runs as it is; only a listened-to span wraps it
    /// (boxed, so that the plain path's future does not grow).
    async fn compute<S: Strictness, P: Plan, F: Factory<P>>(
        &self,
        key: &str,
        options: SetOptions,
        plan: P,
        factory: F,
        asked: Asked<P::Value>,
    ) -> std::result::Result<P::Output, S::Error> {
        let near = match asked.0 {
            Some(near) => Some(near),
            None => match self.answer(key, &options, plan.typed()) {
                Ok(value) => return Ok(P::hit(value)),
                Err(asked) => asked.0,
            },
        };
        let span = self.operation_span(key);
        let full = self.full_key(key);
        let window = self.fail_safe_window(&options);
        let beta = options.early_refresh_beta();
        let near = near.unwrap_or_else(|| self.fetch_near(&full, plan.typed(), beta).carried());
        let request = Request {
            full: &full,
            window,
            beta,
            near,
        };
        if span.is_disabled() {
            return self
                .compute_in::<S, P, F>(request, options, plan, factory, &span)
                .await;
        }
        let traced = self
            .compute_in::<S, P, F>(request, options, plan, factory, &span)
            .instrument(span.clone());
        Box::pin(traced).await
    }

    async fn compute_in<S: Strictness, P: Plan, F: Factory<P>>(
        &self,
        request: Request<'_, P::Value>,
        options: SetOptions,
        plan: P,
        factory: F,
        span: &tracing::Span,
    ) -> std::result::Result<P::Output, S::Error> {
        let Request {
            full,
            window,
            beta,
            near,
        } = request;
        let early = beta.map(|beta| EarlyRead {
            beta,
            window: window.unwrap_or_default(),
        });
        let first = self.fetch_far::<S, P::Value>(full, near, early).await?;
        let (fallback, over) = match first {
            Fetched::Hit(value, bytes) => {
                outcome(span, "hit");
                return Ok(P::hit(self.hit(full, window, value, bytes)));
            }
            Fetched::Refresh(value, bytes) => {
                outcome(span, "hit");
                self.record_read(true);
                let current = bytes.into_shared();
                if window.is_some() {
                    self.remember(full, Raw::Shared(Arc::clone(&current)));
                }
                // Near expiry most reads decide: those arriving while the refresh runs
                // neither spawn a task nor wait.
                if self.inner.flights.is_running(full) {
                    return Ok(P::hit(value));
                }
                let Some((factory, plan)) =
                    factory.detach(self, full, &options, plan, Arc::clone(&current))
                else {
                    return Ok(P::hit(value));
                };
                let refreshed = Box::pin(self.refresh(full, &options, plan, factory, &current));
                return Ok(refreshed.await.unwrap_or_else(|| P::hit(value)));
            }
            mut missed => {
                let over = missed.over(self.inner.fence);
                let fallback = match missed {
                    Fetched::Stale(value, bytes) => Some((value, bytes)),
                    Fetched::Failed if window.is_some() => self.recall::<P::Value>(full),
                    _ => None,
                };
                (fallback, over)
            }
        };
        outcome(span, "miss");
        self.record_read(false);
        // Boxed so that the hit path's future stays small: a hit neither builds nor moves
        // the state of a computation.
        let missed = Missed {
            window,
            over,
            fallback,
        };
        Box::pin(self.compute_missed::<S, P, F>(full, options, plan, factory, missed)).await
    }

    async fn compute_missed<S: Strictness, P: Plan, F: Factory<P>>(
        &self,
        full: &str,
        options: SetOptions,
        plan: P,
        factory: F,
        missed: Missed<P::Value>,
    ) -> std::result::Result<P::Output, S::Error> {
        let Missed {
            window,
            over,
            mut fallback,
        } = missed;
        loop {
            let leader = match self.inner.flights.join(full) {
                Role::Leader(leader) => leader,
                Role::Follower(receiver) => {
                    self.inner.counters.count(Event::StampedeJoin, 1);
                    let shared = match follow(receiver).await {
                        Some(Outcome::Encoded(bytes)) => {
                            self.decode::<P::Value>(full, &bytes).map(P::hit)
                        }
                        Some(Outcome::Failed(failure)) => P::failure(&failure),
                        Some(Outcome::Alone | Outcome::Absent) => None,
                        None => continue,
                    };
                    return Ok(match shared {
                        Some(output) => output,
                        None => self.timed(factory.call()).await,
                    });
                }
            };
            let lock = match options.locks() {
                true => match self.lock_or_wait::<S, P::Value>(full).await? {
                    Led::Found(value, bytes) => {
                        leader.publish(Outcome::Encoded(bytes.into_shared()));
                        return Ok(P::hit(value));
                    }
                    Led::Compute(token) => token,
                },
                false => None,
            };
            let started = options.early_refresh_beta().map(|_| Instant::now());
            let computation = writing(full, over.clone(), self.timed(factory.call()));
            let output = match (self.inner.factory_timeout, fallback.take()) {
                (Some(limit), Some(stale)) => {
                    match tokio::time::timeout(limit, computation).await {
                        Ok(output) => {
                            fallback = Some(stale);
                            output
                        }
                        Err(_) => return Ok(self.serve_stale::<P>(&leader, lock, stale).await),
                    }
                }
                (_, stale) => {
                    fallback = stale;
                    computation.await
                }
            };
            let took = started.map(|started| started.elapsed());
            let written = match plan.verdict(&output) {
                Verdict::Store(value) => {
                    let write = Write {
                        options: Some(&options),
                        window,
                        took,
                        over,
                    };
                    self.share_and_store::<S, _>(&leader, full, value, write)
                        .await
                }
                Verdict::Share(value) => {
                    let write = Write {
                        options: None,
                        window,
                        took: None,
                        over,
                    };
                    self.share_and_store::<S, _>(&leader, full, value, write)
                        .await
                }
                Verdict::Fail(failure) => match fallback {
                    Some(stale) => {
                        return Ok(self.serve_stale::<P>(&leader, lock, stale).await);
                    }
                    None => {
                        leader.publish(failure.map_or(Outcome::Alone, Outcome::Failed));
                        Ok(())
                    }
                },
            };
            if let Some(lock) = lock {
                lock.release().await;
            }
            return written.map(|()| output);
        }
    }

    /// Runs a computation, timed for the metrics (`cachemere.cache.factory.duration`).
    pub(crate) async fn timed<Fut: Future>(&self, computation: Fut) -> Fut::Output {
        let meter = &self.inner.counters.meter;
        let started = meter.times().then(Instant::now);
        let span = tracing::debug_span!("cache.factory", cache.name = self.name());
        let output = computation.instrument(span).await;
        if let Some(started) = started {
            meter.factory(started.elapsed());
        }
        output
    }

    /// Answers with a stale value (and hands it to the waiting callers) instead of a failed
    /// or overdue computation.
    async fn serve_stale<P: Plan>(
        &self,
        leader: &Leader<'_>,
        lock: Option<HeldLock>,
        (value, bytes): (P::Value, Raw),
    ) -> P::Output {
        self.inner.counters.count(Event::StaleServed, 1);
        leader.publish(Outcome::Encoded(bytes.into_shared()));
        if let Some(lock) = lock {
            lock.release().await;
        }
        tracing::debug!("serving a stale value");
        P::hit(value)
    }

    /// Keeps the last good bytes of a fail-safe key in process.
    pub(super) fn remember(&self, full_key: &str, bytes: Raw) {
        self.inner
            .last_good
            .insert(full_key.to_owned(), bytes.into_shared());
    }

    fn recall<T: DeserializeOwned>(&self, full_key: &str) -> Option<(T, Raw)> {
        let bytes = self.inner.last_good.get(full_key)?;
        let value = self.decode(full_key, &bytes)?;
        Some((value, Raw::Shared(bytes)))
    }

    /// Encodes a computed value for the waiting callers and, given options, writes it.
    /// Failures are logged and counted unless strict; the waiting callers then compute alone.
    /// `took` is the computation's time, for early refresh.
    async fn share_and_store<S: Strictness, T: Serialize + ?Sized>(
        &self,
        leader: &Leader<'_>,
        full_key: &str,
        value: &T,
        write: Write<'_>,
    ) -> std::result::Result<(), S::Error> {
        let Write {
            options,
            window,
            took,
            over,
        } = write;
        let Some(options) = options else {
            return match self.inner.format.encode(full_key, value) {
                Ok(bytes) => {
                    leader.publish(Outcome::Encoded(Arc::new(bytes)));
                    Ok(())
                }
                Err(err) => {
                    leader.publish(Outcome::Alone);
                    self.degrade::<S>("SET", full_key, err)
                }
            };
        };
        let prepared = match self.prepare(full_key, value, options, window, took) {
            Ok(prepared) => prepared.over(over),
            Err(err) => {
                leader.publish(Outcome::Alone);
                return self.degrade::<S>("SET", full_key, err);
            }
        };
        let bytes = Arc::clone(&prepared.bytes);
        // Shared once written: a value the fence refused (its key was invalidated while it
        // was computed) must not reach callers who joined after the invalidation; they
        // compute on their own. A store failure leaves the value as good as it was.
        leader.close();
        let written = self.commit(&[prepared], options.tag_names()).await;
        leader.publish(match written.as_deref() {
            Ok([false]) => Outcome::Alone,
            _ => Outcome::Encoded(bytes),
        });
        match written {
            Ok(_) => Ok(()),
            Err(err) => self.degrade::<S>("SET", full_key, err),
        }
    }

    /// Takes the lock, or waits for the holder's value; computes without the lock once
    /// `lock_wait` has passed or the store fails.
    async fn lock_or_wait<S: Strictness, T: DeserializeOwned>(
        &self,
        full_key: &str,
    ) -> std::result::Result<Led<T>, S::Error> {
        let deadline = Instant::now() + self.inner.lock_wait;
        loop {
            match self.acquire_lock(full_key).await {
                Ok(Some(held)) => {
                    if let Fetched::Hit(value, bytes) =
                        self.fetch::<S, T>(full_key, None, None).await?
                    {
                        held.release().await;
                        return Ok(Led::Found(value, bytes));
                    }
                    return Ok(Led::Compute(Some(held)));
                }
                Ok(None) => {}
                Err(err) => {
                    self.degrade::<S>("SET NX", &Cache::lock_key(full_key), err)?;
                    return Ok(Led::Compute(None));
                }
            }
            if let Fetched::Hit(value, bytes) = self.fetch::<S, T>(full_key, None, None).await? {
                return Ok(Led::Found(value, bytes));
            }
            if Instant::now() >= deadline {
                return Ok(Led::Compute(None));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }
}

/// Records a get-or-set's `outcome` on its span: only on a span someone listens to (a
/// disabled span would still look the field up by name).
#[inline(always)]
fn outcome(span: &tracing::Span, outcome: &'static str) {
    if !span.is_disabled() {
        span.record("outcome", outcome);
    }
}

/// What [`Cache::answer`] found when it did not answer: the in-process stages' result, or
/// nothing when they were not asked (or there are none).
pub(crate) struct Asked<T>(Option<Carried<T>>);

impl<T> Asked<T> {
    /// Not asked yet: [`Cache::compute`] asks them.
    pub(crate) fn not_yet() -> Asked<T> {
        Asked(None)
    }
}

/// What a get-or-set's read found in process, and what the rest of it needs to know.
struct Request<'k, T> {
    full: &'k str,
    window: Option<Duration>,
    beta: Option<f64>,
    near: Carried<T>,
}

/// What a miss knows when it starts computing: the fail-safe window, what its write may
/// replace, and the stale value to fall back on.
struct Missed<V> {
    window: Option<Duration>,
    over: Over,
    fallback: Option<(V, Raw)>,
}

/// How a computed value is written: with these options (none: shared with the waiting
/// callers only), the fail-safe window, its computation time (early refresh), over what.
struct Write<'o> {
    options: Option<&'o SetOptions>,
    window: Option<Duration>,
    took: Option<Duration>,
    over: Over,
}

/// Callers spawn these futures (web handlers, `tokio::spawn`): they must be `Send` for every
/// lifetime, which rustc checks only where a future is awaited inside another.
#[cfg(test)]
mod send_check {
    use super::*;
    use crate::{MemoryStore, Ttl};
    use std::pin::Pin;

    fn assert_send<T: Send>(_: T) {}

    type Boxed = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = u64> + Send>> + Send>;

    fn factory() -> Boxed {
        Box::new(|| Box::pin(async { 1u64 }))
    }

    #[test]
    fn get_or_set_futures_are_send_inside_other_futures() {
        let cache = Cache::builder(MemoryStore::new()).build();
        let early = SetOptions::new(Ttl::Default).early_refresh(true);
        let (a, b, c) = (cache.clone(), cache.clone(), cache);
        let second = Duration::from_secs(1);
        assert_send(async move { a.get_or_refresh("k", early, second, factory()).await });
        assert_send(async move { b.get_or_set("k", Ttl::Default, factory()).await });
        assert_send(async move {
            c.try_get_or_set("k", Ttl::Default, || async { Ok::<u8, String>(1) })
                .await
        });
    }
}
