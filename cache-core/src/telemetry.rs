//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with the `metrics`
//! feature. Without it a [`Meter`] is empty and every call here compiles to nothing.
//!
//! Every metric carries `cache.name` ([`CacheBuilder::name`](crate::CacheBuilder::name)).
//! Names follow the OpenTelemetry semantic conventions where they exist
//! (`db.client.operation.duration` with `db.system.name`, `db.operation.name` and
//! `error.type`); the rest are `cachemere.cache.*`. The list is in the README.

use std::time::Duration;

use crate::error::Error;

/// The `db.system.name` of a store's operations: `redis` for Redis; for any other store,
/// its [`backend`](crate::Store::backend) name in cachemere's namespace (`cachemere.memory`
/// for the in-process store), since it is no database system of the conventions' list and
/// they ask that custom values be namespaced.
pub(crate) fn system_name(backend: &'static str) -> &'static str {
    match backend {
        "redis" => "redis",
        "memory" => "cachemere.memory",
        _ => "cachemere.other",
    }
}

/// Where a cache's store operations go, for their telemetry: `db.namespace` (the Redis
/// database index) and, on one server, `server.address` and `server.port`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Place {
    pub(crate) namespace: Option<String>,
    pub(crate) server: Option<(String, u16)>,
}

impl Place {
    /// The place of `store`: known for a [`RedisStore`](crate::RedisStore) only.
    pub(crate) fn of(store: &dyn crate::Store) -> Place {
        let redis = (store as &dyn std::any::Any).downcast_ref::<crate::RedisStore>();
        Place {
            namespace: redis.map(crate::RedisStore::namespace),
            server: redis.and_then(crate::RedisStore::server),
        }
    }
}

/// A store operation as the OpenTelemetry database conventions name it: the Redis command
/// cachemere sends (`db.operation.name`: `GET`, `EVALSHA` for a script, `BATCH SET` for a
/// pipeline of `SET`s, `BATCH` for a pipeline of several commands) and, where the command
/// alone does not say what it does, a low-cardinality summary (`db.query.summary`: the
/// script's purpose, the pipeline's commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) summary: Option<&'static str>,
}

impl Op {
    /// A plain command.
    pub(crate) const fn command(name: &'static str) -> Op {
        Op {
            name,
            summary: None,
        }
    }

    /// A Lua script (`EVALSHA`) doing `purpose`.
    pub(crate) const fn script(purpose: &'static str) -> Op {
        Op {
            name: "EVALSHA",
            summary: Some(purpose),
        }
    }

    /// A pipeline: `BATCH <command>` when all its commands are one, else `BATCH` with a
    /// summary of them.
    pub(crate) const fn batch(name: &'static str, summary: Option<&'static str>) -> Op {
        Op { name, summary }
    }

    /// How an error names the operation: its summary when it has one (`replace if equals
    /// timed out` says more than `EVALSHA timed out`).
    pub(crate) fn label(self) -> &'static str {
        self.summary.unwrap_or(self.name)
    }
}

/// What a cache counts; each is a counter named `cachemere.cache.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Event {
    Hit,
    LocalHit,
    LocalStaleHit,
    Miss,
    Set,
    Delete,
    StampedeJoin,
    DecodeFailure,
    StaleServed,
    EarlyRefresh,
    EarlyRefreshFailure,
    ShortCircuit,
    CircuitTrip,
    RecoveredInvalidation,
    InvalidationOverflow,
    FencedWrite,
}

impl Event {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn metric(self) -> &'static str {
        match self {
            Event::Hit => "cachemere.cache.hits",
            Event::LocalHit => "cachemere.cache.local_hits",
            Event::LocalStaleHit => "cachemere.cache.local_stale_hits",
            Event::Miss => "cachemere.cache.misses",
            Event::Set => "cachemere.cache.sets",
            Event::Delete => "cachemere.cache.deletes",
            Event::StampedeJoin => "cachemere.cache.stampede_joins",
            Event::DecodeFailure => "cachemere.cache.decode_failures",
            Event::StaleServed => "cachemere.cache.stale_served",
            Event::EarlyRefresh => "cachemere.cache.early_refreshes",
            Event::EarlyRefreshFailure => "cachemere.cache.early_refresh_failures",
            Event::ShortCircuit => "cachemere.cache.short_circuits",
            Event::CircuitTrip => "cachemere.cache.circuit_trips",
            Event::RecoveredInvalidation => "cachemere.cache.recovered_invalidations",
            Event::InvalidationOverflow => "cachemere.cache.invalidation_overflows",
            Event::FencedWrite => "cachemere.cache.fenced_writes",
        }
    }
}

