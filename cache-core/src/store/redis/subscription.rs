//! A subscription kept alive: made within a patience, its server pinged every
//! [`BUS_PING`], given up when it goes silent. The message bus (`bus.rs`) and the Sentinel
//! `+switch-master` watch (`sentinel.rs`) both listen through it.

use std::ops::ControlFlow;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, RedisResult, Value};

/// How often a subscription checks that its server still answers.
pub(super) const BUS_PING: Duration = Duration::from_secs(1);

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

/// Ticks every [`BUS_PING`], the first one a ping's interval from now: when a kept-alive
/// subscription pings its server.
pub(super) async fn ping_ticks() -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(BUS_PING);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    ticks
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
    let mut ticks = ping_ticks().await;
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
