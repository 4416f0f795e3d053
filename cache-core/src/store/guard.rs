//! The store as a [`Cache`](crate::Cache) uses it: every operation bounded by a deadline and
//! behind a circuit breaker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{KeyTtl, RedisStore, Store};
use crate::breaker::Breaker;
use crate::error::{Error, Result};
use crate::health::HealthReport;
use crate::telemetry::Meter;
use tracing::Instrument;

#[derive(Debug)]
pub(crate) struct Guarded {
    /// The store as given: health checks, the breaker's probe and the sweeps whose length
    /// grows with the data use it.
    store: Arc<dyn Store>,
    /// Where operations go: the store, or its handle that enforces `deadline` itself
    /// ([`Store::with_deadline`]), so that each request runs under one timer, not two.
    requests: Arc<dyn Store>,
    /// `requests` when it is a [`RedisStore`], for the hit path: its `GET` is then called
    /// directly, inline in the caller's future, instead of through the trait's boxed future.
    redis: Option<RedisStore>,
    /// The deadline this guard enforces itself, when `requests` does not.
    deadline: Option<Duration>,
    pub(crate) breaker: Arc<Breaker>,
    meter: Meter,
}

impl Guarded {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        deadline: Option<Duration>,
        breaker: Breaker,
        meter: Meter,
    ) -> Guarded {
        let deadline = deadline.filter(|_| !store.in_process());
        let (requests, deadline) = match deadline.map(|after| (store.with_deadline(after), after)) {
            Some((Some(bounded), _)) => (bounded, None),
            Some((None, after)) => (Arc::clone(&store), Some(after)),
            None => (Arc::clone(&store), None),
        };
        let redis = (requests.as_ref() as &dyn std::any::Any)
            .downcast_ref::<RedisStore>()
            .cloned();
        Guarded {
            store,
            requests,
            redis,
            deadline,
            breaker: Arc::new(breaker),
            meter,
        }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounded(operation, self.deadline, request).await
    }

    /// Operations whose duration grows with the data (pattern and tag sweeps) keep only the
    /// store's own command timeout.
    async fn unbounded<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounded(operation, None, request).await
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        deadline: Option<Duration>,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = self.span(operation);
        self.bounded_in(operation, deadline, request, span).await
    }

    /// The span of a store operation, `cache.store`.
    #[inline]
    fn span(&self, operation: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "cache.store",
            db.system.name = self.store.backend(),
            db.operation.name = operation,
            error.type = tracing::field::Empty,
        )
    }

    async fn bounded_in<T>(
        &self,
        operation: &'static str,
        deadline: Option<Duration>,
        request: impl Future<Output = Result<T>>,
        span: tracing::Span,
    ) -> Result<T> {
        let started = self.admit(operation)?;
        // without a subscriber listening, the request runs as it is
        let result = match (deadline, span.is_disabled()) {
            (Some(after), true) => tokio::time::timeout(after, request)
                .await
                .unwrap_or(Err(Error::Timeout { operation, after })),
            (Some(after), false) => tokio::time::timeout(after, request.instrument(span.clone()))
                .await
                .unwrap_or(Err(Error::Timeout { operation, after })),
            (None, true) => request.await,
            (None, false) => request.instrument(span.clone()).await,
        };
        if let Err(err) = &result {
            span.record("error.type", crate::telemetry::error_type(err));
        }
        self.settle(operation, started, result)
    }

    /// A hot operation (`GET`, `MGET`): on Redis, with the deadline in the store's handle
    /// and nobody listening to spans, the request `on_redis` builds is awaited here, in
    /// place, rather than passed down by value or boxed by the `Store` trait; otherwise the
    /// store's `general` request runs as [`run`](Guarded::run) runs it.
    async fn inline<'a, T, R, G>(
        &'a self,
        operation: &'static str,
        on_redis: impl FnOnce(&'a RedisStore) -> R,
        general: impl FnOnce() -> G,
    ) -> Result<T>
    where
        R: Future<Output = Result<T>>,
        G: Future<Output = Result<T>>,
    {
        let span = self.span(operation);
        match &self.redis {
            Some(redis) if self.deadline.is_none() && span.is_disabled() => {
                let started = self.admit(operation)?;
                let result = on_redis(redis).await;
                self.settle(operation, started, result)
            }
            _ => {
                self.bounded_in(operation, self.deadline, general(), span)
                    .await
            }
        }
    }

    /// Lets an operation through the breaker, with the time it starts when it is timed.
    #[inline]
    fn admit(&self, operation: &'static str) -> Result<Option<std::time::Instant>> {
        if !self.breaker.allows() {
            let err = Error::CircuitOpen { operation };
            self.meter.store_operation(operation, None, Some(&err));
            return Err(err);
        }
        Ok(self.meter.times().then(std::time::Instant::now))
    }

    /// Tells the breaker and the meter how an operation went.
    #[inline]
    fn settle<T>(
        &self,
        operation: &'static str,
        started: Option<std::time::Instant>,
        result: Result<T>,
    ) -> Result<T> {
        match &result {
            Err(err) if err.is_transient() => self.breaker.failed(&self.store),
            _ => self.breaker.succeeded(),
        }
        if let Some(started) = started {
            self.meter
                .store_operation(operation, Some(started.elapsed()), result.as_ref().err());
        }
        result
    }
}

