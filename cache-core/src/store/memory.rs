use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::{KeyTtl, Store};
use crate::error::{Error, Result};
use crate::health::HealthReport;
use crate::key::{glob_matches, is_internal};
use crate::typed::Entry;

const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// An in-process [`Store`] on a [`moka`] cache: the embedded default when no Redis is
/// configured, and a drop-in for tests.
///
/// Entries expire by their own ttl and the least useful ones are evicted once the weighed size
/// (key plus value bytes) passes the capacity. Data lives as long as the process and is not
/// shared between processes.
///
/// A [`Cache`](crate::Cache) on this store keeps the value a `#[cache_result]` hit decoded
/// beside its bytes, when the value's type is `Clone + Send + Sync + 'static`, so that later
/// hits copy it instead of decoding (a write or delete of the key drops it). The capacity
/// weighs the bytes only: a value kept decoded takes about as much again.
///
/// ```
/// use cache_core::{MemoryStore, Store};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
/// let store = MemoryStore::new();
/// store.set("greeting", b"hello", Duration::from_secs(60)).await?;
/// assert_eq!(store.get("greeting").await?, Some(b"hello".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    entries: Cache<String, Slot>,
    attachments: Arc<Attachments>,
}

type Attachments = std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>;

#[derive(Clone)]
struct Slot {
    value: Value,
    expires_at: Instant,
}

#[derive(Clone)]
enum Value {
    Bytes(Arc<Entry>),
    Hash(Arc<HashMap<String, Vec<u8>>>),
    List(Arc<VecDeque<Vec<u8>>>),
    Set(Arc<HashSet<Vec<u8>>>),
    Tag(Arc<HashMap<String, Instant>>),
}

impl Value {
    fn bytes(value: &[u8]) -> Value {
        Value::Bytes(Arc::new(Entry::new(value.to_vec())))
    }
}

enum Change {
    Keep,
    Put(Slot),
    Remove,
}

struct SlotExpiry;

impl Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &String, slot: &Slot, now: Instant) -> Option<Duration> {
        Some(slot.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.expires_at.saturating_duration_since(now))
    }
}

impl Slot {
    fn new(value: Value, ttl: Duration) -> Slot {
        Slot {
            value,
            expires_at: deadline(ttl),
        }
    }

