//! The one write path. Every value a [`Cache`] writes (`set`, `set_multi`, a computed
//! value, an early refresh, a late `get_or_refresh` computation, the macros) goes through
//! [`Cache::prepare`] (key check, codec, frame and stamp, seal) and [`Cache::commit`] (tag
//! index, store write, announce, local tier, last good), so that a rule of one of those
//! stages holds for every write.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cache::{Cache, now_millis};
use crate::error::{Error, Result};
use crate::fence::Over;
use crate::frame::{Builtin, Early, Stamp};
use crate::store::Expected;
use crate::telemetry::Event;
use crate::ttl::{SetOptions, Ttl};
use crate::typed::Entry;

/// A value ready to be written: its store key, bytes and ttl, and what it may replace.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) key: String,
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) ttl: Duration,
    /// Kept as the fail-safe's last good value once written.
    fail_safe: bool,
    over: Over,
}

impl Prepared {
    fn new(key: &str, bytes: Vec<u8>, ttl: Duration, fail_safe: bool) -> Prepared {
        Prepared {
            key: key.to_owned(),
            bytes: Arc::new(bytes),
            ttl,
            fail_safe,
            over: Over::Anything,
        }
    }

    /// The write, only over what `over` says the key holds (anything by default).
    pub(crate) fn over(mut self, over: Over) -> Prepared {
        self.over = over;
        self
    }
}

