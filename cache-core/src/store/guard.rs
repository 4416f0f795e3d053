//! The store as a [`Cache`](crate::Cache) uses it: every operation bounded by a deadline and
//! behind a circuit breaker (one per node of a Redis Cluster, see `breaker.rs`); a multi-key
//! operation on a store spread over nodes runs as one part per node, so that a lost node
//! fails only its own keys.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{KeyTtl, RedisStore, Store};
use crate::breaker::{Breakers, On};
use crate::error::{Error, Result};
use crate::health::HealthReport;
use crate::telemetry::{Meter, Op, Place};
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
    /// `db.namespace`, `server.address` and `server.port` of the store's spans.
    place: Place,
    pub(crate) breakers: Arc<Breakers>,
    meter: Meter,
}

/// The outcome of a multi-key operation: of all its keys at once, or of one part per node
/// (with the indices of its keys).
enum Split<T> {
    All(Result<T>),
    Parts(Vec<(Vec<usize>, Result<T>)>),
}

/// The parts' errors, the first one kept and the others logged.
fn first_error(errors: impl IntoIterator<Item = Error>) -> Option<Error> {
    let mut errors = errors.into_iter();
    let first = errors.next()?;
    for other in errors {
        tracing::debug!(error = %crate::error::one_line(&other), "another node failed too");
    }
    Some(first)
}

