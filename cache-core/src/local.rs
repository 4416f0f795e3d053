//! The optional in-process first tier in front of the store, kept coherent across processes
//! by invalidation notices on the store's message bus.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use moka::Expiry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::key::glob_matches;
use crate::store::BusEvent;

#[derive(Clone)]
struct Entry {
    bytes: Arc<Vec<u8>>,
    expires: Instant,
}

struct UntilDeadline;

impl Expiry<String, Entry> for UntilDeadline {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(entry.expires.saturating_duration_since(now))
    }
}

/// What one process tells the others to drop.
#[derive(Serialize, Deserialize)]
struct Notice {
    from: u64,
    keys: Vec<String>,
    patterns: Vec<String>,
}

pub(crate) struct Local {
    entries: moka::future::Cache<String, Entry>,
    ttl: Duration,
    /// Only while subscribed: a notice missed would leave a stale copy.
    active: AtomicBool,
    instance: u64,
    pub(crate) channel: String,
    pub(crate) hits: AtomicU64,
}

impl Local {
    pub(crate) fn new(max_bytes: u64, ttl: Duration, prefix: &str) -> Local {
        Local {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(UntilDeadline)
                .build(),
            ttl,
            active: AtomicBool::new(false),
            instance: crate::cache::random_u64(),
            channel: format!("{prefix}__cachemere:invalidate"),
            hits: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(key).await?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.bytes)
    }

    /// Keeps a copy for at most the local ttl and never past `ttl`, the store's.
    pub(crate) async fn put(&self, key: &str, bytes: Arc<Vec<u8>>, ttl: Duration) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let expires = Instant::now() + ttl.min(self.ttl);
        self.entries
            .insert(key.to_owned(), Entry { bytes, expires })
            .await;
    }

    pub(crate) async fn forget(&self, keys: &[String], patterns: &[String]) {
        for key in keys {
            self.entries.invalidate(key).await;
        }
        if patterns.is_empty() {
            return;
        }
        let matching: Vec<Arc<String>> = self
            .entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| patterns.iter().any(|pattern| glob_matches(pattern, key)))
            .collect();
        for key in matching {
            self.entries.invalidate(key.as_str()).await;
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
            while let Some(event) = events.recv().await {
                let Some(local) = local.upgrade() else {
                    return;
                };
                match event {
                    BusEvent::Subscribed | BusEvent::Interrupted => {
                        local.entries.invalidate_all();
                        let subscribed = matches!(event, BusEvent::Subscribed);
                        local.active.store(subscribed, Ordering::Release);
                    }
                    BusEvent::Message(payload) => {
                        match serde_json::from_slice::<Notice>(&payload) {
                            Ok(notice) if notice.from != local.instance => {
                                local.forget(&notice.keys, &notice.patterns).await;
                            }
                            Ok(_) => {}
                            Err(_) => local.entries.invalidate_all(),
                        }
                    }
                }
            }
        });
    }
}
