//! The optional in-process first tier in front of the store, kept coherent across processes
//! by invalidation notices on the store's message bus.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::key::glob_matches;
use crate::store::BusEvent;
use crate::telemetry::{Event, Gauge, Meter};
use crate::typed;

#[derive(Clone)]
struct Entry {
    /// The bytes, and the value a typed read decoded from them.
    kept: Arc<typed::Entry>,
    expires: Instant,
}

/// What one process tells the others to drop.
#[derive(Serialize, Deserialize)]
struct Notice {
    from: u64,
    keys: Vec<String>,
    patterns: Vec<String>,
}

/// How often the tier's size gauge is updated.
const SIZE_REPORT: Duration = Duration::from_secs(1);

/// How long a notice keeps reads that started before it from filling the tier.
const NOTICE_MEMORY: Duration = Duration::from_secs(30);

/// How the local tier learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalMode {
    /// From the server: every change any client makes to the cache's keys (Redis
    /// `CLIENT TRACKING`), and cachemere's own notices.
    Tracking,
    /// From cachemere's own notices (pub/sub): writes by other programs are not seen.
    Notices,
    /// Not connected: the tier serves nothing (or, within
    /// [`local_cache_stale_window`](crate::CacheBuilder::local_cache_stale_window) of the loss,
    /// copies it already had, counted in
    /// [`CacheStats::local_stale_hits`](crate::CacheStats::local_stale_hits)).
    Disconnected,
}

pub(crate) struct Local {
    entries: moka::sync::Cache<String, Entry>,
    /// When each key was last invalidated, so that a read that raced the notice does not
    /// store the value it read before it.
    invalidated: moka::sync::Cache<String, Instant>,
    invalidated_patterns: Mutex<Vec<(String, Instant)>>,
    cleared: Mutex<Instant>,
    ttl: Duration,
    /// Only while subscribed: a notice missed would leave a stale copy.
    active: AtomicBool,
    /// Whether the subscription reports every client's changes (`CLIENT TRACKING`).
    tracking: AtomicBool,
    /// How long copies are still served after the subscription is lost.
    stale_window: Duration,
    /// Until when, after a loss, copies are still served.
    stale_until: Mutex<Option<Instant>>,
    pub(crate) stale_hits: AtomicU64,
    instance: u64,
    pub(crate) channel: String,
    pub(crate) hits: AtomicU64,
    meter: Meter,
}

