//! The message bus: a subscription to one channel, kept alive across lost and frozen servers.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;

use super::super::BusEvent;
use super::super::cluster::{self, Topology};
use super::subscription::{Relayed, relay, subscribe_on};

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