impl Event {
    /// What the counter counts, for its description.
    #[cfg(feature = "metrics")]
    fn description(self) -> &'static str {
        match self {
            Event::Hit => "reads answered by the cache (local tier or store)",
            Event::LocalHit => "reads answered by the in-process local tier",
            Event::LocalStaleHit => {
                "local-tier reads served within the stale window after its subscription was lost"
            }
            Event::Miss => "reads the cache could not answer",
            Event::Set => "values written",
            Event::Delete => "keys removed by invalidations",
            Event::StampedeJoin => "callers that waited for another caller's computation",
            Event::DecodeFailure => "stored values that did not decode (removed)",
            Event::StaleServed => "stale values served by the fail-safe",
            Event::EarlyRefresh => "early refreshes started",
            Event::EarlyRefreshFailure => "early refreshes that failed or timed out",
            Event::ShortCircuit => "store operations skipped by an open circuit",
            Event::CircuitTrip => "times a circuit opened",
            Event::RecoveredInvalidation => "queued invalidations replayed",
            Event::InvalidationOverflow => "times the invalidation queue overflowed",
            Event::FencedWrite => "computed values not stored: an invalidation came first",
        }
    }
}

/// Describes every metric a cache records (unit and meaning), so that exporters show
/// them (Prometheus: `# HELP`, and a `_seconds` or `_bytes` suffix where the exporter adds
/// units). Describing again is harmless; a recorder installed after the first cache gets
/// them from the next one built.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    for event in EVENTS {
        metrics::describe_counter!(event.metric(), Unit::Count, event.description());
    }
    metrics::describe_counter!(
        "cachemere.cache.errors",
        Unit::Count,
        "store operations that failed, by operation and error.type"
    );
    metrics::describe_gauge!(
        "cachemere.cache.circuit_open",
        Unit::Count,
        "circuits open now (the store's, or one per Redis Cluster node)"
    );
    metrics::describe_gauge!(
        "cachemere.cache.pending_invalidations",
        Unit::Count,
        "invalidations waiting to be replayed"
    );
    metrics::describe_gauge!(
        "cachemere.cache.local.size",
        Unit::Bytes,
        "bytes held by the in-process local tier"
    );
    metrics::describe_histogram!(
        "db.client.operation.duration",
        Unit::Seconds,
        "duration of store operations"
    );
    metrics::describe_histogram!(
        "cachemere.cache.factory.duration",
        Unit::Seconds,
        "duration of the computations of misses"
    );
}

/// What a cache measures as it changes; each is a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Gauge {
    CircuitOpen,
    PendingInvalidations,
    LocalSize,
}

#[cfg(feature = "metrics")]
const GAUGES: [(Gauge, &str); 3] = [
    (Gauge::CircuitOpen, "cachemere.cache.circuit_open"),
    (
        Gauge::PendingInvalidations,
        "cachemere.cache.pending_invalidations",
    ),
    (Gauge::LocalSize, "cachemere.cache.local.size"),
];

/// The `error.type` of a store error (a metric label and a span field): `timeout`, `connection`, `circuit_open`, `wrong_type`,
/// `value` (encoding, decoding, size) or `server`.
pub(crate) fn error_type(err: &Error) -> &'static str {
    match err {
        Error::Timeout { .. } => "timeout",
        Error::CircuitOpen { .. } => "circuit_open",
        Error::WrongType { .. } => "wrong_type",
        Error::Encode { .. } | Error::Decode { .. } | Error::ValueTooLarge { .. } => "value",
        err if err.is_transient() => "connection",
        _ => "server",
    }
}

/// A cache's handle on the metrics facade. The handles are registered when the cache is
/// built, so that recording costs no lookup and no allocation: install the recorder first.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    handles: std::sync::Arc<Handles>,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    name: metrics::SharedString,
    backend: &'static str,
    /// `server.address` and `server.port`, on one server.
    server: Option<(metrics::SharedString, metrics::SharedString)>,
    /// `db.namespace`, on Redis.
    namespace: Option<metrics::SharedString>,
    events: [metrics::Counter; EVENTS.len()],
    gauges: [metrics::Gauge; GAUGES.len()],
    factory: metrics::Histogram,
    /// `db.client.operation.duration` of successful operations, by operation.
    operations: std::sync::RwLock<std::collections::HashMap<Op, metrics::Histogram>>,
}

#[cfg(feature = "metrics")]
const EVENTS: [Event; 16] = [
    Event::Hit,
    Event::LocalHit,
    Event::LocalStaleHit,
    Event::Miss,
    Event::Set,
    Event::Delete,
    Event::StampedeJoin,
    Event::DecodeFailure,
    Event::StaleServed,
    Event::EarlyRefresh,
    Event::EarlyRefreshFailure,
    Event::ShortCircuit,
    Event::CircuitTrip,
    Event::RecoveredInvalidation,
    Event::InvalidationOverflow,
    Event::FencedWrite,
];

