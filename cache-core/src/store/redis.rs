use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{
    Client, ConnectionInfo, FromRedisValue, RedisError, RedisFuture, RedisResult, Script, Value,
};
use tokio::sync::mpsc;

use super::cluster::{self, Cluster, Endpoint, Topology};
use super::{BusEvent, KeyTtl, Store};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::HealthReport;

const SCAN_BATCH: usize = 1000;
static DELETE_IF_EQUALS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Tag index: a sorted set of member keys scored by their expiry time (server clock, ms).
static TAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], 'GT', expires, ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 0
",
    )
});

static TAKE_TAGGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
redis.call('UNLINK', KEYS[1])
return live
",
    )
});

static WRITE_WITH_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local reply = redis.call(ARGV[1], KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return reply
",
    )
});
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Retries of a cluster command after a redirect or a lost node; the command timeout bounds
/// them all.
const CLUSTER_RETRIES: u32 = 3;

/// A [`Store`] on a Redis server or a Redis Cluster, through auto-reconnecting multiplexed
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
/// rest and follows `MOVED`/`ASK` redirects and topology changes. Every [`Store`] operation
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
/// its own node, all at once, instead of failing with `CROSSSLOT`.
#[derive(Clone)]
pub struct RedisConnection(Link);

#[derive(Clone)]
enum Link {
    Node(ConnectionManager),
    Cluster(Cluster),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Link::Node(_) => "node",
            Link::Cluster(_) => "cluster",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Link::Node(node) => node.req_packed_command(cmd),
            Link::Cluster(cluster) => cluster.connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Link::Node(node) => node.req_packed_commands(pipeline, offset, count),
            Link::Cluster(cluster) => Box::pin(async move {
                let together = cluster
                    .connection
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                match together {
                    Err(err) if is_cross_slot(&err) && !pipeline.is_transaction() => {
                        cluster.each_on_its_node(pipeline).await
                    }
                    other => other,
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Link::Node(node) => node.get_db(),
            Link::Cluster(_) => 0,
        }
    }
}

/// redis-rs refuses a pipeline over several slots before sending it.
fn is_cross_slot(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
}

/// What the background health check last saw.
#[derive(Debug, Default)]
struct Monitor {
    healthy: AtomicBool,
    checks: AtomicU64,
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
                Link::Cluster(cluster) => cluster
                    .connection
                    .clone()
                    .route_command(ping, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await
                    .map(drop),
            }
            .map_err(Error::redis("CONNECT"))
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(err)) => Err(err),
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
            value: url.to_owned(),
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
        let (connection, seeds) = match endpoint {
            Endpoint::Node(info) => {
                let info = info.set_tcp_settings(tcp_settings());
                let client =
                    Client::open(info.clone()).map_err(|err| invalid_url(err.to_string()))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.command_timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(2));
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(|err| invalid_url(err.to_string()))?;
                (Link::Node(manager), vec![info])
            }
            Endpoint::Cluster(seeds) => {
                let topology = Topology::default();
                let client = ClusterClientBuilder::new(seeds.clone())
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
        };
        let subscribers = seeds
            .iter()
            .map(|info| {
                Client::open(info.clone().set_tcp_settings(tcp_settings()))
                    .map_err(|err| invalid_url(err.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let address = seeds
            .iter()
            .map(|info: &ConnectionInfo| info.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let store = RedisStore {
            connection: RedisConnection(connection),
            subscribers: subscribers.into(),
            address,
            command_timeout: config.command_timeout,
            monitor: Arc::default(),
        };
        store.spawn_health_checks(config.health_check_interval);
        Ok(store)
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection.0, Link::Cluster(_))
    }

    /// Pings the server every `interval` (`REDIS_HEALTH_CHECK_INTERVAL`) for as long as the
    /// store is alive. Besides keeping [`last_health`](RedisStore::last_health) current, a
    /// failed ping makes the connection manager reconnect before the next real command.
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
                let healthy = probe.ping().await.is_ok();
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
        self.connection.clone()
    }

    /// Runs a Lua script under the store's command timeout, with the store's error mapping;
    /// `operation` and `key` name it in errors. Scripts keep multi-key steps atomic for
    /// crates built on the store (the session manager uses this).
    ///
    /// On a cluster every key the script touches must share `key`'s hash slot (give them one
    /// `{hash tag}`); the script is loaded on that slot's primary only.
    ///
    /// ```no_run
    /// use cache_core::RedisStore;
    /// use redis::Script;
    ///
    /// # async fn demo(store: &RedisStore) -> cache_core::Result<()> {
    /// let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let total: i64 = store.invoke("INCRBY", "visits", script.key("visits").arg(3)).await?;
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invoke<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let request = async {
            match &self.connection.0 {
                Link::Node(node) => invocation.invoke_async(&mut node.clone()).await,
                Link::Cluster(cluster) => {
                    let mut connection = cluster.for_script(cluster::slot(key.as_bytes()));
                    invocation.invoke_async(&mut connection).await
                }
            }
        };
        self.bounded(operation, key, request).await
    }

    /// Runs a pipeline under the store's command timeout (one round trip).
    ///
    /// On a cluster a pipeline on keys of one hash slot goes to its node in one round trip; one
    /// over several slots is sent as its commands, each to its node, all at once (a
    /// transaction, `atomic()`, must stay within one slot).
    /// [`pipeline_by_key`](RedisStore::pipeline_by_key) batches such work per node.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        self.query_pipe(operation, key, pipe).await
    }