/// The store's operations, bounded and guarded. Inherent (not a `Store` impl) so that each
/// call is one boxed future, the inner store's, rather than two; `GET` and `MGET` on Redis
/// are none ([`inline`](Guarded::inline)).
impl Guarded {
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inline(
            "GET",
            |redis| redis.get_value(key),
            || self.requests.get(key),
        )
        .await
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.run("SET", self.requests.set(key, value, ttl)).await
    }

    pub(crate) async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.run("PEXPIRE", self.requests.expire(key, ttl)).await
    }

    pub(crate) async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.run("PTTL", self.requests.ttl(key)).await
    }

    pub(crate) async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inline(
            "MGET",
            |redis| redis.mget_values(keys),
            || self.requests.mget(keys),
        )
        .await
    }

    pub(crate) async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()> {
        self.run("MSET", self.requests.mset(items)).await
    }

    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.run("UNLINK", self.requests.delete_many(keys)).await
    }

    /// Removes `keys`, or with a fence `window`, [fences](Store::fence) them (see
    /// `fence.rs`); returns how many held a value.
    pub(crate) async fn remove(&self, keys: &[String], window: Option<Duration>) -> Result<u64> {
        let operation = if window.is_some() {
            "EVALSHA"
        } else {
            "UNLINK"
        };
        self.run(
            operation,
            crate::fence::remove(&*self.requests, keys, window),
        )
        .await
    }

    pub(crate) async fn set_many_if(
        &self,
        writes: &[(&str, &[u8], Duration, super::Expected<'_>)],
    ) -> Result<Vec<bool>> {
        self.run("SET", self.requests.set_many_if(writes)).await
    }

    /// Removes (or with a fence `window`, fences) the keys matching `pattern`.
    pub(crate) async fn remove_matching(
        &self,
        pattern: &str,
        window: Option<Duration>,
    ) -> Result<u64> {
        // the store as given: its handle under the cache's deadline would bound each of the
        // sweep's commands by that deadline
        let sweep = crate::fence::remove_matching(&*self.store, pattern, window);
        self.unbounded("SCAN", sweep).await
    }

    pub(crate) async fn hset(
        &self,
        key: &str,
        field: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.run("HSET", self.requests.hset(key, field, value, ttl))
            .await
    }

    pub(crate) async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        self.run("HGET", self.requests.hget(key, field)).await
    }

    pub(crate) async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.run("HGETALL", self.requests.hgetall(key)).await
    }

    pub(crate) async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.run("HDEL", self.requests.hdel(key, field)).await
    }

    pub(crate) async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run("LPUSH", self.requests.lpush(key, values, ttl))
            .await
    }

    pub(crate) async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run("RPUSH", self.requests.rpush(key, values, ttl))
            .await
    }

    pub(crate) async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        self.run("LRANGE", self.requests.lrange(key, start, stop))
            .await
    }

    pub(crate) async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run("SADD", self.requests.sadd(key, members, ttl))
            .await
    }

    pub(crate) async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64> {
        self.run("SREM", self.requests.srem(key, members)).await
    }

    pub(crate) async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        self.run("SMEMBERS", self.requests.smembers(key)).await
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.run("SET", self.requests.set_if_absent(key, value, ttl))
            .await
    }

    pub(crate) async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool> {
        self.run(
            "DELETE IF EQUALS",
            self.requests.delete_if_equals(key, expected),
        )
        .await
    }

    pub(crate) async fn replace_if_equals(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.run(
            "REPLACE IF EQUALS",
            self.requests.replace_if_equals(key, expected, value, ttl),
        )
        .await
    }

    pub(crate) async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        self.run("TAG", self.requests.tag(tag_key, members, ttl))
            .await
    }

    pub(crate) async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        self.unbounded("TAKE TAGGED", self.store.take_tagged(tag_key))
            .await
    }

    pub(crate) async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
        self.run("GET", self.requests.get_with_ttl(key)).await
    }

    pub(crate) async fn mget_with_ttl(
        &self,
        keys: &[&str],
    ) -> Result<Vec<Option<(Vec<u8>, KeyTtl)>>> {
        self.run("MGET", self.requests.mget_with_ttl(keys)).await
    }

    pub(crate) async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        self.run("PUBLISH", self.requests.publish(channel, message))
            .await
    }

    pub(crate) async fn health_check(&self) -> HealthReport {
        let mut report = self.store.health_check().await;
        report.circuit_open = self.breaker.is_open();
        report
    }
}
