//! A Sentinel-managed primary (`redis+sentinel://`): one multiplexed connection to the primary
//! the Sentinels name, replaced by asking them again once it fails.
//!
//! redis-rs resolves a primary through its Sentinels (checking that the server it names
//! reports the `master` role) but keeps no connection that follows a failover; this one does.
//! A connection is dropped when a request on it fails in a way that means the server is gone
//! or no longer primary (an I/O error, a dropped connection, `READONLY`), or when a request
//! or the store's health check times out on it; the next request asks the Sentinels again (one caller at a
//! time; the others wait for its answer). While no primary can be found, requests fail at
//! once rather than each asking the Sentinels, for [`RESOLVE_PAUSE`] after a failed attempt.
//! The connection is also dropped when the Sentinels announce a failover of the service
//! (`+switch-master`, [`SentinelLink::watch_switches`]): a demoted primary that still runs
//! keeps accepting writes until the Sentinels reconfigure it, seconds later.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, RedisError, RedisFuture, Value};

use super::bus::{Relayed, relay, subscribe_on};
use crate::store::endpoint::SentinelEndpoint;

/// Time after a failed search for the primary during which requests fail without searching.
const RESOLVE_PAUSE: Duration = Duration::from_millis(100);

/// See the module documentation.
#[derive(Clone)]
pub(super) struct SentinelLink(Arc<Shared>);

struct Shared {
    resolver: tokio::sync::Mutex<Resolver>,
    /// What the connections' answer times count from.
    epoch: Instant,
    current: RwLock<Option<Primary>>,
    connect_timeout: Duration,
    db: i64,
    service: String,
}

struct Resolver {
    sentinels: SentinelClient,
    failed_at: Option<Instant>,
    generation: u64,
}

#[derive(Clone)]
struct Primary {
    connection: MultiplexedConnection,
    client: Client,
    generation: u64,
    created: Instant,
    /// When it last answered, in microseconds since [`Shared::epoch`] (0: never).
    answered: Arc<AtomicU64>,
}

impl SentinelLink {
    pub(super) fn new(
        endpoint: &SentinelEndpoint,
        tcp: redis::io::tcp::TcpSettings,
        connect_timeout: Duration,
    ) -> redis::RedisResult<SentinelLink> {
        let mut builder = SentinelClientBuilder::new(
            endpoint.sentinels.clone(),
            &endpoint.service,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(endpoint.redis.db())
        .set_client_to_redis_tcp_settings(tcp.clone())
        .set_client_to_sentinel_tcp_settings(tcp);
        if let Some(username) = endpoint.redis.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = endpoint.redis.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        Ok(SentinelLink(Arc::new(Shared {
            resolver: tokio::sync::Mutex::new(Resolver {
                sentinels: builder.build()?,
                failed_at: None,
                generation: 0,
            }),
            epoch: Instant::now(),
            current: RwLock::new(None),
            connect_timeout,
            db: endpoint.redis.db(),
            service: endpoint.service.clone(),
        })))
    }

    fn current(&self) -> Option<Primary> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The connection to the primary, asking the Sentinels for it when there is none.
    async fn primary(&self) -> redis::RedisResult<Primary> {
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let mut resolver = self.0.resolver.lock().await;
        // Another caller may have found it while this one waited.
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        if resolver
            .failed_at
            .is_some_and(|at| at.elapsed() < RESOLVE_PAUSE)
        {
            return Err(self.no_primary());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.0.connect_timeout))
            .set_response_timeout(None);
        let search = async {
            let client = resolver.sentinels.async_get_client().await?;
            let connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::RedisResult::Ok((client, connection))
        };
        match super::within(self.0.connect_timeout, search).await {
            Ok((client, connection)) => {
                resolver.failed_at = None;
                resolver.generation += 1;
                let primary = Primary {
                    connection,
                    client,
                    generation: resolver.generation,
                    created: Instant::now(),
                    answered: Arc::new(AtomicU64::new(0)),
                };
                *self
                    .0
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(primary.clone());
                Ok(primary)
            }
            Err(err) => {
                resolver.failed_at = Some(Instant::now());
                Err(err)
            }
        }
    }

