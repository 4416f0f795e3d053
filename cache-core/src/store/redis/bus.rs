//! The message bus: a subscription to one channel, kept alive across lost and frozen servers;
//! with key tracking (`Store::watch`), on a RESP3 connection that also receives the server's
//! invalidations of every key under a prefix (`CLIENT TRACKING ON BCAST`).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use super::super::BusEvent;
use super::super::cluster::{self, Topology};
use super::subscription::{Backoff, Relayed, ping_ticks, relay, subscribe_on};

/// A subscription to one channel, kept alive across lost and frozen servers.
pub(super) struct Bus {
    pub(super) seeds: Arc<[Client]>,
    pub(super) topology: Option<Topology>,
    /// A Sentinel-managed store's primary, where notices are published.
    pub(super) primary: Option<super::sentinel::SentinelLink>,
    pub(super) channel: String,
    pub(super) patience: Duration,
    /// The prefix of the keys whose changes by any client are reported too (`Store::watch`),
    /// when the servers allow tracking them (on a cluster, each primary tracks its own keys).
    pub(super) tracked: Option<String>,
}

/// How long a cluster with a primary that could not be tracked relies on notices before
/// trying to track every primary again.
const TRACK_AGAIN: Duration = Duration::from_secs(10);

/// Tracking connections, one per server (per primary on a cluster), the first also
/// subscribed to the channel; their pushes arrive on one receiver.
struct Trackers {
    connections: Vec<MultiplexedConnection>,
    /// On a cluster, the primaries tracked: when they change (a failover), the tracking is
    /// made again.
    primaries: Option<Vec<redis::cluster::NodeAddress>>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
}

/// What an attempt at a tracking subscription gave.
enum Tracked {
    Ready(Trackers),
    /// The server refused (before Redis 6, `CLIENT TRACKING` disabled or not permitted).
    Refused(RedisError),
    /// No answer in time: try again later.
    Unreachable,
    /// The cluster's primaries are not known yet (a store connected lazily learns them with
    /// its first command): try again shortly.
    Unknown,
}

