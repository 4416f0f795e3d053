//! Early refresh (XFetch): a read that decides to refresh a value before it expires, and the
//! computations a get-or-set hands over, which run in the call or as their own task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;

use crate::cache::Cache;
use crate::degrade::Lenient;
use crate::fence::Over;
use crate::flight::{Leader, Outcome, Role};
use crate::frame::Early;
use crate::plan::{Plan, Verdict};
use crate::random::random_u64;
use crate::telemetry::Event;
use crate::ttl::SetOptions;

/// XFetch: refresh once `now - took * beta * ln(u) >= expires_at`, `u` uniform in (0, 1].
pub(crate) fn refreshes_early(now: u64, early: Early, beta: f64) -> bool {
    if now >= early.expires_at {
        return true;
    }
    let u = ((random_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let ahead = f64::from(early.took_ms) * beta * -u.ln();
    ahead >= (early.expires_at - now) as f64
}

/// A computation handed to a get-or-set: run in the call, or, for an early refresh, as its
/// own task when it owns what it needs.
pub(crate) trait Factory<P: Plan>: Sized {
    type Fut: Future<Output = P::Output>;

    fn call(self) -> Self::Fut;

    /// Starts an early refresh of `full_key` as its own task; gives the factory and the plan
    /// back when it cannot outlive the call (or no tokio runtime runs).
    fn detach(
        self,
        cache: &Cache,
        full_key: &str,
        options: &SetOptions,
        plan: P,
        current: Arc<Vec<u8>>,
    ) -> Option<(Self, P)>;
}

/// A factory that may borrow from its caller: it runs in the call.
pub(crate) struct Inline<F>(pub(crate) F);

impl<P, F, Fut> Factory<P> for Inline<F>
where
    P: Plan,
    F: FnOnce() -> Fut,
    Fut: Future<Output = P::Output>,
{
    type Fut = Fut;

    fn call(self) -> Fut {
        (self.0)()
    }

    fn detach(
        self,
        _: &Cache,
        _: &str,
        _: &SetOptions,
        plan: P,
        _: Arc<Vec<u8>>,
    ) -> Option<(Self, P)> {
        Some((self, plan))
    }
}

/// A factory whose future owns what it needs: an early refresh runs that future as its own
/// task.
///
/// What the task needs (`Send + 'static`) is checked once, in [`Detached::new`], and kept as
/// a function pointer: as where-clauses of the `Factory` impl, those bounds made every
/// future awaiting a detached computation `Send` for one lifetime only (rustc's
/// "implementation of `Send` is not general enough").
pub(crate) struct Detached<F, P, Fut> {
    factory: F,
    spawn: fn(Cache, String, SetOptions, P, Fut, Arc<Vec<u8>>),
}

impl<F, P, Fut> Detached<F, P, Fut>
where
    P: Plan + Send + 'static,
    P::Output: Send + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = P::Output> + Send + 'static,
{
    pub(crate) fn new(factory: F) -> Detached<F, P, Fut> {
        Detached {
            factory,
            spawn: spawn_refresh::<P, Fut>,
        }
    }
}

tokio::task_local! {
    /// The key a computation will be written to, and what the write may replace: scoped
    /// around an early refresh running as its own task ([`spawn_refresh`]) and around a
    /// miss's computation, for a write made after the caller was answered.
    static WRITING: (String, Over);
}

/// What a write of `full_key` made by the computation running now may replace, if it is
/// the computation of an early refresh or of a miss (see [`WRITING`]): a computation that
/// outlives its caller ([`Cache::get_or_refresh`]'s hard timeout) then writes as the
/// refresh or the miss would have, so that an invalidation made meanwhile is not undone.
pub(crate) fn writing_over(full_key: &str) -> Option<Over> {
    WRITING
        .try_with(|(key, over)| (key == full_key).then(|| over.clone()))
        .ok()
        .flatten()
}

/// `computation`, run as the one that writes `full_key` over `over` (see [`writing_over`]).
pub(crate) fn writing<F: Future>(
    full_key: &str,
    over: Over,
    computation: F,
) -> impl Future<Output = F::Output> {
    WRITING.scope((full_key.to_owned(), over), computation)
}

fn spawn_refresh<P, Fut>(
    cache: Cache,
    full: String,
    options: SetOptions,
    plan: P,
    computation: Fut,
    current: Arc<Vec<u8>>,
) where
    P: Plan + Send + 'static,
    P::Output: Send + 'static,
    Fut: Future<Output = P::Output> + Send + 'static,
{
    let over = Over::Bytes(Arc::clone(&current));
    tokio::spawn(WRITING.scope((full.clone(), over), async move {
        let factory = Inline(move || computation);
        cache
            .refresh(&full, &options, plan, factory, &current)
            .await;
    }));
}

impl<P, F, Fut> Factory<P> for Detached<F, P, Fut>
where
    P: Plan,
    F: FnOnce() -> Fut,
    Fut: Future<Output = P::Output>,
{
    type Fut = Fut;

    fn call(self) -> Fut {
        (self.factory)()
    }

    fn detach(
        self,
        cache: &Cache,
        full_key: &str,
        options: &SetOptions,
        plan: P,
        current: Arc<Vec<u8>>,
    ) -> Option<(Self, P)> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Some((self, plan));
        }
        // Futures do nothing until polled: making it here starts no computation.
        let computation = (self.factory)();
        (self.spawn)(
            cache.clone(),
            full_key.to_owned(),
            options.clone(),
            plan,
            computation,
            current,
        );
        None
    }
}

