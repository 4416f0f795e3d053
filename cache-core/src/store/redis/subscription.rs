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

/// The wait before a lost subscription is made again: 50 ms, doubling up to 2 s while
/// attempts fail, 50 ms again once one succeeds.
pub(super) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const LONGEST: Duration = Duration::from_secs(2);

    pub(super) fn new() -> Backoff {
        Backoff(Backoff::FIRST)
    }

    /// An attempt succeeded: the next failure waits the shortest time again.
    pub(super) fn reset(&mut self) {
        self.0 = Backoff::FIRST;
    }

    /// An attempt failed: waits, and doubles the next wait.
    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }

    /// The wait due now; the next one is twice as long, up to [`Backoff::LONGEST`].
    fn advance(&mut self) -> Duration {
        let now = self.0;
        self.0 = (now * 2).min(Backoff::LONGEST);
        now
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_longest_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u64> = (0..8)
            .map(|_| u64::try_from(backoff.advance().as_millis()).expect("ms"))
            .collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.advance(), Duration::from_millis(50));
    }
}