    fn weight(&self) -> usize {
        match &self.value {
            Value::Bytes(entry) => entry.bytes.len(),
            Value::Hash(hash) => hash.iter().map(|(f, v)| f.len() + v.len()).sum(),
            Value::List(list) => list.iter().map(Vec::len).sum(),
            Value::Set(set) => set.iter().map(Vec::len).sum(),
            Value::Tag(members) => members.keys().map(|m| m.len() + 16).sum(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .field("weighted_bytes", &self.entries.weighted_size())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding up to 256 MiB of keys and values.
    pub fn new() -> MemoryStore {
        MemoryStore::with_max_bytes(DEFAULT_MAX_BYTES)
    }

    /// A store holding up to `max_bytes` of keys and values before it evicts.
    pub fn with_max_bytes(max_bytes: u64) -> MemoryStore {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, slot: &Slot| {
                u32::try_from(key.len() + slot.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(SlotExpiry)
            .build();
        MemoryStore {
            entries,
            attachments: Arc::default(),
        }
    }

    /// State of type `T` kept beside this store's entries: created on first use, shared by
    /// every clone of the store, and never evicted or expired by it (it lives as long as the
    /// store). A layer above the store keeps data here that must not compete with cached
    /// values for the capacity: `cache_session` keeps its sessions here.
    ///
    /// ```
    /// use cache_core::MemoryStore;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let store = MemoryStore::with_max_bytes(1024);
    /// store.attachment::<AtomicU64>().fetch_add(1, Ordering::Relaxed);
    /// assert_eq!(store.clone().attachment::<AtomicU64>().load(Ordering::Relaxed), 1);
    /// ```
    pub fn attachment<T: Any + Default + Send + Sync>(&self) -> Arc<T> {
        let mut attachments = self
            .attachments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shared = attachments
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        drop(attachments);
        match shared.downcast::<T>() {
            Ok(typed) => typed,
            Err(_) => Arc::new(T::default()),
        }
    }

    /// The string value under `key` as kept, for a typed read that copies its decoded value
    /// instead of decoding the bytes each time.
    #[inline]
    pub(crate) fn entry(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(None),
            Some(Value::Bytes(entry)) => Ok(Some(entry)),
            Some(_) => Err(wrong_type(key, "GET")),
        }
    }

    /// The slot of `key` unless it has expired: moka sets an entry's expiry from
    /// [`SlotExpiry`] as it inserts it, and a read past it finds nothing (its expiry is kept
    /// to 4 µs, rounded down: an entry never outlives its deadline).
    #[inline]
    fn live(&self, key: &str) -> Option<Slot> {
        self.entries.get(key)
    }

    async fn modify<R>(
        &self,
        key: &str,
        change: impl FnOnce(Option<&Slot>) -> Result<(Change, R)>,
    ) -> Result<R> {
        let mut outcome = None;
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let now = Instant::now();
                let live = current
                    .as_ref()
                    .map(|entry| entry.value())
                    .filter(|slot| slot.expires_at > now);
                match change(live) {
                    Ok((Change::Keep, result)) => {
                        outcome = Some(Ok(result));
                        Op::Nop
                    }
                    Ok((Change::Put(slot), result)) => {
                        outcome = Some(Ok(result));
                        Op::Put(slot)
                    }
                    Ok((Change::Remove, result)) => {
                        outcome = Some(Ok(result));
                        Op::Remove
                    }
                    Err(err) => {
                        outcome = Some(Err(err));
                        Op::Nop
                    }
                }
            });
        outcome.unwrap_or_else(|| {
            Err(Error::WrongType {
                key: key.to_owned(),
                operation: "update",
            })
        })
    }

    /// The live keys matching a glob `pattern`, cachemere's own keys left out.
    fn matching(&self, pattern: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(key, slot)| {
                slot.expires_at > Instant::now()
                    && glob_matches(pattern, key)
                    && !is_internal(key.as_bytes())
            })
            .map(|(key, _)| String::clone(&key))
            .collect()
    }

    async fn push(
        &self,
        key: &str,
        values: &[Vec<u8>],
        ttl: Duration,
        operation: &'static str,
        front: bool,
    ) -> Result<u64> {
        self.modify(key, |live| {
            let mut list = match live.map(|slot| &slot.value) {
                None => VecDeque::new(),
                Some(Value::List(list)) => (**list).clone(),
                Some(_) => return Err(wrong_type(key, operation)),
            };
            if values.is_empty() {
                return Ok((Change::Keep, list.len() as u64));
            }
            for value in values {
                if front {
                    list.push_front(value.clone());
                } else {
                    list.push_back(value.clone());
                }
            }
            let len = list.len() as u64;
            Ok((
                Change::Put(Slot::new(Value::List(Arc::new(list)), ttl)),
                len,
            ))
        })
        .await
    }
}

fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .unwrap_or(now + Duration::from_secs(u32::MAX.into()))
}

fn wrong_type(key: &str, operation: &'static str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
        operation,
    }
}

