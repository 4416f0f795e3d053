//! Invalidations that could not reach the store, kept in order and replayed once it answers,
//! so that no write's invalidation is ever lost to an outage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::key::glob_matches;
use crate::local::Local;
use crate::store::Store;
use crate::telemetry::{Event, Gauge, Meter};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(1);
const DELETE_BATCH: usize = 1000;

/// One invalidation waiting for the store. Keys, patterns and tag indexes are store keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Pending {
    Key(String),
    Pattern(String),
    Tag(String),
    /// Only the local-tier notice is missing (the store's copy is already gone).
    Notice {
        keys: Vec<String>,
        patterns: Vec<String>,
    },
    /// Invalidations were dropped when the queue overflowed: everything under the prefix goes.
    Sweep,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Pending>,
    /// How many copies of each entry wait: one, or two when an equal one came in while the
    /// first was being applied.
    queued: HashMap<Pending, usize>,
    /// The front entries being applied now. An equal invalidation that comes in meanwhile is
    /// queued again: the replay may already have passed what it must remove.
    in_flight: HashSet<Pending>,
    patterns: Vec<String>,
    tags: usize,
    overflowed: bool,
}

impl Queue {
    fn push(&mut self, pending: Pending) {
        let copies = self.queued.get(&pending).copied().unwrap_or(0);
        if copies > usize::from(self.in_flight.contains(&pending)) {
            return;
        }
        self.push_copy(pending);
    }

    fn push_copy(&mut self, pending: Pending) {
        match &pending {
            Pending::Pattern(pattern) => self.patterns.push(pattern.clone()),
            Pending::Tag(_) => self.tags += 1,
            _ => {}
        }
        *self.queued.entry(pending.clone()).or_default() += 1;
        self.entries.push_back(pending);
    }

    fn contains(&self, pending: &Pending) -> bool {
        self.queued.contains_key(pending)
    }

    fn pop_front(&mut self) -> Option<Pending> {
        let pending = self.entries.pop_front()?;
        if let Some(copies) = self.queued.get_mut(&pending) {
            *copies -= 1;
            if *copies == 0 {
                self.queued.remove(&pending);
            }
        }
        match &pending {
            Pending::Pattern(pattern) => {
                if let Some(at) = self.patterns.iter().position(|p| p == pattern) {
                    self.patterns.swap_remove(at);
                }
            }
            Pending::Tag(_) => self.tags -= 1,
            Pending::Sweep => self.overflowed = false,
            _ => {}
        }
        Some(pending)
    }
}

/// The queue of one cache, and its replay.
pub(crate) struct Recovery {
    store: Arc<dyn Store>,
    deadline: Option<Duration>,
    capacity: usize,
    sweep_pattern: String,
    /// Without a prefix there is nothing to sweep that is the cache's alone (sessions may
    /// share the database): an overflow then makes every read a miss for `lifetime`, the
    /// longest a value the cache writes lives.
    lifetime: Duration,
    /// How long a replayed key invalidation fences its key, as the cache's own do.
    fence: Option<Duration>,
    blind_until: Mutex<Option<Instant>>,
    timed_blind: AtomicBool,
    local: Option<Arc<Local>>,
    queue: Mutex<Queue>,
    /// `queue.entries.len()`, readable without the lock on every cache read.
    pending: AtomicUsize,
    /// A tag invalidation or an overflow is pending: no key can be cleared, every read misses.
    blind: AtomicBool,
    replaying: tokio::sync::Mutex<()>,
    retrying: AtomicBool,
    pub(crate) recovered: AtomicU64,
    pub(crate) overflows: AtomicU64,
    meter: Meter,
}

