//! The message bus: a subscription to one channel, kept alive across lost and frozen servers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
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
    /// cluster bus), then the seeds in turn; under Sentinel, the current primary.
    async fn subscribe(&self) -> Option<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
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
