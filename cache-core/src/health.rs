use std::time::Duration;

/// The result of probing a store, as returned by [`Cache::health_check`](crate::Cache::health_check).
///
/// ```no_run
/// # async fn demo(cache: cache_core::Cache) {
/// let report = cache.health_check().await;
/// if !report.healthy {
///     eprintln!("cache store unhealthy: {}", report.error.as_deref().unwrap_or("unknown"));
/// }
/// # }
/// ```
///
/// It serializes (for a health endpoint) with the latency in milliseconds as `latency_ms`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The backend's name (`"redis"`, `"memory"`).
    pub backend: &'static str,
    /// Whether the store answered the probe.
    pub healthy: bool,
    /// Round-trip time of the probe (`PING` for Redis).
    #[serde(rename = "latency_ms", serialize_with = "milliseconds")]
    pub latency: Option<Duration>,
    /// The server's version, when the backend has one.
    pub server_version: Option<String>,
    /// Memory used by the store in bytes (`used_memory` from `INFO memory` for Redis, the
    /// weighed size of entries for the memory store).
    pub used_memory_bytes: Option<u64>,
    /// Why the probe failed, when it did.
    pub error: Option<String>,
    /// Whether one of the cache's circuit breakers is open (calls skip the store, or on a
    /// Redis Cluster the keys of a failing node, until it answers).
    pub circuit_open: bool,
    /// On a Redis Cluster, the nodes (`host:port`) whose circuits are open: calls on their
    /// keys skip the store while the other nodes serve theirs. Empty on one server.
    pub open_circuits: Vec<String>,
}

fn milliseconds<S: serde::Serializer>(
    latency: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match latency {
        Some(latency) => serializer.serialize_some(&(latency.as_secs_f64() * 1000.0)),
        None => serializer.serialize_none(),
    }
}

impl HealthReport {
    pub(crate) fn unhealthy(backend: &'static str, error: &crate::Error) -> Self {
        HealthReport {
            backend,
            healthy: false,
            latency: None,
            server_version: None,
            used_memory_bytes: None,
            circuit_open: false,
            open_circuits: Vec::new(),
            error: Some(crate::error::one_line(error)),
        }
    }
}