    /// Runs commands that each touch one key (given with the command; or several keys of that
    /// key's hash slot) and returns their replies in order, under the store's command timeout:
    /// one pipeline on a single server, one pipeline per primary on a cluster, sent to all
    /// primaries at once.
    ///
    /// ```no_run
    /// use cache_core::RedisStore;
    ///
    /// # async fn demo(store: &RedisStore) -> cache_core::Result<()> {
    /// let users = ["42", "43"];
    /// let commands: Vec<(String, redis::Cmd)> = users
    ///     .iter()
    ///     .map(|user| {
    ///         let key = format!("logins:{user}");
    ///         let cmd = redis::cmd("ZCARD").arg(&key).to_owned();
    ///         (key, cmd)
    ///     })
    ///     .collect();
    /// let counts: Vec<u64> = store.pipeline_by_key("ZCARD", &commands).await?;
    /// assert_eq!(counts.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pipeline_by_key<K, T>(
        &self,
        operation: &'static str,
        commands: &[(K, redis::Cmd)],
    ) -> Result<Vec<T>>
    where
        K: AsRef<str>,
        T: FromRedisValue,
    {
        let Some((first, _)) = commands.first() else {
            return Ok(Vec::new());
        };
        let first = first.as_ref();
        let replies: Vec<Value> = match &self.connection.0 {
            Link::Node(_) => {
                let mut pipe = redis::pipe();
                for (_, cmd) in commands {
                    pipe.add_command(cmd.clone());
                }
                self.query_pipe(operation, first, &pipe).await?
            }
            Link::Cluster(cluster) => {
                let routed: Vec<(u16, &redis::Cmd)> = commands
                    .iter()
                    .map(|(key, cmd)| (cluster::slot(key.as_ref().as_bytes()), cmd))
                    .collect();
                self.bounded(operation, first, cluster.scatter(&routed))
                    .await?
            }
        };
        replies
            .into_iter()
            .map(|reply| {
                T::from_redis_value(reply).map_err(|source| Error::Redis {
                    operation,
                    source: source.into(),
                })
            })
            .collect()
    }

    /// The `host:port` (or socket path) this store talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        key: &str,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match request.await {
            Ok(value) => Ok(value),
            Err(err) if err.code() == Some("WRONGTYPE") => Err(Error::WrongType {
                key: key.to_owned(),
                operation,
            }),
            Err(err) if err.is_timeout() => Err(Error::Timeout {
                operation,
                after: self.command_timeout,
            }),
            Err(source) => Err(Error::Redis { operation, source }),
        }
    }

    async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut connection = self.connection.clone();
        self.bounded(operation, key, cmd.query_async(&mut connection))
            .await
    }

    async fn query_pipe<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut connection = self.connection.clone();
        self.bounded(operation, key, pipe.query_async(&mut connection))
            .await
    }

    /// Runs `command key args..` then `PEXPIRE key ttl` atomically in one script, so a
    /// failing command (a type mismatch, say) leaves the key's ttl alone; returns the
    /// command's reply.
    async fn write_with_ttl<T: FromRedisValue>(
        &self,
        command: &'static str,
        key: &str,
        args: &[&[u8]],
        ttl: Duration,
    ) -> Result<T> {
        let mut invocation = WRITE_WITH_TTL.key(key);
        invocation.arg(command).arg(ttl_millis(ttl));
        for arg in args {
            invocation.arg(*arg);
        }
        self.invoke(command, key, &invocation).await
    }

    /// `PING`s the server, or every primary of a cluster; the unhealthy report names the node
    /// that failed.
    async fn ping(&self) -> std::result::Result<(), HealthReport> {
        let unhealthy = |err: &Error| HealthReport::unhealthy(self.backend(), err);
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self
                .query::<()>("PING", "", &redis::cmd("PING"))
                .await
                .map_err(|err| unhealthy(&err));
        };
        let pings = self
            .ping_primaries(cluster)
            .await
            .map_err(|err| unhealthy(&err))?;
        for (node, ping) in pings {
            if let Err(err) = ping {
                let mut report = unhealthy(&err);
                report.error = Some(format!("node {node}: {}", crate::error::one_line(&err)));
                return Err(report);
            }
        }
        Ok(())
    }

    /// `PING`s every primary at once; each node with its outcome.
    async fn ping_primaries(
        &self,
        cluster: &Cluster,
    ) -> Result<Vec<(redis::cluster::NodeAddress, Result<Value>)>> {
        let primaries = self.primaries(cluster).await?;
        let pings = primaries
            .iter()
            .map(|node| self.bounded("PING", "", cluster.on_node(node, redis::cmd("PING"))));
        let outcomes = join_all(pings).await;
        Ok(primaries.into_iter().zip(outcomes).collect())
    }

    /// The server version and used memory (on a cluster: the first primary's version and the
    /// primaries' total).
    async fn server_facts(&self) -> Result<(Option<String>, Option<u64>)> {
        let info = redis::cmd("INFO").arg("server").arg("memory").to_owned();
        let reports: Vec<String> = match &self.connection.0 {
            Link::Node(_) => vec![self.query("INFO", "", &info).await?],
            Link::Cluster(cluster) => {
                let primaries = self.primaries(cluster).await?;
                let replies = primaries
                    .iter()
                    .map(|node| cluster.on_node(node, info.clone()));
                let mut reports = Vec::with_capacity(primaries.len());
                for reply in join_all(replies).await {
                    let reply =
                        reply.and_then(|v| String::from_redis_value(v).map_err(RedisError::from));
                    reports.push(reply.map_err(Error::redis("INFO"))?);
                }
                reports
            }
        };
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
        };
        let version = reports.iter().find_map(|info| field(info, "redis_version"));
        let used_memory = reports
            .iter()
            .map(|info| field(info, "used_memory").and_then(|v| v.parse::<u64>().ok()))
            .sum();
        Ok((version, used_memory))
    }

    /// The cluster's primaries; asks a node first when no command has run yet.
    async fn primaries(&self, cluster: &Cluster) -> Result<Vec<redis::cluster::NodeAddress>> {
        if let Some(primaries) = cluster.topology.primaries() {
            return Ok(primaries);
        }
        let ping = redis::cmd("PING");
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        self.bounded(
            "CLUSTER TOPOLOGY",
            "",
            cluster.connection.clone().route_command(ping, routing),
        )
        .await?;
        cluster.topology.primaries().ok_or_else(|| Error::Redis {
            operation: "CLUSTER TOPOLOGY",
            source: RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "the cluster's slot map is not known yet",
            )),
        })
    }

    /// Runs `command key..` once per hash slot of `keys` (one pipeline per primary) and
    /// returns each slot's reply with the indices of its keys.
    async fn per_slot<K: AsRef<[u8]>>(
        &self,
        command: &'static str,
        cluster: &Cluster,
        keys: &[K],
    ) -> Result<Vec<(Vec<usize>, Value)>> {
        let groups = cluster::by_slot(keys);
        let commands: Vec<(u16, redis::Cmd)> = groups
            .iter()
            .map(|(slot, indices)| {
                let mut cmd = redis::cmd(command);
                for &index in indices {
                    cmd.arg(keys[index].as_ref());
                }
                (*slot, cmd)
            })
            .collect();
        let first = keys
            .first()
            .and_then(|key| std::str::from_utf8(key.as_ref()).ok())
            .unwrap_or("");
        let replies = self
            .bounded(command, first, cluster.scatter(&commands))
            .await?;
        Ok(groups
            .into_iter()
            .map(|(_, indices)| indices)
            .zip(replies)
            .collect())
    }

    /// `UNLINK`s keys anywhere in the cluster: one command per slot, one pipeline per primary.
    async fn unlink_on(&self, cluster: &Cluster, keys: &[impl AsRef<[u8]>]) -> Result<u64> {
        let replies = self.per_slot("UNLINK", cluster, keys).await?;
        replies.into_iter().try_fold(0, |total, (_, reply)| {
            let removed =
                u64::from_redis_value(reply).map_err(|err| Error::redis("UNLINK")(err.into()))?;
            Ok(total + removed)
        })
    }

    /// Scans one server (on a cluster: one primary) for `pattern` and removes what it finds.
    async fn sweep(
        &self,
        pattern: &str,
        primary: Option<(&Cluster, &redis::cluster::NodeAddress)>,
    ) -> Result<u64> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .to_owned();
            let (next, mut keys): (u64, Vec<Vec<u8>>) = match primary {
                None => self.query("SCAN", pattern, &scan).await?,
                Some((cluster, node)) => {
                    let reply = self
                        .bounded("SCAN", pattern, cluster.on_node(node, scan))
                        .await?;
                    FromRedisValue::from_redis_value(reply)
                        .map_err(|err| Error::redis("SCAN")(err.into()))?
                }
            };
            keys.retain(|key| !crate::key::is_internal(key));
            if !keys.is_empty() {
                removed += match primary {
                    None => {
                        let unlink = redis::cmd("UNLINK").arg(&keys).to_owned();
                        self.query::<u64>("UNLINK", pattern, &unlink).await?
                    }
                    Some((cluster, _)) => self.unlink_on(cluster, &keys).await?,
                };
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// How often a subscription checks that its server still answers.
const BUS_PING: Duration = Duration::from_secs(1);

/// A subscription to one channel, kept alive across lost and frozen servers.
struct Bus {
    seeds: Arc<[Client]>,
    topology: Option<Topology>,
    channel: String,
    patience: Duration,
}

impl Bus {
    async fn listen(self, events: mpsc::UnboundedSender<BusEvent>) {
        let mut backoff = Duration::from_millis(50);
        while !events.is_closed() {
            let Some((mut sink, mut messages)) = self.subscribe().await else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            };
            backoff = Duration::from_millis(50);
            if events.send(BusEvent::Subscribed).is_err() {
                return;
            }
            let mut ticks = tokio::time::interval(BUS_PING);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let payload = message.get_payload_bytes().to_vec();
                        if events.send(BusEvent::Message(payload)).is_err() {
                            return;
                        }
                    }
                    _ = ticks.tick() => {
                        let pong = tokio::time::timeout(self.patience, sink.ping::<Value>()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            if events.send(BusEvent::Interrupted).is_err() {
                return;
            }
        }
    }

    /// Subscribes on the first server that answers in time: on a cluster, first the primary
    /// of the channel's slot, where notices are published (so they need no hop over the
    /// cluster bus), then the seeds in turn.
    async fn subscribe(&self) -> Option<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
        let owner = self
            .topology
            .as_ref()
            .and_then(|topology| topology.primary_of(cluster::slot(&self.channel)))
            .and_then(|node| cluster::client_for(&self.seeds[0], &node));
        for client in owner.iter().chain(self.seeds.iter()) {
            let attempt = async {
                let (mut sink, messages) = client.get_async_pubsub().await?.split();
                sink.subscribe(&self.channel).await?;
                RedisResult::Ok((sink, messages))
            };
            if let Ok(Ok(subscribed)) = tokio::time::timeout(self.patience, attempt).await {
                return Some(subscribed);
            }
        }
        None
    }
}