impl Recovery {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        deadline: Option<Duration>,
        capacity: usize,
        prefix: &str,
        lifetime: Duration,
        local: Option<Arc<Local>>,
        meter: Meter,
    ) -> Recovery {
        Recovery {
            store,
            deadline,
            capacity: capacity.max(1),
            sweep_pattern: if prefix.is_empty() {
                String::new()
            } else {
                format!("{}*", crate::key::escape_glob(prefix))
            },
            lifetime,
            fence: None,
            blind_until: Mutex::new(None),
            timed_blind: AtomicBool::new(false),
            local,
            queue: Mutex::default(),
            pending: AtomicUsize::new(0),
            blind: AtomicBool::new(false),
            replaying: tokio::sync::Mutex::new(()),
            retrying: AtomicBool::new(false),
            recovered: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            meter,
        }
    }

    /// Replays key invalidations with a fence of `window`, as the cache makes them.
    pub(crate) fn fenced(mut self, window: Option<Duration>) -> Recovery {
        self.fence = window;
        self
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Invalidations waiting for the store.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire) as u64
    }

    fn publish_state(&self, queue: &Queue) {
        self.blind
            .store(queue.tags > 0 || queue.overflowed, Ordering::Release);
        self.pending.store(queue.entries.len(), Ordering::Release);
        self.meter
            .gauge(Gauge::PendingInvalidations, queue.entries.len() as f64);
    }

    /// Whether a read of `key` must be a miss because an invalidation that may cover it has
    /// not reached the store yet.
    #[inline]
    pub(crate) fn hides(&self, key: &str) -> bool {
        self.is_hiding() && self.hides_pending(key)
    }

    /// Whether any key may be hidden now (`false` on the usual path: nothing pending).
    #[inline]
    pub(crate) fn is_hiding(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0 || self.timed_blind.load(Ordering::Acquire)
    }

    #[cold]
    fn hides_pending(&self, key: &str) -> bool {
        if self.timed_blind.load(Ordering::Acquire) {
            let mut until = self.blind_until.lock().unwrap_or_else(|p| p.into_inner());
            match *until {
                Some(at) if Instant::now() < at => return true,
                _ => {
                    *until = None;
                    self.timed_blind.store(false, Ordering::Release);
                }
            }
        }
        if self.blind.load(Ordering::Acquire) {
            return true;
        }
        let queue = self.queue();
        queue.contains(&Pending::Key(key.to_owned()))
            || queue
                .patterns
                .iter()
                .any(|pattern| glob_matches(pattern, key))
    }

    /// Keeps invalidations that failed, in order, and makes sure they are retried.
    pub(crate) fn keep(self: &Arc<Self>, invalidations: impl IntoIterator<Item = Pending>) {
        {
            let mut queue = self.queue();
            for pending in invalidations {
                if queue.overflowed && !matches!(pending, Pending::Notice { .. }) {
                    continue;
                }
                if queue.entries.len() >= self.capacity {
                    self.overflow(&mut queue);
                    continue;
                }
                queue.push(pending);
            }
            self.publish_state(&queue);
        }
        self.retry_in_background();
    }

    fn overflow(&self, queue: &mut Queue) {
        let dropped = queue.entries.len();
        *queue = Queue::default();
        self.overflows.fetch_add(1, Ordering::Relaxed);
        self.meter.count(Event::InvalidationOverflow, 1);
        if self.sweep_pattern.is_empty() {
            *self.blind_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + self.lifetime);
            self.timed_blind.store(true, Ordering::Release);
            tracing::error!(
                dropped,
                capacity = self.capacity,
                misses_for = ?self.lifetime,
                "too many invalidations wait for the store, and a cache without a key prefix \
                 cannot sweep its own keys without touching others' (sessions, say): every read \
                 of this process is a miss until every value written before has expired, and \
                 other instances may read replaced values until their ttl; give the cache a prefix"
            );
            return;
        }
        queue.push(Pending::Sweep);
        queue.overflowed = true;
        tracing::error!(
            dropped,
            capacity = self.capacity,
            pattern = %self.sweep_pattern,
            "too many invalidations wait for the store: every read is a miss until it answers, \
             then every key matching the pattern is removed"
        );
    }

    /// Replays the queue in order until it is empty (`true`) or the store fails (`false`).
    pub(crate) async fn replay(&self) -> bool {
        if self.pending() == 0 {
            return true;
        }
        let _replaying = self.replaying.lock().await;
        loop {
            let batch: Vec<Pending> = {
                let mut queue = self.queue();
                let mut entries = queue.entries.iter();
                let batch: Vec<Pending> = match entries.next() {
                    None => return true,
                    Some(first @ Pending::Key(_)) => std::iter::once(first)
                        .chain(entries.take_while(|next| matches!(next, Pending::Key(_))))
                        .take(DELETE_BATCH)
                        .cloned()
                        .collect(),
                    Some(first) => vec![first.clone()],
                };
                queue.in_flight = batch.iter().cloned().collect();
                batch
            };
            let outcome = self.apply(&batch).await;
            let mut queue = self.queue();
            queue.in_flight.clear();
            let still_first = queue.entries.iter().take(batch.len()).eq(batch.iter());
            match outcome {
                Ok(()) if !still_first => {}
                Ok(()) => {
                    for _ in 0..batch.len() {
                        queue.pop_front();
                    }
                    self.recovered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.meter
                        .count(Event::RecoveredInvalidation, batch.len() as u64);
                    self.publish_state(&queue);
                }
                Err(Unapplied { error, rest }) => {
                    if let Some(rest) = rest.filter(|_| still_first) {
                        queue.pop_front();
                        for pending in rest.into_iter().rev() {
                            if !queue.contains(&pending) {
                                queue.push_copy(pending);
                                if let Some(pending) = queue.entries.pop_back() {
                                    queue.entries.push_front(pending);
                                }
                            }
                        }
                        self.publish_state(&queue);
                    }
                    tracing::debug!(error = %error, "replaying invalidations: the store still fails");
                    return false;
                }
            }
        }
    }

    async fn apply(&self, batch: &[Pending]) -> std::result::Result<(), Unapplied> {
        let failed = |error| Unapplied { error, rest: None };
        match batch {
            [Pending::Tag(tag_key)] => {
                let members = self.store.take_tagged(tag_key).await.map_err(failed)?;
                let mut done = 0;
                for chunk in members.chunks(DELETE_BATCH) {
                    if let Err(error) = self.unlink(chunk).await {
                        let rest = members[done..].iter().cloned().map(Pending::Key).collect();
                        return Err(Unapplied {
                            error,
                            rest: Some(rest),
                        });
                    }
                    done += chunk.len();
                }
                self.announce(&members, &[])
                    .await
                    .map_err(|error| Unapplied {
                        error,
                        rest: Some(vec![Pending::Notice {
                            keys: members.clone(),
                            patterns: Vec::new(),
                        }]),
                    })
            }
            [Pending::Pattern(pattern)] => {
                crate::fence::remove_matching(&*self.store, pattern, self.fence)
                    .await
                    .map_err(failed)?;
                self.announce(&[], std::slice::from_ref(pattern))
                    .await
                    .map_err(failed)
            }
            [Pending::Sweep] => {
                crate::fence::remove_matching(&*self.store, &self.sweep_pattern, self.fence)
                    .await
                    .map_err(failed)?;
                self.announce(&[], std::slice::from_ref(&self.sweep_pattern))
                    .await
                    .map_err(failed)
            }
            [Pending::Notice { keys, patterns }] => {
                self.announce(keys, patterns).await.map_err(failed)
            }
            keys => {
                let keys: Vec<String> = keys
                    .iter()
                    .filter_map(|pending| match pending {
                        Pending::Key(key) => Some(key.clone()),
                        _ => None,
                    })
                    .collect();
                self.unlink(&keys).await.map_err(failed)?;
                self.announce(&keys, &[]).await.map_err(failed)
            }
        }
    }

    /// Removes `keys` and, alongside, their tag records. Only the keys decide the outcome: a
    /// record on a cluster node that is down must not keep a replayed key waiting (it
    /// expires with its key's old ttl).
    async fn unlink(&self, keys: &[String]) -> Result<()> {
        let records: Vec<String> = keys
            .iter()
            .map(|key| crate::key::tags_record_of(key))
            .collect();
        let (removed, records) = futures_util::future::join(
            self.bounded(crate::fence::remove(&*self.store, keys, self.fence)),
            self.bounded(self.store.delete_many(&records)),
        )
        .await;
        if let Err(err) = records {
            tracing::debug!(error = %err, "replaying invalidations: tag records not removed");
        }
        removed.map(drop)
    }

    async fn announce(&self, keys: &[String], patterns: &[String]) -> Result<()> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let notice = local.notice(keys, patterns);
        self.bounded(self.store.publish(&local.channel, &notice))
            .await
    }

    async fn bounded<T>(&self, request: impl Future<Output = Result<T>>) -> Result<T> {
        match self.deadline {
            Some(after) => {
                tokio::time::timeout(after, request)
                    .await
                    .unwrap_or(Err(Error::Timeout {
                        operation: "replay",
                        after,
                    }))
            }
            None => request.await,
        }
    }

    /// Retries the replay with backoff in a background task until the queue is empty.
    fn retry_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let recovery: Weak<Recovery> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut wait = FIRST_RETRY;
            loop {
                tokio::time::sleep(wait).await;
                let Some(recovery) = recovery.upgrade() else {
                    return;
                };
                if recovery.replay().await {
                    recovery.retrying.store(false, Ordering::Release);
                    if recovery.pending() == 0 || recovery.retrying.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
                wait = (wait * 2).min(LAST_RETRY);
            }
        });
    }
}

struct Unapplied {
    error: Error,
    /// What replaces the entry when part of it was applied.
    rest: Option<Vec<Pending>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_equal_invalidation_is_queued_again_only_while_its_twin_is_applied() {
        let key = || Pending::Key("user:1".into());
        let mut queue = Queue::default();
        queue.push(key());
        queue.push(key());
        assert_eq!(queue.entries.len(), 1, "a waiting twin covers it");

        queue.in_flight.insert(key());
        queue.push(key());
        queue.push(key());
        assert_eq!(
            queue.entries.len(),
            2,
            "one more copy, after the one being applied"
        );
        queue.in_flight.clear();

        assert_eq!(queue.pop_front(), Some(key()));
        assert!(
            queue.contains(&key()),
            "the second copy still hides the key"
        );
        assert_eq!(queue.pop_front(), Some(key()));
        assert!(!queue.contains(&key()));
    }
}