fn redis_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    let resolve = |i: i64| if i < 0 { len + i } else { i };
    let start = resolve(start).max(0);
    let stop = resolve(stop).min(len - 1);
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(None),
            Some(Value::Bytes(entry)) => Ok(Some(entry.bytes.to_vec())),
            Some(_) => Err(wrong_type(key, "GET")),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let slot = Slot::new(Value::bytes(value), ttl);
        self.entries.insert(key.to_owned(), slot);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self
            .entries
            .remove(key)
            .is_some_and(|slot| slot.expires_at > Instant::now()))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.live(key).is_some())
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.modify(key, |live| {
            Ok(match live {
                Some(slot) => (Change::Put(Slot::new(slot.value.clone(), ttl)), true),
                None => (Change::Keep, false),
            })
        })
        .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        Ok(match self.live(key) {
            Some(slot) => {
                KeyTtl::ExpiresIn(slot.expires_at.saturating_duration_since(Instant::now()))
            }
            None => KeyTtl::Missing,
        })
    }

    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(match self.live(key).map(|slot| slot.value) {
                Some(Value::Bytes(entry)) => Some(entry.bytes.to_vec()),
                _ => None,
            });
        }
        Ok(values)
    }

    async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()> {
        for (key, value, ttl) in items {
            self.set(key, value, *ttl).await?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        let mut removed = 0;
        for key in keys {
            removed += u64::from(self.delete(key).await?);
        }
        Ok(removed)
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64> {
        let mut removed = 0;
        for key in self.matching(pattern) {
            removed += u64::from(self.delete(&key).await?);
            self.delete(&crate::key::tags_record_of(&key)).await?;
        }
        Ok(removed)
    }

    async fn fence_matching(&self, pattern: &str, marker: &[u8], window: Duration) -> Result<u64> {
        let matching = self.matching(pattern);
        let records: Vec<String> = matching
            .iter()
            .map(|key| crate::key::tags_record_of(key))
            .collect();
        self.delete_many(&records).await?;
        self.fence(&matching, marker, window).await
    }

    async fn hset(&self, key: &str, field: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        self.modify(key, |live| {
            let mut hash = match live.map(|slot| &slot.value) {
                None => HashMap::new(),
                Some(Value::Hash(hash)) => (**hash).clone(),
                Some(_) => return Err(wrong_type(key, "HSET")),
            };
            let added = hash.insert(field.to_owned(), value.to_vec()).is_none();
            Ok((
                Change::Put(Slot::new(Value::Hash(Arc::new(hash)), ttl)),
                added,
            ))
        })
        .await
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(None),
            Some(Value::Hash(hash)) => Ok(hash.get(field).cloned()),
            Some(_) => Err(wrong_type(key, "HGET")),
        }
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(Vec::new()),
            Some(Value::Hash(hash)) => {
                Ok(hash.iter().map(|(f, v)| (f.clone(), v.clone())).collect())
            }
            Some(_) => Err(wrong_type(key, "HGETALL")),
        }
    }

    async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.modify(key, |live| {
            let Some(slot) = live else {
                return Ok((Change::Keep, false));
            };
            let Value::Hash(hash) = &slot.value else {
                return Err(wrong_type(key, "HDEL"));
            };
            if !hash.contains_key(field) {
                return Ok((Change::Keep, false));
            }
            let mut hash = (**hash).clone();
            hash.remove(field);
            if hash.is_empty() {
                return Ok((Change::Remove, true));
            }
            let rest = Slot {
                value: Value::Hash(Arc::new(hash)),
                expires_at: slot.expires_at,
            };
            Ok((Change::Put(rest), true))
        })
        .await
    }

    async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.push(key, values, ttl, "LPUSH", true).await
    }

    async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        self.push(key, values, ttl, "RPUSH", false).await
    }

    async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(Vec::new()),
            Some(Value::List(list)) => Ok(match redis_range(list.len(), start, stop) {
                Some((from, to)) => list.range(from..=to).cloned().collect(),
                None => Vec::new(),
            }),
            Some(_) => Err(wrong_type(key, "LRANGE")),
        }
    }

    async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.modify(key, |live| {
            let mut set = match live.map(|slot| &slot.value) {
                None => HashSet::new(),
                Some(Value::Set(set)) => (**set).clone(),
                Some(_) => return Err(wrong_type(key, "SADD")),
            };
            let added = members
                .iter()
                .filter(|member| set.insert((*member).clone()))
                .count() as u64;
            Ok((
                Change::Put(Slot::new(Value::Set(Arc::new(set)), ttl)),
                added,
            ))
        })
        .await
    }

    async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64> {
        self.modify(key, |live| {
            let Some(slot) = live else {
                return Ok((Change::Keep, 0));
            };
            let Value::Set(set) = &slot.value else {
                return Err(wrong_type(key, "SREM"));
            };
            let mut set = (**set).clone();
            let removed = members.iter().filter(|member| set.remove(*member)).count() as u64;
            if set.is_empty() {
                return Ok((Change::Remove, removed));
            }
            let rest = Slot {
                value: Value::Set(Arc::new(set)),
                expires_at: slot.expires_at,
            };
            Ok((Change::Put(rest), removed))
        })
        .await
    }

    async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        match self.live(key).map(|slot| slot.value) {
            None => Ok(Vec::new()),
            Some(Value::Set(set)) => Ok(set.iter().cloned().collect()),
            Some(_) => Err(wrong_type(key, "SMEMBERS")),
        }
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        self.modify(key, |live| {
            Ok(match live {
                Some(_) => (Change::Keep, false),
                None => (Change::Put(Slot::new(Value::bytes(value), ttl)), true),
            })
        })
        .await
    }

    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool> {
        self.modify(key, |live| {
            Ok(match live.map(|slot| &slot.value) {
                Some(Value::Bytes(entry)) if *entry.bytes == *expected => (Change::Remove, true),
                _ => (Change::Keep, false),
            })
        })
        .await
    }

    async fn replace_if_equals(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.modify(key, |live| {
            Ok(match live.map(|slot| &slot.value) {
                Some(Value::Bytes(entry)) if *entry.bytes == *expected => {
                    (Change::Put(Slot::new(Value::bytes(value), ttl)), true)
                }
                _ => (Change::Keep, false),
            })
        })
        .await
    }

    async fn fence(&self, keys: &[String], marker: &[u8], window: Duration) -> Result<u64> {
        let mut held = 0;
        for key in keys {
            let had = self
                .modify(key, |live| {
                    Ok(match live.map(|slot| &slot.value) {
                        None => (Change::Put(Slot::new(Value::bytes(marker), window)), false),
                        Some(Value::Bytes(entry)) => (
                            Change::Put(Slot::new(Value::bytes(marker), window)),
                            !crate::fence::is_marker(&entry.bytes),
                        ),
                        Some(_) => (Change::Remove, true),
                    })
                })
                .await?;
            held += u64::from(had);
        }
        Ok(held)
    }

    async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        self.modify(tag_key, |live| {
            let now = Instant::now();
            let mut index = match live.map(|slot| &slot.value) {
                None => HashMap::new(),
                Some(Value::Tag(index)) => (**index).clone(),
                Some(_) => return Err(wrong_type(tag_key, "TAG")),
            };
            index.retain(|_, expires_at| *expires_at > now);
            let expires_at = deadline(ttl);
            for member in members {
                let entry = index.entry(member.clone()).or_insert(expires_at);
                *entry = (*entry).max(expires_at);
            }
            let last = index.values().copied().max().unwrap_or(expires_at);
            let slot = Slot {
                value: Value::Tag(Arc::new(index)),
                expires_at: last,
            };
            Ok((Change::Put(slot), ()))
        })
        .await
    }

    async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        self.modify(tag_key, |live| {
            let now = Instant::now();
            match live.map(|slot| &slot.value) {
                None => Ok((Change::Keep, Vec::new())),
                Some(Value::Tag(index)) => {
                    let members = index
                        .iter()
                        .filter(|(_, expires_at)| **expires_at > now)
                        .map(|(member, _)| member.clone())
                        .collect();
                    Ok((Change::Remove, members))
                }
                Some(_) => Err(wrong_type(tag_key, "TAKE TAGGED")),
            }
        })
        .await
    }

    async fn health_check(&self) -> HealthReport {
        let started = Instant::now();
        self.entries.run_pending_tasks();
        HealthReport {
            backend: self.backend(),
            healthy: true,
            latency: Some(started.elapsed()),
            server_version: None,
            used_memory_bytes: Some(self.entries.weighted_size()),
            error: None,
            circuit_open: false,
            open_circuits: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `key` until it expires. Every read that finds it must have started before the
    /// latest deadline it can have (`set_by` + `ttl`), and the first that misses must end
    /// after the earliest (`set_from` + `ttl`, less moka's 4 µs rounding).
    async fn read_until_expired(
        store: &MemoryStore,
        key: &str,
        set_from: Instant,
        set_by: Instant,
        ttl: Duration,
    ) {
        loop {
            let asked = Instant::now();
            let found = store.get(key).await.expect("get");
            let answered = Instant::now();
            match found {
                Some(_) => assert!(
                    asked < set_by + ttl,
                    "read {:?} past its deadline",
                    asked - (set_by + ttl)
                ),
                None => {
                    assert!(
                        answered + Duration::from_micros(5) >= set_from + ttl,
                        "expired {:?} early",
                        (set_from + ttl) - answered
                    );
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_value_is_read_until_its_deadline_and_never_after() {
        let store = MemoryStore::new();
        for round in 0..20u32 {
            let ttl = Duration::from_micros(500 + 150 * u64::from(round));
            let set_from = Instant::now();
            store.set("k", b"v", ttl).await.expect("set");
            let set_by = Instant::now();
            read_until_expired(&store, "k", set_from, set_by, ttl).await;
            // a new ttl, longer or shorter than the first, replaces it
            store
                .set("k", b"v", Duration::from_secs(60))
                .await
                .expect("set");
            let set_from = Instant::now();
            assert!(store.expire("k", ttl).await.expect("expire"));
            let set_by = Instant::now();
            read_until_expired(&store, "k", set_from, set_by, ttl).await;
        }
    }
}