impl Cache {
    /// Recomputes a value that is still current (early refresh): once per key in this
    /// process, and with [`SetOptions::lock`](crate::SetOptions::lock) once across the processes sharing the store.
    /// Nothing is computed when the stored value is no longer `current` (another caller
    /// refreshed it). Returns the computed output; `None` when nothing was computed or the
    /// computation failed, and the current value stays in place.
    pub(crate) async fn refresh<P: Plan, F: Factory<P>>(
        &self,
        full: &str,
        options: &SetOptions,
        plan: P,
        factory: F,
        current: &Arc<Vec<u8>>,
    ) -> Option<P::Output> {
        // A leader that publishes nothing lets the callers that missed meanwhile (the value
        // deleted, say) compete to compute, as when a leader is cancelled.
        let Role::Leader(leader) = self.inner.flights.join(full) else {
            return None;
        };
        let lock = match options.locks() {
            true => Some(self.try_lock(full).await?),
            false => None,
        };
        let computed = match self.still_stored(full, current).await {
            true => {
                let refreshed = self.refresh_now(&leader, full, options, plan, factory, current);
                Some(refreshed.await)
            }
            false => None,
        };
        if let Some(lock) = lock {
            lock.release().await;
        }
        computed.flatten()
    }

    async fn refresh_now<P: Plan, F: Factory<P>>(
        &self,
        leader: &Leader<'_>,
        full: &str,
        options: &SetOptions,
        plan: P,
        factory: F,
        current: &Arc<Vec<u8>>,
    ) -> Option<P::Output> {
        self.inner.counters.count(Event::EarlyRefresh, 1);
        tracing::debug!("refreshing a value before it expires");
        let window = self.fail_safe_window(options);
        let started = Instant::now();
        // A panicking computation is a failed refresh too: counted, then the panic goes on.
        let limit = self.inner.refresh_timeout;
        // Outside a tokio runtime (an in-process store needs none) there is no timer to
        // bound it with.
        let bounded = tokio::runtime::Handle::try_current().is_ok();
        let computation = self.timed(factory.call());
        let computed = AssertUnwindSafe(async move {
            match bounded {
                true => tokio::time::timeout(limit, computation).await.ok(),
                false => Some(computation.await),
            }
        })
        .catch_unwind();
        let output = match computed.await {
            Ok(Some(output)) => output,
            Ok(None) => {
                self.inner.counters.count(Event::EarlyRefreshFailure, 1);
                tracing::warn!(key = crate::log::traced(full), after = ?limit, "an early refresh timed out; the current value stays");
                return None;
            }
            Err(panic) => {
                self.inner.counters.count(Event::EarlyRefreshFailure, 1);
                tracing::debug!("an early refresh panicked; the current value stays");
                std::panic::resume_unwind(panic)
            }
        };
        let took = Some(started.elapsed());
        let prepared = match plan.verdict(&output) {
            Verdict::Store(value) => self.prepare(full, value, options, window, took),
            Verdict::Share(_) => return Some(output),
            Verdict::Fail(_) => {
                self.inner.counters.count(Event::EarlyRefreshFailure, 1);
                tracing::debug!("an early refresh failed; the current value stays");
                return None;
            }
        };
        let written = match prepared {
            Ok(prepared) => {
                let bytes = Arc::clone(&prepared.bytes);
                let prepared = prepared.over(Over::Bytes(Arc::clone(current)));
                leader.close();
                self.commit(&[prepared], options.tag_names())
                    .await
                    .map(|replaced| (replaced == [true]).then_some(bytes))
            }
            Err(err) => Err(err),
        };
        match written {
            // Callers that missed meanwhile get it; a refresh that found the value gone or
            // changed (an invalidation) publishes nothing, and they compute afresh.
            Ok(Some(bytes)) => leader.publish(Outcome::Encoded(bytes)),
            Ok(None) => tracing::debug!("the value changed while it was refreshed; not written"),
            Err(err) => {
                let _ = self.degrade::<Lenient>("SET", full, err);
            }
        }
        Some(output)
    }