impl Local {
    pub(crate) fn new(
        max_bytes: u64,
        ttl: Duration,
        stale_window: Duration,
        prefix: &str,
        meter: Meter,
    ) -> Local {
        Local {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.kept.bytes.len()).unwrap_or(u32::MAX)
                })
                // the tier's ttl for every copy, each copy's own deadline checked as it is
                // read (moka's per-entry expiry costs every read more than that check)
                .time_to_live(ttl)
                .build(),
            invalidated: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(NOTICE_MEMORY)
                .build(),
            invalidated_patterns: Mutex::new(Vec::new()),
            cleared: Mutex::new(Instant::now()),
            ttl,
            active: AtomicBool::new(false),
            tracking: AtomicBool::new(false),
            stale_window,
            stale_until: Mutex::new(None),
            stale_hits: AtomicU64::new(0),
            instance: crate::random::random_u64(),
            channel: format!("{prefix}__cachemere:invalidate"),
            hits: AtomicU64::new(0),
            meter,
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether reads may be answered: while subscribed, or within the stale window after a
    /// loss.
    #[inline]
    pub(crate) fn may_serve(&self) -> bool {
        self.is_active() || lock(&self.stale_until).is_some_and(|until| Instant::now() < until)
    }

    pub(crate) fn mode(&self) -> LocalMode {
        match (self.is_active(), self.tracking.load(Ordering::Acquire)) {
            (true, true) => LocalMode::Tracking,
            (true, false) => LocalMode::Notices,
            (false, _) => LocalMode::Disconnected,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<typed::Entry>> {
        if !self.active.load(Ordering::Acquire) {
            return self.get_stale(key);
        }
        let entry = self.live(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.meter.count(Event::LocalHit, 1);
        Some(entry.kept)
    }

    /// The copy of `key`, unless it is past its deadline (the store's ttl when it was read).
    #[inline]
    fn live(&self, key: &str) -> Option<Entry> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires > Instant::now())
    }

    /// A copy kept from before the subscription was lost, within the stale window.
    fn get_stale(&self, key: &str) -> Option<Arc<typed::Entry>> {
        let until = (*lock(&self.stale_until))?;
        if Instant::now() >= until {
            return None;
        }
        let entry = self.live(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.stale_hits.fetch_add(1, Ordering::Relaxed);
        self.meter.count(Event::LocalHit, 1);
        self.meter.count(Event::LocalStaleHit, 1);
        Some(entry.kept)
    }

    /// Keeps a copy for at most the local ttl and never past `ttl`, the store's, unless the
    /// key was invalidated after `read_at`, when the value was read.
    pub(crate) fn put(&self, key: &str, kept: Arc<typed::Entry>, ttl: Duration, read_at: Instant) {
        if !self.active.load(Ordering::Acquire) || self.invalidated_since(key, read_at) {
            return;
        }
        let expires = Instant::now() + ttl.min(self.ttl);
        self.entries.insert(key.to_owned(), Entry { kept, expires });
    }

    /// Reports the tier's size (`cachemere.cache.local.size`) every [`SIZE_REPORT`] for as
    /// long as the cache lives. Read right after an insert, moka's weighted size lags until
    /// its pending maintenance has run (the gauge read 0 for seconds while values were
    /// served), so the reporter runs that maintenance first.
    pub(crate) fn report_size(self: &Arc<Self>) {
        if !self.meter.times() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let local: Weak<Local> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SIZE_REPORT).await;
                let Some(local) = local.upgrade() else {
                    return;
                };
                local.entries.run_pending_tasks();
                local
                    .meter
                    .gauge(Gauge::LocalSize, local.entries.weighted_size() as f64);
            }
        });
    }

    fn invalidated_since(&self, key: &str, read_at: Instant) -> bool {
        if *lock(&self.cleared) >= read_at {
            return true;
        }
        if self.invalidated.get(key).is_some_and(|at| at >= read_at) {
            return true;
        }
        lock(&self.invalidated_patterns)
            .iter()
            .any(|(pattern, at)| *at >= read_at && glob_matches(pattern, key))
    }

    fn clear(&self) {
        *lock(&self.cleared) = Instant::now();
        self.entries.invalidate_all();
    }

    pub(crate) fn forget(&self, keys: &[String], patterns: &[String]) {
        let now = Instant::now();
        for key in keys {
            self.invalidated.insert(key.clone(), now);
            self.entries.invalidate(key);
        }
        if patterns.is_empty() {
            return;
        }
        {
            let mut recent = lock(&self.invalidated_patterns);
            recent.retain(|(_, at)| at.elapsed() < NOTICE_MEMORY);
            recent.extend(patterns.iter().map(|pattern| (pattern.clone(), now)));
        }
        let matching: Vec<Arc<String>> = self
            .entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| patterns.iter().any(|pattern| glob_matches(pattern, key)))
            .collect();
        for key in matching {
            self.entries.invalidate(key.as_str());
        }
    }

    /// The notice to publish so that other processes forget `keys` and `patterns`.
    pub(crate) fn notice(&self, keys: &[String], patterns: &[String]) -> Vec<u8> {
        let notice = Notice {
            from: self.instance,
            keys: keys.to_vec(),
            patterns: patterns.to_vec(),
        };
        serde_json::to_vec(&notice).unwrap_or_default()
    }

    /// Applies other processes' notices; clears everything whenever notices may have been
    /// missed. Ends when the cache is dropped.
    pub(crate) fn listen(self: &Arc<Self>, mut events: UnboundedReceiver<BusEvent>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let local: Weak<Local> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(stale_until) = local.upgrade().map(|local| *lock(&local.stale_until))
                else {
                    return;
                };
                let event = match stale_until {
                    Some(until) => tokio::select! {
                        event = events.recv() => event,
                        () = tokio::time::sleep_until(until.into()) => {
                            if let Some(local) = local.upgrade() {
                                local.end_stale_window();
                            }
                            continue;
                        }
                    },
                    None => events.recv().await,
                };
                let (Some(event), Some(local)) = (event, local.upgrade()) else {
                    return;
                };
                match event {
                    BusEvent::Subscribed => {
                        local.clear();
                        *lock(&local.stale_until) = None;
                        local.tracking.store(false, Ordering::Release);
                        local.active.store(true, Ordering::Release);
                    }
                    BusEvent::Interrupted => local.lose(),
                    BusEvent::Tracking => local.tracking.store(true, Ordering::Release),
                    BusEvent::Changed(keys) => local.forget(&keys, &[]),
                    BusEvent::ChangedAll => local.clear(),
                    BusEvent::Message(payload) => {
                        match serde_json::from_slice::<Notice>(&payload) {
                            Ok(notice) if notice.from != local.instance => {
                                local.forget(&notice.keys, &notice.patterns);
                            }
                            Ok(_) => {}
                            Err(_) => local.clear(),
                        }
                    }
                }
            }
        });
    }

    /// The subscription is lost: changes may be missed from now on. Without a stale window
    /// every copy goes at once; with one, the copies already kept are still served (and
    /// counted) until it ends.
    fn lose(&self) {
        self.active.store(false, Ordering::Release);
        self.tracking.store(false, Ordering::Release);
        match self.stale_window.is_zero() {
            true => self.clear(),
            false => *lock(&self.stale_until) = Some(Instant::now() + self.stale_window),
        }
    }

    fn end_stale_window(&self) {
        *lock(&self.stale_until) = None;
        self.clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> Local {
        let local = Local::new(
            1 << 20,
            Duration::from_secs(60),
            Duration::ZERO,
            "",
            Meter::new("test", "none", &crate::telemetry::Place::default()),
        );
        local.active.store(true, Ordering::Release);
        local
    }

    #[test]
    fn a_copy_is_served_until_its_deadline_and_never_after() {
        let local = active();
        for round in 0..20u32 {
            let ttl = Duration::from_micros(500 + 150 * u64::from(round));
            let put_from = Instant::now();
            local.put("k", Arc::new(typed::Entry::new(vec![1])), ttl, put_from);
            let put_by = Instant::now();
            loop {
                let asked = Instant::now();
                let found = local.get("k");
                let answered = Instant::now();
                match found {
                    Some(_) => assert!(asked < put_by + ttl, "served past its deadline"),
                    None => {
                        assert!(answered >= put_from + ttl, "expired early");
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_kept() {
        let local = active();
        let read_at = Instant::now();
        local.forget(&["k".to_owned()], &[]);
        local.put(
            "k",
            Arc::new(typed::Entry::new(vec![1])),
            Duration::from_secs(60),
            read_at,
        );
        assert!(local.get("k").is_none(), "the value read before the notice");
        local.put(
            "k",
            Arc::new(typed::Entry::new(vec![2])),
            Duration::from_secs(60),
            Instant::now(),
        );
        assert_eq!(
            local.get("k").map(|kept| kept.bytes.to_vec()),
            Some(vec![2])
        );
    }

    #[test]
    fn patterns_and_clears_also_fence_older_reads() {
        let local = active();
        let read_at = Instant::now();
        local.forget(&[], &["user:*".to_owned()]);
        local.put(
            "user:1",
            Arc::new(typed::Entry::new(vec![1])),
            Duration::from_secs(60),
            read_at,
        );
        local.put(
            "class:1",
            Arc::new(typed::Entry::new(vec![1])),
            Duration::from_secs(60),
            read_at,
        );
        assert!(local.get("user:1").is_none());
        assert!(local.get("class:1").is_some(), "other keys are not fenced");
        let read_at = Instant::now();
        local.clear();
        local.put(
            "class:2",
            Arc::new(typed::Entry::new(vec![1])),
            Duration::from_secs(60),
            read_at,
        );
        assert!(local.get("class:2").is_none());
    }
}
