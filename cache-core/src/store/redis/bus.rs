//! The message bus: a subscription to one channel, kept alive across lost and frozen servers.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, RedisResult, Value};
use tokio::sync::mpsc;

use super::super::BusEvent;
use super::super::cluster::{self, Topology};

/// How often a subscription checks that its server still answers.
pub(super) const BUS_PING: Duration = Duration::from_secs(1);

/// A subscription to one channel, kept alive across lost and frozen servers.
pub(super) struct Bus {
    pub(super) seeds: Arc<[Client]>,
    pub(super) topology: Option<Topology>,
    /// A Sentinel-managed store's primary, where notices are published.
    pub(super) primary: Option<super::sentinel::SentinelLink>,
    pub(super) channel: String,
    pub(super) patience: Duration,
}

impl Bus {
    pub(super) async fn listen(self, events: mpsc::UnboundedSender<BusEvent>) {
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
            let forward = |message: redis::Msg| {
                let payload = message.get_payload_bytes().to_vec();
                match events.send(BusEvent::Message(payload)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            };
            let relayed = relay(&mut sink, &mut messages, self.patience, forward, || {
                !events.is_closed()
            })
            .await;
            if let Relayed::Stopped = relayed {
                return;
            }
            if events.send(BusEvent::Interrupted).is_err() {
                return;
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

/// A subscription to `channel` on `client`'s server, if it is made within `patience`.
pub(super) async fn subscribe_on(
    client: &Client,
    channel: &str,
    patience: Duration,
) -> Option<(PubSubSink, PubSubStream)> {
    let attempt = async {
        let (mut sink, messages) = client.get_async_pubsub().await?.split();
        sink.subscribe(channel).await?;
        RedisResult::Ok((sink, messages))
    };
    tokio::time::timeout(patience, attempt).await.ok()?.ok()
}

/// Why [`relay`] returned.
pub(super) enum Relayed {
    /// The subscription broke, or its server stopped answering pings: subscribe again.
    Silent,
    /// `on_message` or `alive` said to stop.
    Stopped,
}

/// Passes a subscription's messages to `on_message`, pinging its server every [`BUS_PING`]
/// (waiting at most `patience` for the answer, so that a frozen server is noticed), until the
/// subscription goes silent or `on_message` breaks or `alive` (asked on each ping) is false.
pub(super) async fn relay(
    sink: &mut PubSubSink,
    messages: &mut PubSubStream,
    patience: Duration,
    mut on_message: impl FnMut(redis::Msg) -> ControlFlow<()>,
    alive: impl Fn() -> bool,
) -> Relayed {
    let mut ticks = tokio::time::interval(BUS_PING);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Relayed::Silent };
                if on_message(message).is_break() {
                    return Relayed::Stopped;
                }
            }
            _ = ticks.tick() => {
                if !alive() {
                    return Relayed::Stopped;
                }
                let pong = tokio::time::timeout(patience, sink.ping::<Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Relayed::Silent;
                }
            }
        }
    }
}