    fn no_primary(&self) -> RedisError {
        std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            format!(
                "no primary for `{}`: the Sentinels were asked less than {RESOLVE_PAUSE:?} ago",
                self.0.service
            ),
        )
        .into()
    }

    /// Drops connection `generation` (not a newer one another caller already made).
    fn forget(&self, generation: u64) {
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|primary| primary.generation == generation)
        {
            *current = None;
        }
    }

    /// Drops the current connection after a request or the health check that started at
    /// `started` timed out (a frozen server answers nothing, so no reply says it is gone),
    /// unless the connection is not the one that went silent: it was made, or it answered,
    /// after that request began. A late timeout never drops its successor.
    pub(super) fn forget_if_silent_since(&self, started: Instant) {
        let started = self.micros_since_epoch(started);
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let alive = current.as_ref().is_some_and(|primary| {
            self.micros_since_epoch(primary.created) > started
                || primary.answered.load(Ordering::Acquire) > started
        });
        if !alive {
            *current = None;
        }
    }

    fn micros_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Drops the current connection: the Sentinels announced a new primary.
    pub(super) fn forget_current(&self) {
        *self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Listens to the Sentinels' `+switch-master` announcements (on the first Sentinel that
    /// answers, moving to the next when it stops answering pings, as the bus does) and drops the connection
    /// when one names this service: a primary that was demoted while still running keeps
    /// answering, and accepting writes, until the Sentinels reconfigure it (seconds later),
    /// and those writes are lost when it becomes a replica. Ends when the store is dropped.
    /// Needs a tokio runtime; without one the store follows failovers only by failures.
    pub(super) fn watch_switches(&self, sentinels: Vec<redis::ConnectionAddr>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let link = Arc::downgrade(&self.0);
        let (service, patience) = (self.0.service.clone(), self.0.connect_timeout);
        runtime.spawn(async move {
            let mut backoff = Duration::from_millis(50);
            while link.strong_count() > 0 {
                for address in &sentinels {
                    let Ok(client) = Client::open(address.clone()) else {
                        continue;
                    };
                    let Some((mut sink, mut messages)) =
                        subscribe_on(&client, "+switch-master", patience).await
                    else {
                        continue;
                    };
                    backoff = Duration::from_millis(50);
                    let follow = |message: redis::Msg| {
                        let Some(shared) = link.upgrade() else {
                            return ControlFlow::Break(());
                        };
                        // `<service> <old ip> <old port> <new ip> <new port>`
                        let payload: String = message.get_payload().unwrap_or_default();
                        if payload.split(' ').next() == Some(service.as_str()) {
                            SentinelLink(shared).forget_current();
                        }
                        ControlFlow::Continue(())
                    };
                    let alive = || link.strong_count() > 0;
                    if let Relayed::Stopped =
                        relay(&mut sink, &mut messages, patience, follow, alive).await
                    {
                        return;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// A client for the server the Sentinels name as primary now, asked afresh (for a
    /// subscription, which is made again only after the last one broke: the store's own
    /// connection may not have noticed a failover yet, having had no request since).
    pub(super) async fn fresh_client(&self) -> redis::RedisResult<Client> {
        let mut resolver = self.0.resolver.lock().await;
        let client = super::within(
            self.0.connect_timeout,
            resolver.sentinels.async_get_client(),
        )
        .await?;
        // Another primary than the one the store talks to: the store follows at once.
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|primary| {
            primary.client.get_connection_info().addr() != client.get_connection_info().addr()
        }) {
            *current = None;
        }
        Ok(client)
    }

    fn settle<T>(&self, primary: &Primary, result: &redis::RedisResult<T>) {
        match result {
            Ok(_) => primary.answered.store(
                self.micros_since_epoch(Instant::now()).max(1),
                Ordering::Release,
            ),
            Err(err) if lost_primary(err) => self.forget(primary.generation),
            Err(_) => {}
        }
    }
}

/// Whether `err` means the connection's server is gone or no longer the primary.
fn lost_primary(err: &RedisError) -> bool {
    err.is_unrecoverable_error()
        || err.is_connection_dropped()
        || err.is_io_error()
        || matches!(err.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// Whether a reply says that the server is no longer the primary. Server errors arrive as
/// replies (`Value::ServerError`), not as errors of the request: `lost_primary` never sees
/// them.
fn demoted(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(err) if matches!(err.code(), "READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for SentinelLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut primary = self.primary().await?;
            let result = primary.connection.req_packed_command(cmd).await;
            self.settle(&primary, &result);
            if result.as_ref().is_ok_and(demoted) {
                self.forget(primary.generation);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut primary = self.primary().await?;
            let result = primary
                .connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.settle(&primary, &result);
            if result
                .as_ref()
                .is_ok_and(|replies| replies.iter().any(demoted))
            {
                self.forget(primary.generation);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}