    /// Whether the store still holds `bytes` under `full_key`.
    async fn still_stored(&self, full_key: &str, bytes: &[u8]) -> bool {
        match self.counted(self.inner.guarded.get(full_key).await) {
            Ok(found) => found.is_some_and(|stored| stored == bytes),
            Err(err) => {
                let _ = self.degrade::<Lenient>("GET", full_key, err);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::block_on;
    use crate::{MemoryStore, Ttl};
    use std::time::Duration;

    #[test]
    fn an_early_refresh_outside_a_tokio_runtime_runs_without_a_timer() {
        let cache = Cache::builder(MemoryStore::new()).build();
        // every read decides to refresh a value that took a few milliseconds
        let options = || SetOptions::new(Ttl::Long).early_refresh(true).beta(1e9);
        let first = block_on(cache.get_or_set("k", options(), || async {
            std::thread::sleep(Duration::from_millis(3));
            1u32
        }));
        assert_eq!(first.expect("computed"), 1);
        let refreshed = block_on(cache.get_or_set("k", options(), || async { 2u32 }));
        assert_eq!(
            refreshed.expect("refreshed"),
            2,
            "the deciding call ran the refresh"
        );
        assert_eq!(cache.stats().early_refreshes, 1);
    }

    fn share_refreshing(now: u64, expires_at: u64, took_ms: u32, beta: f64) -> f64 {
        let early = Early {
            expires_at,
            took_ms,
        };
        let draws = 20_000;
        let refreshed = (0..draws)
            .filter(|_| refreshes_early(now, early, beta))
            .count();
        refreshed as f64 / f64::from(draws)
    }

    #[test]
    fn xfetch_refreshes_with_the_probability_of_the_paper() {
        // P(refresh) = P(-ln u >= gap / (took * beta)) = exp(-gap / (took * beta)).
        let share = share_refreshing(1_000, 1_050, 50, 1.0);
        assert!((0.34..0.40).contains(&share), "{share}");
        let share = share_refreshing(1_000, 1_100, 50, 2.0);
        assert!((0.34..0.40).contains(&share), "{share}");
        let share = share_refreshing(1_000, 1_025, 50, 1.0);
        assert!((0.57..0.64).contains(&share), "{share}");
        // far from expiry: practically never; at or past it: always
        assert_eq!(share_refreshing(0, 60_000, 50, 1.0), 0.0);
        assert_eq!(share_refreshing(1_050, 1_050, 50, 1.0), 1.0);
        assert_eq!(share_refreshing(2_000, 1_050, 0, 1.0), 1.0);
        // a free computation is never refreshed ahead
        assert_eq!(share_refreshing(1_049, 1_050, 0, 1.0), 0.0);
    }
}