impl Bus {
    pub(super) async fn listen(self, events: mpsc::UnboundedSender<BusEvent>) {
        let mut backoff = Backoff::new();
        let mut tracking = self.tracked.is_some();
        let mut announced = false;
        // on a cluster with a primary unreachable: notices meanwhile, tracking again later
        let mut track_again_at: Option<Instant> = None;
        while !events.is_closed() {
            if tracking && track_again_at.is_none_or(|at| Instant::now() >= at) {
                track_again_at = None;
                match self.track().await {
                    Tracked::Ready(mut trackers) => {
                        backoff.reset();
                        if !announced {
                            tracing::info!(
                                channel = %self.channel,
                                "local tiers follow every client's changes to their keys (CLIENT TRACKING)"
                            );
                            announced = true;
                        }
                        if events.send(BusEvent::Subscribed).is_err()
                            || events.send(BusEvent::Tracking).is_err()
                        {
                            return;
                        }
                        let relayed = self.relay_tracked(&mut trackers, &events).await;
                        if let Relayed::Stopped = relayed {
                            return;
                        }
                        if events.send(BusEvent::Interrupted).is_err() {
                            return;
                        }
                        continue;
                    }
                    Tracked::Refused(err) => {
                        tracing::info!(
                            error = %err,
                            "the server refuses CLIENT TRACKING: local tiers follow cachemere's own notices only"
                        );
                        tracking = false;
                        announced = true;
                    }
                    Tracked::Unreachable if self.topology.is_some() => {
                        // a lost node must not stop the other nodes' notices: they go on
                        // through pub/sub (cachemere's writers only) until all answer
                        track_again_at = Some(Instant::now() + TRACK_AGAIN);
                    }
                    Tracked::Unreachable | Tracked::Unknown => {
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            let Some((mut sink, mut messages)) = self.subscribe().await else {
                backoff.wait().await;
                continue;
            };
            backoff.reset();
            if !announced {
                tracing::info!(
                    channel = %self.channel,
                    "local tiers follow cachemere's own notices (pub/sub)"
                );
                announced = true;
            }
            if events.send(BusEvent::Subscribed).is_err() {
                return;
            }
            let forward = |message: redis::Msg| {
                let payload = message.get_payload_bytes().to_vec();
                match events.send(BusEvent::Message(payload)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            };
            let relayed = relay(&mut sink, &mut messages, self.patience, forward, || {
                !events.is_closed() && track_again_at.is_none_or(|at| Instant::now() < at)
            })
            .await;
            if let Relayed::Stopped = relayed
                && events.is_closed()
            {
                return;
            }
            if events.send(BusEvent::Interrupted).is_err() {
                return;
            }
        }
    }

    /// Tracks the watched keys on every server (the current primary under Sentinel, every
    /// primary of a cluster), each on a RESP3 connection whose invalidations arrive as pushes,
    /// and subscribes to the channel on the first of them.
    async fn track(&self) -> Tracked {
        let (servers, primaries) = match (&self.primary, &self.topology) {
            (Some(primary), _) => {
                match tokio::time::timeout(self.patience, primary.fresh_client()).await {
                    Ok(Ok(client)) => (vec![client], None),
                    _ => return Tracked::Unreachable,
                }
            }
            (None, Some(topology)) => {
                let (Some(primaries), Some(seed)) = (topology.primaries(), self.seeds.first())
                else {
                    return Tracked::Unknown;
                };
                let clients: Option<Vec<Client>> = primaries
                    .iter()
                    .map(|node| cluster::client_for(seed, node))
                    .collect();
                match clients {
                    Some(clients) => (clients, Some(primaries)),
                    None => return Tracked::Unreachable,
                }
            }
            (None, None) => match self.seeds.first() {
                Some(client) => (vec![client.clone()], None),
                None => return Tracked::Unreachable,
            },
        };
        let (sender, pushes) = mpsc::unbounded_channel();
        let mut connections = Vec::with_capacity(servers.len());
        for (index, server) in servers.iter().enumerate() {
            let attempt = self.track_on(server, sender.clone(), index == 0);
            match tokio::time::timeout(self.patience, attempt).await {
                Ok(Ok(connection)) => connections.push(connection),
                Ok(Err(err)) if is_refusal(&err) => return Tracked::Refused(err),
                Ok(Err(_)) | Err(_) => return Tracked::Unreachable,
            }
        }
        Tracked::Ready(Trackers {
            connections,
            primaries,
            pushes,
        })
    }

    /// A RESP3 connection to `server` that tracks the watched keys (broadcast mode, so
    /// every change under the prefix is reported, whoever read it), subscribed to the
    /// channel if `subscribe`.
    async fn track_on(
        &self,
        server: &Client,
        pushes: mpsc::UnboundedSender<PushInfo>,
        subscribe: bool,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let info = server.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let config = AsyncConnectionConfig::new()
            .set_push_sender(pushes)
            .set_connection_timeout(Some(self.patience))
            .set_response_timeout(Some(self.patience));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut tracking = redis::cmd("CLIENT");
        tracking.arg("TRACKING").arg("ON").arg("BCAST");
        if let Some(prefix) = self.tracked.as_deref().filter(|prefix| !prefix.is_empty()) {
            tracking.arg("PREFIX").arg(prefix);
        }
        tracking.query_async::<()>(&mut connection).await?;
        if subscribe {
            connection.subscribe(&self.channel).await?;
        }
        Ok(connection)
    }

    /// Passes the trackers' pushes on as events (the channel's messages, the keys changed),
    /// pinging every server each [`BUS_PING`](super::subscription::BUS_PING) (waiting at
    /// most the patience), until a connection is lost or goes silent, the cluster's primaries
    /// change, or nobody listens.
    async fn relay_tracked(
        &self,
        trackers: &mut Trackers,
        events: &mpsc::UnboundedSender<BusEvent>,
    ) -> Relayed {
        let mut ticks = ping_ticks().await;
        loop {
            tokio::select! {
                push = trackers.pushes.recv() => {
                    let Some(push) = push else { return Relayed::Silent };
                    let event = match push.kind {
                        PushKind::Invalidate => match push.data.into_iter().next() {
                            Some(Value::Array(keys)) => BusEvent::Changed(
                                keys.iter().filter_map(key_text).collect(),
                            ),
                            _ => BusEvent::ChangedAll,
                        },
                        PushKind::Message => match push.data.into_iter().nth(1) {
                            Some(Value::BulkString(payload)) => BusEvent::Message(payload),
                            _ => continue,
                        },
                        PushKind::Disconnection => return Relayed::Silent,
                        _ => continue,
                    };
                    if events.send(event).is_err() {
                        return Relayed::Stopped;
                    }
                }
                _ = ticks.tick() => {
                    if events.is_closed() {
                        return Relayed::Stopped;
                    }
                    let moved = match (&trackers.primaries, &self.topology) {
                        (Some(tracked), Some(topology)) => {
                            topology.primaries().is_some_and(|now| now != *tracked)
                        }
                        _ => false,
                    };
                    if moved {
                        return Relayed::Silent;
                    }
                    let ping = redis::cmd("PING");
                    let pings = trackers.connections.iter_mut().map(|connection| {
                        tokio::time::timeout(self.patience, ping.query_async::<Value>(connection))
                    });
                    let answered = futures_util::future::join_all(pings).await;
                    if !answered.iter().all(|pong| matches!(pong, Ok(Ok(_)))) {
                        return Relayed::Silent;
                    }
                }
            }
        }
    }

    /// Subscribes on the first server that answers in time: on a cluster, first the primary
    /// of the channel's slot, where notices are published (so they need no hop over the
    /// cluster bus), then the seeds in turn; under Sentinel, the current primary.
    async fn subscribe(&self) -> Option<(PubSubSink, PubSubStream)> {
        let owner = match &self.primary {
            Some(primary) => tokio::time::timeout(self.patience, primary.fresh_client())
                .await
                .ok()?
                .ok(),
            None => self
                .topology
                .as_ref()
                .and_then(|topology| topology.primary_of(cluster::slot(&self.channel)))
                .and_then(|node| cluster::client_for(self.seeds.first()?, &node)),
        };
        for client in owner.iter().chain(self.seeds.iter()) {
            if let Some(subscribed) = subscribe_on(client, &self.channel, self.patience).await {
                return Some(subscribed);
            }
        }
        None
    }
}

/// Whether the server answered with a refusal (an older server, a disabled or forbidden
/// command), rather than not answering.
fn is_refusal(err: &RedisError) -> bool {
    !(err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal())
}

fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}
