//! A Sentinel-managed primary (`redis+sentinel://`): one multiplexed connection to the primary
//! the Sentinels name, replaced by asking them again once it fails.
//!
//! redis-rs resolves a primary through its Sentinels (checking that the server it names
//! reports the `master` role) but keeps no connection that follows a failover; this one does.
//! A connection is dropped when a request on it fails in a way that means the server is gone
//! or no longer primary (an I/O error, a dropped connection, `READONLY`), or when a request
//! or the store's health check times out on it; the next request asks the Sentinels again.
//! The search runs as its own task, one at a time, under its own timeout (the connect
//! timeout, at least 1 s, per Sentinel and once more), so that a request's deadline never
//! cancels it: requests wait for it as long as their deadline allows, and one Sentinel that
//! answers nothing cannot keep every search from finishing. While no primary can be found,
//! requests fail at once rather than starting searches, for [`RESOLVE_PAUSE`] after a
//! failed one.
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
use tokio::sync::watch;

use super::subscription::{Backoff, Relayed, relay, subscribe_on};
use crate::store::endpoint::SentinelEndpoint;

/// Time after a failed search for the primary during which requests fail without searching.
const RESOLVE_PAUSE: Duration = Duration::from_millis(100);

/// How long a search waits for a Sentinel that did not answer in time when last asked.
const SUSPECT_PATIENCE: Duration = Duration::from_millis(100);

/// See the module documentation.
#[derive(Clone)]
pub(super) struct SentinelLink(Arc<Shared>);

struct Shared {
    resolver: tokio::sync::Mutex<Resolver>,
    /// What the connections' answer times count from.
    epoch: Instant,
    current: RwLock<Option<Primary>>,
    /// The latest search for the primary (see [`SentinelLink::search`]).
    searching: std::sync::Mutex<Option<watch::Receiver<Found>>>,
    connect_timeout: Duration,
    /// How long a search may take: the connect timeout (at least 1 s) for each Sentinel,
    /// and once more for the primary.
    search_timeout: Duration,
    db: i64,
    service: String,
}

struct Resolver {
    /// A client per Sentinel.
    sentinels: Vec<SentinelClient>,
    /// Whether each Sentinel failed to answer in time when last asked.
    suspects: Vec<bool>,
    generation: u64,
}

impl Resolver {
    /// A client for the primary that a Sentinel names (and that reports the `master` role),
    /// from the first Sentinel to answer: the Sentinels are asked all at once, each for at
    /// most `patience`, so that one that answers nothing (frozen) does not hold the others
    /// up (redis-rs asks them in order). A Sentinel that did not answer in time is a suspect,
    /// given [`SUSPECT_PATIENCE`] only, until it answers again: otherwise every search while
    /// the others name no live primary (during a failover) would wait for it in full.
    async fn ask(&mut self, patience: Duration) -> redis::RedisResult<Client> {
        use futures_util::StreamExt;
        let suspects = &mut self.suspects;
        let mut asks: futures_util::stream::FuturesUnordered<_> = self
            .sentinels
            .iter_mut()
            .enumerate()
            .map(|(index, sentinel)| {
                let patience = match suspects[index] {
                    true => SUSPECT_PATIENCE.min(patience),
                    false => patience,
                };
                async move {
                    let asked = super::within(patience, sentinel.async_get_client()).await;
                    (index, asked)
                }
            })
            .collect();
        let mut last = None;
        while let Some((index, asked)) = asks.next().await {
            match asked {
                Ok(client) => {
                    suspects[index] = false;
                    return Ok(client);
                }
                Err(err) => {
                    suspects[index] = err.is_timeout();
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Sentinel to ask"))
        }))
    }
}

/// What a search for the primary found: the connection, or the error and when it came;
/// `None` while it runs.
type Found = Option<Result<Primary, (RedisError, Instant)>>;

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
        // One client per Sentinel, asked all at once (see `Resolver::ask`).
        let sentinels = endpoint
            .sentinels
            .iter()
            .map(|sentinel| {
                let mut builder = SentinelClientBuilder::new(
                    [sentinel.clone()],
                    &endpoint.service,
                    SentinelServerType::Master,
                )?
                .set_client_to_redis_db(endpoint.redis.db())
                .set_client_to_redis_tcp_settings(tcp.clone())
                .set_client_to_sentinel_tcp_settings(tcp.clone());
                if let Some(username) = endpoint.redis.username() {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = endpoint.redis.password() {
                    builder = builder.set_client_to_redis_password(password);
                }
                builder.build()
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        Ok(SentinelLink(Arc::new(Shared {
            resolver: tokio::sync::Mutex::new(Resolver {
                suspects: vec![false; sentinels.len()],
                sentinels,
                generation: 0,
            }),
            epoch: Instant::now(),
            current: RwLock::new(None),
            searching: std::sync::Mutex::new(None),
            connect_timeout,
            search_timeout: connect_timeout
                .max(Duration::from_secs(1))
                .saturating_mul(u32::try_from(endpoint.sentinels.len() + 1).unwrap_or(u32::MAX)),
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
        let mut search = self.search();
        let found = match search.wait_for(Option::is_some).await {
            Ok(found) => found.clone(),
            Err(_) => None,
        };
        match found {
            Some(Ok(primary)) => Ok(primary),
            Some(Err((err, _))) => Err(err),
            None => Err(self.no_primary("the search ended without an answer")),
        }
    }

    /// The search for the primary: the one running (or one that failed less than
    /// [`RESOLVE_PAUSE`] ago), or one started now. A search runs as its own task under its
    /// own timeout: a request waits for it only as long as the request's deadline allows,
    /// and a request that gives up does not cancel it.
    fn search(&self) -> watch::Receiver<Found> {
        let mut searching = self
            .0
            .searching
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = searching.as_ref() {
            let joins = match &*running.borrow() {
                None => true,
                Some(Err((_, failed_at))) => failed_at.elapsed() < RESOLVE_PAUSE,
                Some(Ok(primary)) => self
                    .current()
                    .is_some_and(|current| current.generation == primary.generation),
            };
            if joins {
                return running.clone();
            }
        }
        let (sender, receiver) = watch::channel(None);
        *searching = Some(receiver.clone());
        drop(searching);
        let link = self.clone();
        tokio::spawn(async move {
            let found = link.resolve().await;
            sender.send_replace(Some(found));
        });
        receiver
    }

    /// Asks the Sentinels for the primary and connects to it, within the search timeout.
    async fn resolve(&self) -> Result<Primary, (RedisError, Instant)> {
        let mut resolver = self.0.resolver.lock().await;
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.0.connect_timeout))
            .set_response_timeout(None);
        let search = async {
            let client = resolver.ask(self.0.connect_timeout).await?;
            let connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::RedisResult::Ok((client, connection))
        };
        match super::within(self.0.search_timeout, search).await {
            Ok((client, connection)) => {
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
            Err(err) => Err((err, Instant::now())),
        }
    }

    fn no_primary(&self, reason: &str) -> RedisError {
        std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            format!("no primary for `{}`: {reason}", self.0.service),
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
            let mut backoff = Backoff::new();
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
                    backoff.reset();
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
                backoff.wait().await;
            }
        });
    }

    /// A client for the server the Sentinels name as primary now, asked afresh (for a
    /// subscription, which is made again only after the last one broke: the store's own
    /// connection may not have noticed a failover yet, having had no request since).
    pub(super) async fn fresh_client(&self) -> redis::RedisResult<Client> {
        let mut resolver = self.0.resolver.lock().await;
        let client =
            super::within(self.0.connect_timeout, resolver.ask(self.0.connect_timeout)).await?;
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
