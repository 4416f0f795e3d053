//! The education backend: state, routes and the seed's cache service.

mod db;
mod keys;
mod routes;
mod service;

use std::time::Duration;

use cachemere::cache_session::{SessionConfig, SessionManager, SessionService, SessionStore};
use cachemere::{Cache, Config, MemoryStore, RedisStore};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

pub(crate) use db::Database;
pub(crate) use routes::router;
pub(crate) use service::CacheService;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) service: CacheService,
    pub(crate) sessions: SessionService,
    /// What `GET /metrics` renders (Prometheus text), when a recorder is installed.
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// Where the cache and the sessions live.
pub(crate) enum Backend {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl Backend {
    /// The store `REDIS_URL` names (connected lazily, so a Redis that is down does not stop
    /// the start), or the in-process store; and the start-up line saying which, with any
    /// password in the URL redacted.
    pub(crate) fn from_config(config: &Config) -> cachemere::Result<(Backend, String)> {
        Ok(match &config.redis_url {
            Some(url) => (
                Backend::Redis(RedisStore::connect_lazy(config)?),
                format!(
                    "cache and sessions on Redis at {}",
                    cachemere::config::redacted_url(url)
                ),
            ),
            None => (
                Backend::Memory(MemoryStore::new()),
                "cache and sessions in process (set REDIS_URL to use Redis)".to_owned(),
            ),
        })
    }
}

impl AppState {
    /// The cache and the sessions on one store; a database answering after `db_delay`.
    pub(crate) fn new(backend: Backend, config: &Config, db_delay: Duration) -> AppState {
        let (cache, sessions): (Cache, SessionStore) = match backend {
            Backend::Redis(store) => (
                Cache::builder(store.clone())
                    .config(config)
                    .name(CACHE_NAME)
                    .build(),
                store.into(),
            ),
            Backend::Memory(store) => (
                Cache::builder(store.clone())
                    .config(config)
                    .name(CACHE_NAME)
                    .build(),
                store.into(),
            ),
        };
        let sessions = SessionManager::new(
            sessions,
            SessionConfig::from_config(config).name(CACHE_NAME),
        );
        AppState {
            service: CacheService {
                cache,
                db: Database::seeded(db_delay),
            },
            sessions: SessionService::new(sessions),
            metrics: None,
        }
    }

    /// Serves `handle`'s metrics at `GET /metrics`.
    pub(crate) fn with_metrics(mut self, handle: PrometheusHandle) -> AppState {
        self.metrics = Some(handle);
        self
    }
}

/// The cache's name: the `cache_name` label of its metrics.
pub(crate) const CACHE_NAME: &str = "education";

/// Installs the process's Prometheus recorder (histograms with the OpenTelemetry duration
/// buckets, in seconds) with Prometheus's recommended naming: counters end in `_total`, and
/// units described by the metrics suffix their names (`db_client_operation_duration_seconds`).
/// Install it before building caches.
pub(crate) fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])?
        .install_recorder()
}
