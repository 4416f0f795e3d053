use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{Client, ConnectionInfo, RedisError, RedisFuture, RedisResult, Value};

mod bus;
mod commands;
mod node;
mod requests;
mod scripts;
mod sentinel;
mod subscription;
#[cfg(feature = "tls")]
mod tls;

use super::cluster::{Cluster, Topology};
use super::endpoint::Endpoint;
use crate::config::Config;
use crate::error::{Error, Result};

const SCAN_BATCH: usize = 1000;
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Retries of a cluster command after a redirect or a lost node; the command timeout bounds
/// them all.
const CLUSTER_RETRIES: u32 = 3;

/// A [`Store`](crate::Store) on a Redis server or a Redis Cluster, through auto-reconnecting multiplexed
/// connections.
///
/// Every command is bounded by the configured command timeout (`REDIS_SOCKET_TIMEOUT`); a
/// connection that drops is re-established in the background with exponential backoff, so a
/// `RedisStore` outlives Redis restarts. Commands are pipelined over a single connection per
/// server, which is what redis-rs recommends for async use: it needs no pool
/// (`REDIS_MAX_CONNECTIONS` applies to pooled backends only).
///
/// # Redis Cluster
///
/// A `REDIS_URL` of several comma-separated URLs (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`;
/// after the first, `host:port` alone is enough), or of one URL with the `redis+cluster://`
/// (`rediss+cluster://`) scheme, names the seed nodes of a cluster: the store discovers the
/// rest and follows `MOVED`/`ASK` redirects and topology changes. Every [`Store`](crate::Store) operation
/// works the same on a cluster:
///
/// - multi-key operations (`mget`, `mset`, `delete_many`) are split by hash slot and sent as
///   one pipeline per primary, all primaries at once, so they cost one round trip per node,
///   never one per key, and no `CROSSSLOT` error can reach the caller;
/// - `delete_matching` scans every primary;
/// - scripts (locks, tags, hash/list/set writes, sessions) touch the keys of one slot only;
///   [`pipeline_by_key`](RedisStore::pipeline_by_key) routes commands over many slots.
///
/// A cluster has only database 0. Reads go to primaries.
///
/// ```no_run
/// use cache_core::{RedisStore, Store};
/// use std::time::Duration;
///
/// # async fn demo() -> cache_core::Result<()> {
/// let store = RedisStore::from_url("redis://127.0.0.1:6379/0").await?;
/// store.set("greeting", b"hello", Duration::from_secs(60)).await?;
/// assert_eq!(store.get("greeting").await?, Some(b"hello".to_vec()));
///
/// let cluster = RedisStore::from_url("redis://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000").await?;
/// cluster.set("greeting", b"hello", Duration::from_secs(60)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    subscribers: Arc<[Client]>,
    address: String,
    command_timeout: Duration,
    monitor: Arc<Monitor>,
}

/// The connection of a [`RedisStore`] ([`RedisStore::connection`]), to one server or to a
/// cluster: it implements `redis`'s [`ConnectionLike`], so every `redis` command, pipeline
/// and `AsyncCommands` method runs on it. On a cluster, commands are routed by their keys,
/// and a (non-transaction) pipeline over several hash slots is sent as its commands, each to
/// its own node, all at once, instead of failing with `CROSSSLOT`. Each command is bounded by
/// the store's command timeout.
#[derive(Clone)]
pub struct RedisConnection(Link, Option<Duration>);

#[derive(Clone)]
enum Link {
    Node(node::NodeLink),
    Cluster(Cluster),
    Sentinel(sentinel::SentinelLink),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Link::Node(_) => "node",
            Link::Cluster(_) => "cluster",
            Link::Sentinel(_) => "sentinel",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Link::Node(node) => bounded_request(self.1, node.req_packed_command(cmd)),
            Link::Cluster(cluster) => Box::pin(cluster.command(cmd)),
            Link::Sentinel(primary) => bounded_request(self.1, primary.req_packed_command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Link::Node(node) => {
                bounded_request(self.1, node.req_packed_commands(pipeline, offset, count))
            }
            Link::Cluster(cluster) => Box::pin(cluster.pipeline(pipeline, offset, count)),
            Link::Sentinel(primary) => {
                bounded_request(self.1, primary.req_packed_commands(pipeline, offset, count))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Link::Node(node) => node.get_db(),
            Link::Cluster(_) => 0,
            Link::Sentinel(primary) => primary.get_db(),
        }
    }
}

