//! In-process single flight: concurrent misses on one key share one computation.
//!
//! The first caller for a key becomes the leader and computes; the others follow and receive
//! the leader's published outcome. A leader that is cancelled drops its sender without
//! publishing, and every follower then competes to lead again, so nobody is stranded.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// What a leader hands to its followers.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The computed value, encoded: followers decode it, so values need not be `Clone`.
    Encoded(Arc<Vec<u8>>),
    /// The factory failed with an error that followers receive too.
    Failed(Shared),
    /// Nothing to share: each follower computes on its own.
    Alone,
    /// The source has no value for the key (a batch loader left it out): a batch follower
    /// takes it as absent, a single-key follower computes on its own.
    Absent,
}

#[derive(Default)]
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    Follower(watch::Receiver<Option<Outcome>>),
}

pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    sender: watch::Sender<Option<Outcome>>,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<Option<Outcome>>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a computation of `key` is running.
    pub(crate) fn is_running(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut in_flight = self.lock();
        if let Some(receiver) = in_flight.get(key) {
            return Role::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        in_flight.insert(key.to_owned(), receiver);
        Role::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            sender,
        })
    }
}

impl Leader<'_> {
    /// Hands the outcome to every follower.
    pub(crate) fn publish(&self, outcome: Outcome) {
        self.sender.send_replace(Some(outcome));
    }

    /// Takes no more followers: a caller from now on reads the store itself (and leads a
    /// flight of its own if it misses), while those already following still get the
    /// outcome. A leader closes before it writes its value: a caller that comes after an
    /// invalidation which the write preceded must not get the value from the flight (see
    /// `fence.rs`).
    pub(crate) fn close(&self) {
        let mut in_flight = self.flights.lock();
        if in_flight
            .get(&self.key)
            .is_some_and(|receiver| receiver.same_channel(&self.sender.subscribe()))
        {
            in_flight.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for the leader; `None` means it was cancelled before publishing.
pub(crate) async fn follow(mut receiver: watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    match receiver.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}