#[cfg(feature = "metrics")]
impl Handles {
    fn labels(&self, operation: Op) -> Vec<metrics::Label> {
        let mut labels = vec![
            metrics::Label::new("cache.name", self.name.clone()),
            metrics::Label::from_static_parts("db.system.name", system_name(self.backend)),
            metrics::Label::from_static_parts("db.operation.name", operation.name),
        ];
        if let Some(summary) = operation.summary {
            labels.push(metrics::Label::from_static_parts(
                "db.query.summary",
                summary,
            ));
        }
        if let Some(namespace) = &self.namespace {
            labels.push(metrics::Label::new("db.namespace", namespace.clone()));
        }
        if let Some((address, port)) = &self.server {
            labels.push(metrics::Label::new("server.address", address.clone()));
            labels.push(metrics::Label::new("server.port", port.clone()));
        }
        labels
    }

    fn duration(&self, operation: Op) -> metrics::Histogram {
        let known = self
            .operations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&operation)
            .cloned();
        known.unwrap_or_else(|| {
            let histogram =
                metrics::histogram!("db.client.operation.duration", self.labels(operation));
            self.operations
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(operation, histogram.clone());
            histogram
        })
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Meter {
    /// A meter for the cache `name` on a `backend` store at `place`.
    pub(crate) fn new(name: &str, backend: &'static str, place: &Place) -> Meter {
        #[cfg(feature = "metrics")]
        {
            describe();
            let name = metrics::SharedString::from_shared(std::sync::Arc::from(name));
            let events =
                EVENTS.map(|event| metrics::counter!(event.metric(), "cache.name" => name.clone()));
            let gauges =
                GAUGES.map(|(_, metric)| metrics::gauge!(metric, "cache.name" => name.clone()));
            let factory = metrics::histogram!("cachemere.cache.factory.duration", "cache.name" => name.clone());
            Meter {
                handles: std::sync::Arc::new(Handles {
                    name,
                    backend,
                    namespace: place.namespace.clone().map(metrics::SharedString::from),
                    server: place.server.clone().map(|(address, port)| {
                        (
                            metrics::SharedString::from(address),
                            metrics::SharedString::from(port.to_string()),
                        )
                    }),
                    events,
                    gauges,
                    factory,
                    operations: std::sync::RwLock::default(),
                }),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Meter {}
    }

    /// Counts `n` events.
    #[inline]
    pub(crate) fn count(&self, event: Event, n: u64) {
        #[cfg(feature = "metrics")]
        self.handles.events[event as usize].increment(n);
    }

    /// Records a store operation: its duration (when it ran) and, if it failed, its error.
    #[inline]
    pub(crate) fn store_operation(
        &self,
        operation: Op,
        elapsed: Option<Duration>,
        failure: Option<&Error>,
    ) {
        #[cfg(feature = "metrics")]
        {
            let handles = &self.handles;
            let Some(err) = failure else {
                if let Some(elapsed) = elapsed {
                    handles.duration(operation).record(elapsed.as_secs_f64());
                }
                return;
            };
            // failures are rare: their series are looked up each time
            let error_type = error_type(err);
            let mut labels = vec![
                metrics::Label::new("cache.name", handles.name.clone()),
                metrics::Label::from_static_parts("db.operation.name", operation.name),
                metrics::Label::from_static_parts("error.type", error_type),
            ];
            if let Some(summary) = operation.summary {
                labels.push(metrics::Label::from_static_parts(
                    "db.query.summary",
                    summary,
                ));
            }
            metrics::counter!("cachemere.cache.errors", labels).increment(1);
            if let Some(elapsed) = elapsed {
                let mut labels = handles.labels(operation);
                labels.push(metrics::Label::from_static_parts("error.type", error_type));
                metrics::histogram!("db.client.operation.duration", labels)
                    .record(elapsed.as_secs_f64());
            }
        }
    }

    /// Records how long a computation (the factory of a miss) took.
    #[inline]
    pub(crate) fn factory(&self, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        self.handles.factory.record(elapsed.as_secs_f64());
    }

    /// Sets a gauge.
    #[inline]
    pub(crate) fn gauge(&self, gauge: Gauge, value: f64) {
        #[cfg(feature = "metrics")]
        self.handles.gauges[gauge as usize].set(value);
    }

    /// Whether timings are wanted (the clock is read only then).
    #[inline]
    pub(crate) fn times(&self) -> bool {
        cfg!(feature = "metrics")
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn handles_are_indexed_by_discriminant() {
        for (i, event) in EVENTS.iter().enumerate() {
            assert_eq!(*event as usize, i, "{event:?}");
        }
        for (i, (gauge, _)) in GAUGES.iter().enumerate() {
            assert_eq!(*gauge as usize, i, "{gauge:?}");
        }
    }
}

#[cfg(test)]
mod naming {
    use super::*;

    #[test]
    fn only_redis_takes_a_name_of_the_conventions_list() {
        assert_eq!(system_name("redis"), "redis");
        assert_eq!(system_name("memory"), "cachemere.memory");
        assert_eq!(system_name("dynamo"), "cachemere.other");
        assert_eq!(Op::script("fence").name, "EVALSHA");
        assert_eq!(Op::script("fence").label(), "fence");
        assert_eq!(Op::command("GET").label(), "GET");
    }
}