/// `request`, bounded by `after` when given (the escape-hatch connection's command timeout).
#[inline]
fn bounded_request<'a, T: Send + 'a>(
    after: Option<Duration>,
    request: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    match after {
        Some(after) => Box::pin(within(after, request)),
        None => request,
    }
}

/// `request`, failing with redis-rs's timeout error once `after` has passed. On one server the
/// store bounds requests itself, waiting for a reconnection included, with one timer; redis-rs's
/// response timeout is off there.
pub(super) async fn within<T>(
    after: Duration,
    request: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(after, request).await {
        Ok(result) => result,
        Err(_) => Err(timed_out()),
    }
}

/// The error of a request that ran out of time (redis-rs's, [`RedisError::is_timeout`]).
fn timed_out() -> RedisError {
    std::io::Error::from(std::io::ErrorKind::TimedOut).into()
}

/// The configuration error behind a failed connection, if that is why it failed: the server
/// refused the URL's user or password (or wanted one), the Sentinels know no such service, or
/// a certificate was refused.
fn misconfigured(err: &RedisError, config: &Config) -> Option<Error> {
    let wrong_url = |reason: String| Error::Config {
        name: "REDIS_URL",
        value: config
            .redis_url
            .as_deref()
            .map(crate::config::redacted_url)
            .unwrap_or_default(),
        reason,
    };
    if matches!(err.code(), Some("WRONGPASS" | "NOAUTH"))
        || err.kind() == redis::ErrorKind::AuthenticationFailed
    {
        return Some(wrong_url(format!(
            "the server refused the credentials ({}): check the user and password",
            err.code().unwrap_or("authentication failed")
        )));
    }
    if err.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        return Some(wrong_url(
            "the Sentinels watch no primary of that service name (the URL's path)".into(),
        ));
    }
    #[cfg(feature = "tls")]
    if let Some(refused) = tls::refused_certificate(err, config) {
        return Some(refused);
    }
    None
}

