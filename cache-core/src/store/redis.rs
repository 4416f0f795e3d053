use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, Script};

use futures_util::StreamExt;
use tokio::sync::mpsc;

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

/// A [`Store`] on a Redis server, through one auto-reconnecting multiplexed connection.
///
/// Every command is bounded by the configured command timeout (`REDIS_SOCKET_TIMEOUT`); a
/// connection that drops is re-established in the background with exponential backoff, so a
/// `RedisStore` outlives Redis restarts. Commands are pipelined over the single connection,
/// which is what redis-rs recommends for async use: it needs no pool
/// (`REDIS_MAX_CONNECTIONS` applies to pooled backends only).
///
/// ```no_run
/// use cache_core::{RedisStore, Store};
/// use std::time::Duration;
///
/// # async fn demo() -> cache_core::Result<()> {
/// let store = RedisStore::from_url("redis://127.0.0.1:6379/0").await?;
/// store.set("greeting", b"hello", Duration::from_secs(60)).await?;
/// assert_eq!(store.get("greeting").await?, Some(b"hello".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    connection: ConnectionManager,
    address: String,
    command_timeout: Duration,
    monitor: Arc<Monitor>,
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
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `config.redis_url`, waiting at most `config.connect_timeout`.
    ///
    /// Fails with [`Error::Config`] when no URL is configured and with a transient error
    /// ([`Error::is_transient`]) when the server cannot be reached in time. Use
    /// [`connect_lazy`](RedisStore::connect_lazy) to start without a reachable server.
    pub async fn connect(config: &Config) -> Result<RedisStore> {
        let store = RedisStore::connect_lazy(config)?;
        let timeout = config.connect_timeout;
        let connecting = async {
            let mut connection = store.connection.clone();
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
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

    /// Connects to a server given by URL (`redis://host:port/db`) with the default settings.
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
        let invalid_url = |err: RedisError| Error::Config {
            name: "REDIS_URL",
            value: url.to_owned(),
            reason: err.to_string(),
        };
        let info = url.into_connection_info().map_err(invalid_url)?;
        let address = info.addr().to_string();
        let keepalive = TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
        let info = info.set_tcp_settings(
            TcpSettings::default()
                .set_nodelay(true)
                .set_keepalive(keepalive),
        );
        let client = Client::open(info).map_err(invalid_url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config {
                name: "runtime",
                value: "none".into(),
                reason: "RedisStore must be created inside a Tokio runtime".into(),
            });
        }
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(invalid_url)?;
        let store = RedisStore {
            client,
            connection,
            address,
            command_timeout: config.command_timeout,
            monitor: Arc::default(),
        };
        store.spawn_health_checks(config.health_check_interval);
        Ok(store)
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
                let healthy = probe
                    .query::<()>("PING", "", &redis::cmd("PING"))
                    .await
                    .is_ok();
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
    /// `get_redis()`). It is a cheap clone of the store's own multiplexed connection.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs a Lua script under the store's command timeout, with the store's error mapping;
    /// `operation` and `key` name it in errors. Scripts keep multi-key steps atomic for
    /// crates built on the store (the session manager uses this).
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
        let mut connection = self.connection.clone();
        self.bounded(operation, key, invocation.invoke_async(&mut connection))
            .await
    }

    /// Runs a pipeline under the store's command timeout (one round trip).
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        self.query_pipe(operation, key, pipe).await
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
        let mut connection = self.connection.clone();
        self.bounded(command, key, invocation.invoke_async(&mut connection))
            .await
    }

    async fn server_facts(&self) -> Result<(Option<String>, Option<u64>)> {
        let info: String = self
            .query("INFO", "", redis::cmd("INFO").arg("server").arg("memory"))
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
        };
        let version = field("redis_version");
        let used_memory = field("used_memory").and_then(|v| v.parse().ok());
        Ok((version, used_memory))
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
        let first = keys[0].as_str();
        self.query("MGET", first, redis::cmd("MGET").arg(keys))
            .await
    }

    async fn mset(&self, items: &[(String, Vec<u8>)], ttl: Duration) -> Result<()> {
        let Some((first, _)) = items.first() else {
            return Ok(());
        };
        let millis = ttl_millis(ttl);
        let mut pipe = redis::pipe();
        for (key, value) in items {
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .ignore();
        }
        self.query_pipe("MSET", first, &pipe).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query("UNLINK", &keys[0], redis::cmd("UNLINK").arg(keys))
            .await
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64> {
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
            let (next, keys): (u64, Vec<Vec<u8>>) = self.query("SCAN", pattern, &scan).await?;
            if !keys.is_empty() {
                let unlink = redis::cmd("UNLINK").arg(&keys).to_owned();
                removed += self.query::<u64>("UNLINK", pattern, &unlink).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
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
        let mut connection = self.connection.clone();
        let removed: u64 = self
            .bounded(
                "DELETE IF EQUALS",
                key,
                invocation.invoke_async(&mut connection),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut invocation = TAG.key(tag_key);
        invocation.arg(ttl_millis(ttl)).arg(members);
        let mut connection = self.connection.clone();
        self.bounded("TAG", tag_key, invocation.invoke_async(&mut connection))
            .await
    }

    async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        let invocation = TAKE_TAGGED.key(tag_key);
        let mut connection = self.connection.clone();
        self.bounded(
            "TAKE TAGGED",
            tag_key,
            invocation.invoke_async(&mut connection),
        )
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
        let (client, channel) = (self.client.clone(), channel.to_owned());
        tokio::runtime::Handle::try_current()
            .ok()?
            .spawn(async move {
                let mut backoff = Duration::from_millis(50);
                while !sender.is_closed() {
                    let subscribed = async {
                        let mut pubsub = client.get_async_pubsub().await?;
                        pubsub.subscribe(&channel).await?;
                        RedisResult::Ok(pubsub)
                    };
                    let Ok(pubsub) = subscribed.await else {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    };
                    backoff = Duration::from_millis(50);
                    if sender.send(BusEvent::Subscribed).is_err() {
                        return;
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let payload = message.get_payload_bytes().to_vec();
                        if sender.send(BusEvent::Message(payload)).is_err() {
                            return;
                        }
                    }
                    if sender.send(BusEvent::Interrupted).is_err() {
                        return;
                    }
                }
            });
        Some(receiver)
    }

    async fn health_check(&self) -> HealthReport {
        let started = Instant::now();
        if let Err(err) = self.query::<()>("PING", "", &redis::cmd("PING")).await {
            return HealthReport::unhealthy(self.backend(), &err);
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