/// A `PTTL` reply.
fn key_ttl(millis: i64) -> KeyTtl {
    match millis {
        -2 => KeyTtl::Missing,
        ms if ms < 0 => KeyTtl::Persistent,
        ms => KeyTtl::ExpiresIn(Duration::from_millis(ms.unsigned_abs())),
    }
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.query("GET", key, redis::cmd("GET").arg(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl))
            .to_owned();
        self.query("SET", key, &cmd).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let removed: u64 = self
            .query("UNLINK", key, redis::cmd("UNLINK").arg(key))
            .await?;
        Ok(removed > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.query("EXISTS", key, redis::cmd("EXISTS").arg(key))
            .await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let cmd = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_millis(ttl))
            .to_owned();
        self.query("PEXPIRE", key, &cmd).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let millis: i64 = self.query("PTTL", key, redis::cmd("PTTL").arg(key)).await?;
        Ok(key_ttl(millis))
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let Link::Cluster(cluster) = &self.connection.0 else {
            let first = keys[0].as_str();
            return self
                .query("MGET", first, redis::cmd("MGET").arg(keys))
                .await;
        };
        let replies = self.per_slot("MGET", cluster, keys).await?;
        let mut values = vec![None; keys.len()];
        for (indices, reply) in replies {
            let found = Vec::<Option<Vec<u8>>>::from_redis_value(reply)
                .map_err(|err| Error::redis("MGET")(err.into()))?;
            for (index, value) in indices.into_iter().zip(found) {
                values[index] = value;
            }
        }
        Ok(values)
    }

    async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()> {
        let Some((first, _, _)) = items.first() else {
            return Ok(());
        };
        let set = |key: &str, value: &[u8], ttl: Duration| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_millis(ttl))
                .to_owned()
        };
        let Link::Cluster(_) = &self.connection.0 else {
            let mut pipe = redis::pipe();
            for (key, value, ttl) in items {
                pipe.add_command(set(key, value, *ttl)).ignore();
            }
            return self.query_pipe("MSET", first, &pipe).await;
        };
        let commands: Vec<(&str, redis::Cmd)> = items
            .iter()
            .map(|(key, value, ttl)| (key.as_str(), set(key, value, *ttl)))
            .collect();
        self.pipeline_by_key::<_, ()>("MSET", &commands).await?;
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self
                .query("UNLINK", &keys[0], redis::cmd("UNLINK").arg(keys))
                .await;
        };
        self.unlink_on(cluster, keys).await
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64> {
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self.sweep(pattern, None).await;
        };
        let primaries = self.primaries(cluster).await?;
        let sweeps = primaries
            .iter()
            .map(|node| self.sweep(pattern, Some((cluster, node))));
        let mut removed = 0;
        let mut failure = None;
        for sweep in join_all(sweeps).await {
            match sweep {
                Ok(count) => removed += count,
                Err(err) => failure = failure.or(Some(err)),
            }
        }
        failure.map_or(Ok(removed), Err)
    }

    async fn hset(&self, key: &str, field: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let added: u64 = self
            .write_with_ttl("HSET", key, &[field.as_bytes(), value], ttl)
            .await?;
        Ok(added > 0)
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        self.query("HGET", key, redis::cmd("HGET").arg(key).arg(field))
            .await
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let map: HashMap<String, Vec<u8>> = self
            .query("HGETALL", key, redis::cmd("HGETALL").arg(key))
            .await?;
        Ok(map.into_iter().collect())
    }

    async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        let removed: u64 = self
            .query("HDEL", key, redis::cmd("HDEL").arg(key).arg(field))
            .await?;
        Ok(removed > 0)
    }

    async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if values.is_empty() {
            return self.query("LLEN", key, redis::cmd("LLEN").arg(key)).await;
        }
        let args: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("LPUSH", key, &args, ttl).await
    }

    async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if values.is_empty() {
            return self.query("LLEN", key, redis::cmd("LLEN").arg(key)).await;
        }
        let args: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("RPUSH", key, &args, ttl).await
    }

    async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        let cmd = redis::cmd("LRANGE")
            .arg(key)
            .arg(start)
            .arg(stop)
            .to_owned();
        self.query("LRANGE", key, &cmd).await
    }

    async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let args: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("SADD", key, &args, ttl).await
    }

    async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query("SREM", key, redis::cmd("SREM").arg(key).arg(members))
            .await
    }

    async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        self.query("SMEMBERS", key, redis::cmd("SMEMBERS").arg(key))
            .await
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .to_owned();
        let reply: Option<String> = self.query("SET NX", key, &cmd).await?;
        Ok(reply.is_some())
    }

    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool> {
        let mut invocation = DELETE_IF_EQUALS.key(key);
        invocation.arg(expected);
        let removed: u64 = self.invoke("DELETE IF EQUALS", key, &invocation).await?;
        Ok(removed > 0)
    }

    async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut invocation = TAG.key(tag_key);
        invocation.arg(ttl_millis(ttl)).arg(members);
        self.invoke("TAG", tag_key, &invocation).await
    }

    async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        self.invoke("TAKE TAGGED", tag_key, &TAKE_TAGGED.key(tag_key))
            .await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (bytes, millis): (Option<Vec<u8>>, i64) = self.query_pipe("GET", key, &pipe).await?;
        Ok(bytes.map(|bytes| (bytes, key_ttl(millis))))
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        self.query(
            "PUBLISH",
            channel,
            redis::cmd("PUBLISH").arg(channel).arg(message),
        )
        .await
    }

    fn subscribe(&self, channel: &str) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let topology = match &self.connection.0 {
            Link::Node(_) => None,
            Link::Cluster(cluster) => Some(cluster.topology.clone()),
        };
        let bus = Bus {
            seeds: Arc::clone(&self.subscribers),
            topology,
            channel: channel.to_owned(),
            patience: self.command_timeout.min(BUS_PING),
        };
        tokio::runtime::Handle::try_current()
            .ok()?
            .spawn(bus.listen(sender));
        Some(receiver)
    }

    async fn answers(&self) -> bool {
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self.ping().await.is_ok();
        };
        self.ping_primaries(cluster)
            .await
            .is_ok_and(|pings| pings.iter().any(|(_, ping)| ping.is_ok()))
    }

    async fn health_check(&self) -> HealthReport {
        let started = Instant::now();
        if let Err(report) = self.ping().await {
            return report;
        }
        let latency = started.elapsed();
        let (server_version, used_memory_bytes) = self.server_facts().await.unwrap_or_default();
        HealthReport {
            backend: self.backend(),
            healthy: true,
            latency: Some(latency),
            server_version,
            used_memory_bytes,
            error: None,
            circuit_open: false,
        }
    }
}