impl<X: Default> Split<Vec<X>> {
    /// Each part's replies put back at their keys' places; an error if any part failed.
    fn placed(self, len: usize) -> Result<Vec<X>> {
        let parts = match self {
            Split::All(all) => return all,
            Split::Parts(parts) => parts,
        };
        let mut placed: Vec<X> = std::iter::repeat_with(X::default).take(len).collect();
        let mut errors = Vec::new();
        for (indices, replies) in parts {
            match replies {
                Ok(replies) => {
                    for (index, reply) in indices.into_iter().zip(replies) {
                        placed[index] = reply;
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        first_error(errors).map_or(Ok(placed), Err)
    }
}

impl Split<u64> {
    /// The parts' counts added up; an error if any part failed.
    fn summed(self) -> Result<u64> {
        match self {
            Split::All(all) => all,
            Split::Parts(parts) => {
                let (mut total, mut errors) = (0u64, Vec::new());
                for (_, count) in parts {
                    match count {
                        Ok(count) => total = total.saturating_add(count),
                        Err(err) => errors.push(err),
                    }
                }
                first_error(errors).map_or(Ok(total), Err)
            }
        }
    }
}

/// What a multi-key read found: a reply per key, in order (`None`: not found, or its node
/// failed); and when some node failed, its error and which keys it held.
pub(crate) struct Found<V> {
    pub(crate) replies: Vec<Option<V>>,
    pub(crate) failure: Option<Failure>,
}

/// The failure of a multi-key read, whole or on some nodes.
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// Per key, whether its node failed; `None`: every key's.
    pub(crate) lost: Option<Vec<bool>>,
}

impl<V> Found<V> {
    fn gather(len: usize, split: Split<Vec<Option<V>>>) -> Found<V> {
        let parts = match split {
            Split::All(Ok(replies)) => {
                return Found {
                    replies,
                    failure: None,
                };
            }
            Split::All(Err(error)) => {
                return Found {
                    replies: std::iter::repeat_with(|| None).take(len).collect(),
                    failure: Some(Failure { error, lost: None }),
                };
            }
            Split::Parts(parts) => parts,
        };
        let mut replies: Vec<Option<V>> = std::iter::repeat_with(|| None).take(len).collect();
        let (mut lost, mut errors) = (vec![false; len], Vec::new());
        for (indices, part) in parts {
            match part {
                Ok(found) => {
                    for (index, reply) in indices.into_iter().zip(found) {
                        replies[index] = reply;
                    }
                }
                Err(err) => {
                    errors.push(err);
                    for index in indices {
                        lost[index] = true;
                    }
                }
            }
        }
        let failure = first_error(errors).map(|error| Failure {
            error,
            lost: Some(lost),
        });
        Found { replies, failure }
    }
}

/// The items of `all` at `indices`.
fn pick<T: Clone>(all: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&index| all[index].clone()).collect()
}

impl Guarded {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        deadline: Option<Duration>,
        breaker: (u32, Duration),
        meter: Meter,
        place: Place,
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
        // a store on one server is never asked where its keys are
        let spread = match &redis {
            Some(redis) => redis.is_cluster(),
            None => !store.in_process(),
        };
        let (threshold, cooldown) = breaker;
        Guarded {
            store,
            requests,
            redis,
            deadline,
            place,
            breakers: Arc::new(Breakers::new(threshold, cooldown, spread, meter.clone())),
            meter,
        }
    }

    async fn run<T>(
        &self,
        operation: Op,
        on: On<'_>,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounded(operation, on, self.deadline, request).await
    }

    /// Operations whose duration grows with the data (pattern and tag sweeps) keep only the
    /// store's own command timeout.
    async fn unbounded<T>(
        &self,
        operation: Op,
        on: On<'_>,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounded(operation, on, None, request).await
    }

    async fn bounded<T>(
        &self,
        operation: Op,
        on: On<'_>,
        deadline: Option<Duration>,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = self.span(operation);
        self.bounded_in(operation, on, deadline, request, span)
            .await
    }

    /// The span of a store operation, `cache.store`; for OpenTelemetry (`otel.name`, set
    /// only when the span is recorded) named `{db.operation.name} {db.namespace}` as the
    /// database conventions ask (`GET 0`), or `{db.operation.name}` without a namespace.
    #[inline]
    fn span(&self, operation: Op) -> tracing::Span {
        let span = tracing::debug_span!(
            "cache.store",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            db.system.name = crate::telemetry::system_name(self.store.backend()),
            db.namespace = self.place.namespace.as_deref(),
            server.address = self.place.server.as_ref().map(|(address, _)| address.as_str()),
            server.port = self.place.server.as_ref().map(|&(_, port)| port),
            db.operation.name = operation.name,
            db.query.summary = operation.summary,
            error.type = tracing::field::Empty,
        );
        if !span.is_disabled() {
            match &self.place.namespace {
                Some(namespace) => span.record(
                    "otel.name",
                    tracing::field::display(format_args!("{} {namespace}", operation.name)),
                ),
                None => span.record("otel.name", operation.name),
            };
        }
        span
    }

    async fn bounded_in<T>(
        &self,
        operation: Op,
        on: On<'_>,
        deadline: Option<Duration>,
        request: impl Future<Output = Result<T>>,
        span: tracing::Span,
    ) -> Result<T> {
        let started = self.admit(operation, on)?;
        // without a subscriber listening, the request runs as it is
        let result = match (deadline, span.is_disabled()) {
            (Some(after), true) => {
                tokio::time::timeout(after, request)
                    .await
                    .unwrap_or(Err(Error::Timeout {
                        operation: operation.label(),
                        after,
                    }))
            }
            (Some(after), false) => tokio::time::timeout(after, request.instrument(span.clone()))
                .await
                .unwrap_or(Err(Error::Timeout {
                    operation: operation.label(),
                    after,
                })),
            (None, true) => request.await,
            (None, false) => request.instrument(span.clone()).await,
        };
        if let Err(err) = &result {
            span.record("error.type", crate::telemetry::error_type(err));
        }
        self.settle(operation, on, started, result)
    }

    /// A hot operation (`GET`, `MGET`): on Redis, with the deadline in the store's handle
    /// and nobody listening to spans, the request `on_redis` builds is awaited here, in
    /// place, rather than passed down by value or boxed by the `Store` trait; otherwise the
    /// store's `general` request runs as [`run`](Guarded::run) runs it.
    async fn inline<'a, T, R, G>(
        &'a self,
        operation: Op,
        on: On<'_>,
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
                let started = self.admit(operation, on)?;
                let result = on_redis(redis).await;
                self.settle(operation, on, started, result)
            }
            _ => {
                self.bounded_in(operation, on, self.deadline, general(), span)
                    .await
            }
        }
    }

    /// Runs a multi-key operation on `keys`: on a store spread over nodes, one `request`
    /// per node (given the indices of its keys), each behind its node's breaker, all at once;
    /// otherwise one `request` for every key (given `None`).
    async fn per_node<T, K, F>(
        &self,
        operation: Op,
        keys: &[K],
        request: impl Fn(Option<Vec<usize>>) -> F,
    ) -> Split<T>
    where
        K: AsRef<str>,
        F: Future<Output = Result<T>>,
    {
        let groups = match self.breakers.spread() {
            true => {
                let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
                self.store.locate(&keys)
            }
            false => None,
        };
        match groups {
            Some(groups) if groups.len() > 1 => {
                let parts = groups.iter().map(|(node, indices)| {
                    self.run(operation, On::Node(node), request(Some(indices.clone())))
                });
                let replies = join_all(parts).await;
                let indices = groups.into_iter().map(|(_, indices)| indices);
                Split::Parts(indices.zip(replies).collect())
            }
            Some(groups) if groups.len() == 1 => Split::All(
                self.run(operation, On::Node(&groups[0].0), request(None))
                    .await,
            ),
            _ => Split::All(self.run(operation, On::Store, request(None)).await),
        }
    }

    /// Lets an operation through the breaker, with the time it starts when it is timed.
    #[inline]
    fn admit(&self, operation: Op, on: On<'_>) -> Result<Option<std::time::Instant>> {
        if !self.breakers.allows(on, &*self.store) {
            let err = Error::CircuitOpen {
                operation: operation.label(),
            };
            self.meter.store_operation(operation, None, Some(&err));
            return Err(err);
        }
        Ok(self.meter.times().then(std::time::Instant::now))
    }

    /// Tells the breaker and the meter how an operation went.
    #[inline]
    fn settle<T>(
        &self,
        operation: Op,
        on: On<'_>,
        started: Option<std::time::Instant>,
        result: Result<T>,
    ) -> Result<T> {
        match &result {
            Err(err) if err.is_transient() => self.breakers.failed(on, &self.store),
            _ => self.breakers.succeeded(on, &*self.store),
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
            Op::command("GET"),
            On::Key(key),
            |redis| redis.get_value(key),
            || self.requests.get(key),
        )
        .await
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.run(
            Op::command("SET"),
            On::Key(key),
            self.requests.set(key, value, ttl),
        )
        .await
    }

    pub(crate) async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.run(
            Op::command("PEXPIRE"),
            On::Key(key),
            self.requests.expire(key, ttl),
        )
        .await
    }

    pub(crate) async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.run(Op::command("PTTL"), On::Key(key), self.requests.ttl(key))
            .await
    }

    /// Reads `keys`; on a cluster, the keys of a node that fails are lost (see [`Found`]),
    /// the others read.
    pub(crate) async fn mget(&self, keys: &[&str]) -> Found<Vec<u8>> {
        let split = match self.breakers.spread() {
            false => Split::All(
                self.inline(
                    Op::command("MGET"),
                    On::Store,
                    |redis| redis.mget_values(keys),
                    || self.requests.mget(keys),
                )
                .await,
            ),
            true => {
                self.per_node(Op::command("MGET"), keys, |part| async move {
                    match part {
                        None => self.requests.mget(keys).await,
                        Some(indices) => self.requests.mget(&pick(keys, &indices)).await,
                    }
                })
                .await
            }
        };
        Found::gather(keys.len(), split)
    }

    pub(crate) async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()> {
        let keys: Vec<&str> = match self.breakers.spread() {
            true => items.iter().map(|(key, _, _)| key.as_str()).collect(),
            false => Vec::new(),
        };
        let split = self
            .per_node(Op::batch("BATCH SET", None), &keys, |part| async move {
                match part {
                    None => self.requests.mset(items).await,
                    Some(indices) => self.requests.mset(&pick(items, &indices)).await,
                }
            })
            .await;
        match split {
            Split::All(all) => all,
            Split::Parts(parts) => {
                let errors = parts.into_iter().filter_map(|(_, part)| part.err());
                first_error(errors).map_or(Ok(()), Err)
            }
        }
    }

    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.per_node(Op::command("UNLINK"), keys, |part| async move {
            match part {
                None => self.requests.delete_many(keys).await,
                Some(indices) => self.requests.delete_many(&pick(keys, &indices)).await,
            }
        })
        .await
        .summed()
    }

    /// Removes `keys`, or with a fence `window`, [fences](Store::fence) them (see
    /// `fence.rs`); returns how many held a value.
    pub(crate) async fn remove(&self, keys: &[String], window: Option<Duration>) -> Result<u64> {
        let operation = if window.is_some() {
            Op::script("fence")
        } else {
            Op::command("UNLINK")
        };
        let requests = &*self.requests;
        self.per_node(operation, keys, |part| async move {
            match part {
                None => crate::fence::remove(requests, keys, window).await,
                Some(indices) => {
                    crate::fence::remove(requests, &pick(keys, &indices), window).await
                }
            }
        })
        .await
        .summed()
    }

    pub(crate) async fn set_many_if(
        &self,
        writes: &[(&str, &[u8], Duration, super::Expected<'_>)],
    ) -> Result<Vec<bool>> {
        let keys: Vec<&str> = match self.breakers.spread() {
            true => writes.iter().map(|(key, ..)| *key).collect(),
            false => Vec::new(),
        };
        self.per_node(
            Op::batch("BATCH", Some("conditional SET")),
            &keys,
            |part| async move {
                match part {
                    None => self.requests.set_many_if(writes).await,
                    Some(indices) => self.requests.set_many_if(&pick(writes, &indices)).await,
                }
            },
        )
        .await
        .placed(writes.len())
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
        let operation = Op {
            name: "SCAN",
            summary: Some("sweep"),
        };
        self.unbounded(operation, On::Store, sweep).await
    }

    pub(crate) async fn hset(
        &self,
        key: &str,
        field: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.run(
            Op::script("HSET with ttl"),
            On::Key(key),
            self.requests.hset(key, field, value, ttl),
        )
        .await
    }

    pub(crate) async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        self.run(
            Op::command("HGET"),
            On::Key(key),
            self.requests.hget(key, field),
        )
        .await
    }

    pub(crate) async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.run(
            Op::command("HGETALL"),
            On::Key(key),
            self.requests.hgetall(key),
        )
        .await
    }

    pub(crate) async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.run(
            Op::command("HDEL"),
            On::Key(key),
            self.requests.hdel(key, field),
        )
        .await
    }

    pub(crate) async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run(
            Op::script("LPUSH with ttl"),
            On::Key(key),
            self.requests.lpush(key, values, ttl),
        )
        .await
    }

    pub(crate) async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run(
            Op::script("RPUSH with ttl"),
            On::Key(key),
            self.requests.rpush(key, values, ttl),
        )
        .await
    }

    pub(crate) async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        self.run(
            Op::command("LRANGE"),
            On::Key(key),
            self.requests.lrange(key, start, stop),
        )
        .await
    }

    pub(crate) async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.run(
            Op::script("SADD with ttl"),
            On::Key(key),
            self.requests.sadd(key, members, ttl),
        )
        .await
    }

    pub(crate) async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64> {
        self.run(
            Op::command("SREM"),
            On::Key(key),
            self.requests.srem(key, members),
        )
        .await
    }

    pub(crate) async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        self.run(
            Op::command("SMEMBERS"),
            On::Key(key),
            self.requests.smembers(key),
        )
        .await
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let request = self.requests.set_if_absent(key, value, ttl);
        self.run(Op::command("SET"), On::Key(key), request).await
    }

    pub(crate) async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool> {
        let request = self.requests.delete_if_equals(key, expected);
        self.run(Op::script("delete if equals"), On::Key(key), request)
            .await
    }

    pub(crate) async fn replace_if_equals(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let request = self.requests.replace_if_equals(key, expected, value, ttl);
        self.run(Op::script("replace if equals"), On::Key(key), request)
            .await
    }

    pub(crate) async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        self.run(
            Op::script("tag"),
            On::Key(tag_key),
            self.requests.tag(tag_key, members, ttl),
        )
        .await
    }

    pub(crate) async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        self.unbounded(
            Op::script("take tagged"),
            On::Key(tag_key),
            self.store.take_tagged(tag_key),
        )
        .await
    }

    pub(crate) async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
        let operation = Op::batch("BATCH", Some("GET and PTTL"));
        self.run(operation, On::Key(key), self.requests.get_with_ttl(key))
            .await
    }

    /// [`mget`](Guarded::mget) with each value's remaining lifetime.
    pub(crate) async fn mget_with_ttl(&self, keys: &[&str]) -> Found<(Vec<u8>, KeyTtl)> {
        let split = self
            .per_node(
                Op::batch("BATCH", Some("MGET and PTTL")),
                keys,
                |part| async move {
                    match part {
                        None => self.requests.mget_with_ttl(keys).await,
                        Some(indices) => self.requests.mget_with_ttl(&pick(keys, &indices)).await,
                    }
                },
            )
            .await;
        Found::gather(keys.len(), split)
    }

    pub(crate) async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        self.run(
            Op::command("PUBLISH"),
            On::Store,
            self.requests.publish(channel, message),
        )
        .await
    }

    pub(crate) async fn health_check(&self) -> HealthReport {
        let mut report = self.store.health_check().await;
        report.circuit_open = self.breakers.any_open();
        report.open_circuits = self.breakers.open_nodes();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A part of a multi-key read: its keys' indices and its replies.
    type Part = (Vec<usize>, Result<Vec<Option<usize>>>);

    /// A failed part's error.
    fn lost() -> Error {
        Error::Timeout {
            operation: "MGET",
            after: Duration::from_millis(1),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Keys split into parts (one per node, each with its keys' indices in any order),
        /// some of which fail: the replies land at their keys' places, the failed parts'
        /// keys are marked lost, and the first error is kept.
        #[test]
        fn parts_are_put_back_in_key_order(
            nodes in proptest::collection::vec(0usize..4, 1..40),
            failing in proptest::collection::vec(any::<bool>(), 4),
            reversed in any::<bool>(),
        ) {
            let len = nodes.len();
            let parts: Vec<Part> = (0..4)
                .filter_map(|node| {
                    let mut indices: Vec<usize> =
                        (0..len).filter(|&i| nodes[i] == node).collect();
                    if indices.is_empty() {
                        return None;
                    }
                    if reversed {
                        indices.reverse();
                    }
                    let replies = match failing[node] {
                        true => Err(lost()),
                        false => Ok(indices.iter().map(|&i| (i % 3 != 0).then_some(i)).collect()),
                    };
                    Some((indices, replies))
                })
                .collect();
            let found = Found::gather(len, Split::Parts(parts));
            prop_assert_eq!(found.replies.len(), len);
            let any_failed = (0..len).any(|i| failing[nodes[i]]);
            prop_assert_eq!(found.failure.is_some(), any_failed);
            for (i, reply) in found.replies.iter().enumerate() {
                let failed = failing[nodes[i]];
                let marked = found
                    .failure
                    .as_ref()
                    .is_some_and(|failure| failure.lost.as_ref().is_none_or(|lost| lost[i]));
                prop_assert_eq!(marked, failed, "key {}", i);
                let expected = (!failed && i % 3 != 0).then_some(i);
                prop_assert_eq!(*reply, expected, "key {}", i);
            }
        }

        /// Writes split the same way: every part's flags land at their keys' places, and
        /// one failed part fails the whole; counts add up.
        #[test]
        fn write_parts_are_placed_or_fail_whole(
            nodes in proptest::collection::vec(0usize..3, 1..40),
            failing in 0usize..4,
        ) {
            let len = nodes.len();
            let split = |flag: fn(usize) -> bool| -> Split<Vec<bool>> {
                Split::Parts(
                    (0..3)
                        .filter_map(|node| {
                            let indices: Vec<usize> =
                                (0..len).rev().filter(|&i| nodes[i] == node).collect();
                            (!indices.is_empty()).then(|| {
                                let replies = match node == failing {
                                    true => Err(lost()),
                                    false => Ok(indices.iter().map(|&i| flag(i)).collect()),
                                };
                                (indices, replies)
                            })
                        })
                        .collect(),
                )
            };
            let placed = split(|i| i % 2 == 0).placed(len);
            let any_failed = nodes.contains(&failing);
            prop_assert_eq!(placed.is_err(), any_failed);
            if let Ok(flags) = placed {
                let expected: Vec<bool> = (0..len).map(|i| i % 2 == 0).collect();
                prop_assert_eq!(flags, expected);
            }
            let counts = Split::Parts(
                (0..3)
                    .map(|node| {
                        let count = nodes.iter().filter(|&&n| n == node).count() as u64;
                        let result = match node == failing && count > 0 {
                            true => Err(lost()),
                            false => Ok(count),
                        };
                        (Vec::new(), result)
                    })
                    .collect(),
            )
            .summed();
            prop_assert_eq!(counts.ok(), (!any_failed).then_some(len as u64));
        }
    }
}