impl Cache {
    /// Writes a value that expires after `ttl` (a [`Duration`], an expiry class, `None` for
    /// the default class, or [`SetOptions`] to add tags).
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore, SetOptions, Ttl};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// # let cache = Cache::builder(MemoryStore::new()).build();
    /// cache.set("analytics:daily", &vec![1, 2, 3], Ttl::Short).await?;
    /// cache.set("grading:result:7", &"A+", Duration::from_secs(86_400)).await?;
    /// cache.set("class:students:3", &["ada", "alan"], None).await?;
    /// cache.set("user:profile:42", &"Ada", SetOptions::new(Ttl::Long).tags(["user:42"])).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: impl Into<SetOptions>,
    ) -> Result<()> {
        let options = options.into();
        let full = self.full_key(key);
        let prepared = self.prepare(&full, value, &options, options.stale_window(), None)?;
        self.commit(&[prepared], options.tag_names())
            .await
            .map(drop)
    }

    /// The ttl of a write to `key`, which must not be an internal key.
    pub(crate) fn ttl_for(&self, key: &str, ttl: impl Into<Ttl>) -> Result<Duration> {
        if crate::key::is_internal(key.as_bytes()) {
            return Err(Error::InvalidKey {
                key: key.to_owned(),
                reason: "`__cachemere:` is reserved for cachemere's locks and tag indexes",
            });
        }
        let duration = self.resolve_ttl(ttl);
        if duration < Duration::from_millis(1) {
            return Err(Error::InvalidTtl {
                key: key.to_owned(),
                ttl: duration,
            });
        }
        Ok(self.jittered(duration))
    }

    /// Key check, codec, frame and stamp, seal: a value ready for [`commit`](Cache::commit),
    /// with the ttl to write it with: the class's ttl,
    /// plus the fail-safe `window` when there is one (the value is then stamped fresh until
    /// the ttl ends). A computed value (`took` its computation time) written with early
    /// refresh on is stamped with its expiry and that time.
    pub(crate) fn prepare<T: Serialize + ?Sized>(
        &self,
        full_key: &str,
        value: &T,
        options: &SetOptions,
        window: Option<Duration>,
        took: Option<Duration>,
    ) -> Result<Prepared> {
        let ttl = self.ttl_for(full_key, options.ttl_class())?;
        let early = match (options.early_refresh_beta(), took) {
            (Some(beta), Some(took)) => Some(early_refresh_cost(beta, took)?),
            _ => None,
        };
        if window.is_none() && early.is_none() {
            let bytes = self.inner.format.encode(full_key, value)?;
            return Ok(Prepared::new(full_key, bytes, ttl, false));
        }
        if self.inner.format.builtin == Some(Builtin::Json) {
            return Err(match window {
                Some(window) => plain_json_refusal("stale_for", format!("{window:?}")),
                None => plain_json_refusal("early_refresh", "true".into()),
            });
        }
        let expires_at =
            now_millis().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let stamp = Stamp {
            fresh_until: window.map(|_| expires_at),
            early: early.map(|took_ms| Early {
                expires_at,
                took_ms,
            }),
        };
        let bytes = self.inner.format.encode_stamped(full_key, value, stamp)?;
        let ttl = ttl.saturating_add(window.unwrap_or_default());
        Ok(Prepared::new(full_key, bytes, ttl, window.is_some()))
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        if self.inner.jitter_percent == 0 {
            return ttl;
        }
        let fraction = (crate::random::random_u64() % 10_001) as f64 / 10_000.0;
        ttl.mul_f64(1.0 + fraction * f64::from(self.inner.jitter_percent) / 100.0)
    }

    /// Writes prepared values, tagged with `tags`: the tag index first (a tagged value is
    /// never untracked), then the store (one `SET`, `SET NX` or compare-and-set for one
    /// value, one pipeline for several, each only over what it may replace: see
    /// `fence.rs`), then the notice to other processes' local tiers, this process's local
    /// tier, and the fail-safe's last good copy, for the values written. Returns whether
    /// each value was written (`false` when a conditional write found something else, or
    /// came too late to tell).
    pub(crate) async fn commit(&self, all: &[Prepared], tags: &[String]) -> Result<Vec<bool>> {
        let fence = self.inner.fence;
        if !all.iter().any(|write| write.over.too_late(fence)) {
            return self.commit_timely(all, tags).await;
        }
        // A write over nothing that comes too late to tell is not sent at all.
        let timely: Vec<usize> = (0..all.len())
            .filter(|&index| !all[index].over.too_late(fence))
            .collect();
        let writes: Vec<Prepared> = timely.iter().map(|&index| all[index].clone()).collect();
        let late = all.len() - writes.len();
        self.inner.counters.count(Event::FencedWrite, late as u64);
        let written = self.commit_timely(&writes, tags).await?;
        let mut each = vec![false; all.len()];
        for (index, written) in timely.into_iter().zip(written) {
            each[index] = written;
        }
        Ok(each)
    }

    /// [`commit`](Cache::commit) of writes that are all in time.
    async fn commit_timely(&self, writes: &[Prepared], tags: &[String]) -> Result<Vec<bool>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        if !tags.is_empty() {
            let members: Vec<String> = writes.iter().map(|write| write.key.clone()).collect();
            let longest = writes
                .iter()
                .map(|write| write.ttl)
                .max()
                .unwrap_or_default();
            self.record_tags(&members, longest, tags).await?;
        }
        let written = self.write(writes).await;
        // A computed value is the last good one whether or not the store took it (the store
        // may be what is failing); a conditional write that lost its race is not.
        let kept: Vec<&Prepared> = match &written {
            Ok(written) => writes
                .iter()
                .zip(written)
                .filter(|(_, written)| **written)
                .map(|(write, _)| write)
                .collect(),
            Err(_) => writes
                .iter()
                .filter(|write| matches!(write.over, Over::Anything))
                .collect(),
        };
        self.remember_written(&kept).await;
        let written = self.counted(written)?;
        let stored: Vec<&Prepared> = writes
            .iter()
            .zip(&written)
            .filter(|(_, written)| **written)
            .map(|(write, _)| write)
            .collect();
        let refused = writes.len() - stored.len();
        if refused > 0 {
            self.inner
                .counters
                .count(Event::FencedWrite, refused as u64);
        }
        self.inner.counters.count(Event::Set, stored.len() as u64);
        if let Some(local) = self.inner.local.as_ref().filter(|_| !stored.is_empty()) {
            let keys: Vec<String> = stored.iter().map(|write| write.key.clone()).collect();
            self.announce(&keys, &[]).await;
            let written_at = std::time::Instant::now();
            for write in stored {
                let entry = Arc::new(Entry::shared(Arc::clone(&write.bytes)));
                local.put(&write.key, entry, write.ttl, written_at);
            }
        }
        Ok(written)
    }

    /// The store write of [`commit`](Cache::commit): whether each value was written.
    async fn write(&self, writes: &[Prepared]) -> Result<Vec<bool>> {
        let guarded = &self.inner.guarded;
        match writes {
            [] => Ok(Vec::new()),
            [one] => match &one.over {
                Over::Anything => guarded
                    .set(&one.key, &one.bytes, one.ttl)
                    .await
                    .map(|()| true),
                Over::Nothing { .. } => guarded.set_if_absent(&one.key, &one.bytes, one.ttl).await,
                Over::Bytes(current) => {
                    guarded
                        .replace_if_equals(&one.key, current, &one.bytes, one.ttl)
                        .await
                }
            }
            .map(|written| vec![written]),
            many if many
                .iter()
                .all(|write| matches!(write.over, Over::Anything)) =>
            {
                let items: Vec<(String, Vec<u8>, Duration)> = many
                    .iter()
                    .map(|write| (write.key.clone(), write.bytes.to_vec(), write.ttl))
                    .collect();
                guarded.mset(&items).await.map(|()| vec![true; many.len()])
            }
            many => {
                let items: Vec<(&str, &[u8], Duration, Expected<'_>)> = many
                    .iter()
                    .map(|write| {
                        let expected = match &write.over {
                            Over::Anything => Expected::Anything,
                            Over::Nothing { .. } => Expected::Nothing,
                            Over::Bytes(current) => Expected::Bytes(current),
                        };
                        (
                            write.key.as_str(),
                            write.bytes.as_slice(),
                            write.ttl,
                            expected,
                        )
                    })
                    .collect();
                guarded.set_many_if(&items).await
            }
        }
    }

    async fn remember_written(&self, writes: &[&Prepared]) {
        for write in writes.iter().filter(|write| write.fail_safe) {
            self.inner
                .last_good
                .insert(write.key.clone(), Arc::clone(&write.bytes));
        }
    }
}

pub(crate) fn plain_json_refusal(name: &'static str, value: String) -> Error {
    Error::Config {
        name,
        value,
        reason: format!(
            "the Json codec writes plain JSON for other languages to read, and `{name}` would \
             add a binary header (a freshness stamp) to every value; use Bincode (or another \
             codec) for it"
        ),
    }
}

/// An early-refresh computation time in milliseconds, rounded up, once `beta` is checked.
fn early_refresh_cost(beta: f64, took: Duration) -> Result<u32> {
    if !(beta.is_finite() && beta > 0.0) {
        return Err(Error::Config {
            name: "beta",
            value: beta.to_string(),
            reason: "early refresh needs a finite beta above 0 (1.0 unless tuned)".into(),
        });
    }
    Ok(u32::try_from(took.as_micros().div_ceil(1000)).unwrap_or(u32::MAX))
}