/// What the background health check last saw.
#[derive(Debug, Default)]
struct Monitor {
    healthy: AtomicBool,
    checks: AtomicU64,
    /// The fence script is in the cluster's script caches (sent once as `EVAL`), so that
    /// pipelines can call it by hash.
    fence_loaded: AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("cluster", &self.is_cluster())
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

impl RedisStore {
    /// Connects to `config.redis_url`, waiting at most `config.connect_timeout`.
    ///
    /// Fails with [`Error::Config`] when no URL is configured and with a transient error
    /// ([`Error::is_transient`]) when the server (on a cluster: a seed node) cannot be reached
    /// in time. Use [`connect_lazy`](RedisStore::connect_lazy) to start without a reachable
    /// server.
    pub async fn connect(config: &Config) -> Result<RedisStore> {
        let store = RedisStore::connect_lazy(config)?;
        let timeout = config.connect_timeout;
        let connecting = async {
            let ping = redis::cmd("PING");
            match &store.connection.0 {
                Link::Node(node) => ping.query_async::<()>(&mut node.clone()).await,
                Link::Sentinel(primary) => ping.query_async::<()>(&mut primary.clone()).await,
                Link::Cluster(cluster) => cluster
                    .connection
                    .clone()
                    .route_command(ping, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await
                    .map(drop),
            }
            .map_err(Error::redis("CONNECT"))
        };
        // A cluster connection reports refused credentials or certificates as "no
        // connections": ask the first seed alone why.
        let connecting = async {
            match (connecting.await, &store.connection.0) {
                (Err(err), Link::Cluster(_)) => match store.subscribers.first() {
                    Some(seed) => match seed.get_multiplexed_async_connection().await {
                        Err(refused) if misconfigured(&refused, config).is_some() => {
                            Err(Error::redis("CONNECT")(refused))
                        }
                        _ => Err(err),
                    },
                    None => Err(err),
                },
                (result, _) => result,
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(err)) => Err(match &err {
                Error::Redis { source, .. } => misconfigured(source, config).unwrap_or(err),
                _ => err,
            }),
            Err(_) => Err(Error::Timeout {
                operation: "CONNECT",
                after: timeout,
            }),
        }
    }

    /// Connects to a server given by URL (`redis://host:port/db`, or a cluster's nodes, see
    /// [Redis Cluster](RedisStore#redis-cluster)) with the default settings.
    pub async fn from_url(url: &str) -> Result<RedisStore> {
        let config = Config {
            redis_url: Some(url.to_owned()),
            ..Config::default()
        };
        RedisStore::connect(&config).await
    }

    /// Creates the store without waiting for the server: the connection is made on first use
    /// and re-made in the background after failures, and each command fails within the
    /// command timeout while the server is unreachable.
    ///
    /// This is how an application keeps starting while Redis is down.
    pub fn connect_lazy(config: &Config) -> Result<RedisStore> {
        let url = config.redis_url.as_deref().ok_or_else(|| Error::Config {
            name: "REDIS_URL",
            value: String::new(),
            reason: "a Redis store needs a URL such as redis://127.0.0.1:6379/0".into(),
        })?;
        let invalid_url = |reason: String| Error::Config {
            name: "REDIS_URL",
            value: crate::config::redacted_url(url),
            reason,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config {
                name: "runtime",
                value: "none".into(),
                reason: "RedisStore must be created inside a Tokio runtime".into(),
            });
        }
        let endpoint = Endpoint::parse(url).map_err(invalid_url)?;
        config.check_tls()?;
        #[cfg(feature = "tls")]
        let tls = tls::Tls::from_config(config)?;
        let secured = |info: ConnectionInfo| -> Result<ConnectionInfo> {
            #[cfg(feature = "tls")]
            let info = tls.apply(info).map_err(invalid_url)?;
            Ok(info.set_tcp_settings(tcp_settings()))
        };
        let (connection, seeds) = match endpoint {
            Endpoint::Node(info) => {
                let info = secured(*info)?;
                let client =
                    Client::open(info.clone()).map_err(|err| invalid_url(err.to_string()))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(None)
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(2));
                let node = node::NodeLink::new_lazy(client, manager_config)
                    .map_err(|err| invalid_url(err.to_string()))?;
                (Link::Node(node), vec![info])
            }
            Endpoint::Cluster(seeds) => {
                let seeds = seeds.into_iter().map(secured).collect::<Result<Vec<_>>>()?;
                let topology = Topology::default();
                let builder = ClusterClientBuilder::new(seeds.clone());
                #[cfg(feature = "tls")]
                let builder = match tls.certificates() {
                    Some(certificates) => builder.certs(certificates),
                    None => builder,
                };
                let client = builder
                    .tcp_settings(tcp_settings())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(50)
                    .max_retry_wait(1000)
                    .read_routing_strategy(topology.clone())
                    .build()
                    .map_err(|err| invalid_url(err.to_string()))?;
                let connection = client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(config.connect_timeout)
                        .set_response_timeout(config.command_timeout),
                );
                let cluster = Cluster {
                    connection,
                    topology,
                };
                (Link::Cluster(cluster), seeds)
            }
            Endpoint::Sentinel(endpoint) => {
                if config.tls_ca_file.is_some()
                    || config.tls_cert_file.is_some()
                    || config.tls_insecure_skip_verify
                {
                    return Err(invalid_url(
                        "TLS settings are set, but TLS to a Sentinel-managed primary is not \
                         supported yet"
                            .into(),
                    ));
                }
                let link =
                    sentinel::SentinelLink::new(&endpoint, tcp_settings(), config.connect_timeout)
                        .map_err(|err| invalid_url(err.to_string()))?;
                link.watch_switches(endpoint.sentinels.clone());
                let address = format!(
                    "sentinel:{}/{}",
                    endpoint
                        .sentinels
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    endpoint.service
                );
                let store = RedisStore {
                    connection: RedisConnection(Link::Sentinel(link), None),
                    subscribers: Arc::new([]),
                    address,
                    command_timeout: config.command_timeout,
                    monitor: Arc::default(),
                };
                store.spawn_health_checks(config.health_check_interval);
                return Ok(store);
            }
        };
        let subscribers = seeds
            .iter()
            .map(|info| Client::open(info.clone()).map_err(|err| invalid_url(err.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let address = seeds
            .iter()
            .map(|info: &ConnectionInfo| info.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let store = RedisStore {
            connection: RedisConnection(connection, None),
            subscribers: subscribers.into(),
            address,
            command_timeout: config.command_timeout,
            monitor: Arc::default(),
        };
        store.spawn_health_checks(config.health_check_interval);
        Ok(store)
    }

    /// This store with a command timeout of `deadline` at most, on the same connection.
    fn bounded_by(&self, deadline: Duration) -> RedisStore {
        RedisStore {
            command_timeout: self.command_timeout.min(deadline),
            ..self.clone()
        }
    }

    /// The server a store on one server talks to, for the `server.address` and
    /// `server.port` of its telemetry: `None` on a cluster or through Sentinel (their servers
    /// change), and on a Unix socket.
    pub(crate) fn server(&self) -> Option<(String, u16)> {
        let Link::Node(_) = &self.connection.0 else {
            return None;
        };
        match self.subscribers.first()?.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
            _ => None,
        }
    }

    /// The `db.namespace` of its telemetry: the database index (`0` on a cluster).
    pub(crate) fn namespace(&self) -> String {
        use redis::aio::ConnectionLike;
        self.connection.get_db().to_string()
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection.0, Link::Cluster(_))
    }

    /// Pings the server every `interval` (`REDIS_HEALTH_CHECK_INTERVAL`) for as long as the
    /// store is alive. Besides keeping [`last_health`](RedisStore::last_health) current, a
    /// failed ping makes the connection manager reconnect before the next real command, and
    /// on one server a ping that times out (a connection gone silent without closing)
    /// replaces the connection with a new one, as [`node::TIMEOUTS_IN_A_ROW`] request
    /// timeouts in a row do.
    fn spawn_health_checks(&self, interval: Duration) {
        let monitor = Arc::downgrade(&self.monitor);
        let probe = RedisStore {
            monitor: Arc::new(Monitor::default()),
            ..self.clone()
        };
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(monitor) = monitor.upgrade() else {
                    return;
                };
                let started = std::time::Instant::now();
                let healthy = match &probe.connection.0 {
                    Link::Node(node) => {
                        match probe.query::<()>("PING", "", &redis::cmd("PING")).await {
                            Ok(()) => true,
                            Err(err) => {
                                if err.is_timeout() {
                                    node.replace("a health check timed out");
                                }
                                false
                            }
                        }
                    }
                    _ => probe.ping().await.is_ok(),
                };
                if let (false, Link::Sentinel(primary)) = (healthy, &probe.connection.0) {
                    primary.forget_if_silent_since(started);
                }
                monitor.healthy.store(healthy, Ordering::Relaxed);
                monitor.checks.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// The outcome of the latest background health check: `None` before the first check,
    /// then whether the server answered `PING`.
    pub fn last_health(&self) -> Option<bool> {
        (self.monitor.checks.load(Ordering::Relaxed) > 0)
            .then(|| self.monitor.healthy.load(Ordering::Relaxed))
    }

    /// The underlying `redis` connection, for commands `Store` does not cover (the seed's
    /// `get_redis()`). It is a cheap clone of the store's own multiplexed connection (on a
    /// cluster, of its cluster connection, which routes each command by its keys).
    pub fn connection(&self) -> RedisConnection {
        RedisConnection(self.connection.0.clone(), Some(self.command_timeout))
    }
}
