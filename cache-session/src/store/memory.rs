use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cache_core::{MemoryStore, Store};
use tokio::sync::Mutex;

use super::{Backend, Counts, INDEX_GRACE_MS, Keys, Lookup, NewSession, Registry, Stored};
use crate::error::{Error, Result};

/// In process, every session operation holds this lock: that makes each one a single atomic
/// step, as a Lua script is on Redis.
static STEP: Mutex<()> = Mutex::const_new(());

const REGISTRY_TTL: Duration = Duration::from_secs(400 * 86_400);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn until(deadline: u64, now: u64) -> Duration {
    Duration::from_millis(deadline.saturating_sub(now).max(1))
}

type Index = BTreeMap<String, u64>;

async fn read_session(store: &MemoryStore, keys: &Keys) -> Result<Option<Stored>> {
    let Some(bytes) = Store::get(store, &keys.session).await? else {
        return Ok(None);
    };
    let fields: Vec<(String, Vec<u8>)> =
        serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
            id: keys.id.chars().take(12).collect(),
            reason: err.to_string(),
        })?;
    Stored::from_fields(&keys.id, fields).map(Some)
}

async fn write_session(store: &MemoryStore, key: &str, stored: &Stored, now: u64) -> Result<()> {
    let bytes = serde_json::to_vec(&stored.to_fields()).map_err(|source| Error::Encode {
        field: "session".into(),
        source,
    })?;
    store
        .set(key, &bytes, until(stored.expires_at, now))
        .await?;
    Ok(())
}

async fn read_live(store: &MemoryStore, keys: &Keys, now: u64) -> Result<Option<Stored>> {
    Ok(read_session(store, keys)
        .await?
        .filter(|stored| stored.expires_at > now))
}

/// Moves the session's entry in its index to its new expiry.
async fn reindex(store: &MemoryStore, keys: &Keys, expires_at: u64, now: u64) -> Result<()> {
    let mut index = read_index(store, &keys.index).await?;
    if let Some(expires) = index.get_mut(&keys.id) {
        *expires = expires_at;
    }
    write_index(store, &keys.index, &index, now).await
}

async fn read_index(store: &MemoryStore, index: &str) -> Result<Index> {
    match Store::get(store, index).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
            id: index.to_owned(),
            reason: err.to_string(),
        }),
        None => Ok(Index::new()),
    }
}

async fn write_index(store: &MemoryStore, key: &str, index: &Index, now: u64) -> Result<()> {
    let Some(last) = index.values().max() else {
        Store::delete(store, key).await?;
        return Ok(());
    };
    let bytes = serde_json::to_vec(index).map_err(|source| Error::Encode {
        field: "index".into(),
        source,
    })?;
    store
        .set(key, &bytes, until(last.saturating_add(INDEX_GRACE_MS), now))
        .await?;
    Ok(())
}

async fn registered(store: &MemoryStore, registry: &str) -> Result<Vec<(String, u64)>> {
    Ok(store
        .hgetall(registry)
        .await?
        .into_iter()
        .map(|(user, until)| {
            let until = std::str::from_utf8(&until)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            (user, until)
        })
        .collect())
}

#[async_trait]
impl Backend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, keys: &Keys, new: &NewSession<'_>) -> Result<(Stored, u64)> {
        let _step = STEP.lock().await;
        let now = now();
        let absolute_at = now.saturating_add(new.absolute);
        let stored = Stored {
            user_id: new.user_id.to_owned(),
            created_at: now,
            last_accessed: now,
            expires_at: now.saturating_add(new.ttl).min(absolute_at),
            absolute_at,
            ttl: new.ttl,
            data: new.data.to_vec(),
        };
        write_session(self, &keys.session, &stored, now).await?;
        let mut index = read_index(self, &keys.index).await?;
        index.retain(|_, expires| *expires > now);
        index.insert(keys.id.clone(), stored.expires_at);
        let mut evicted = 0;
        if new.limit > 0 && index.len() > new.limit {
            let mut live: Vec<(String, u64)> =
                index.iter().map(|(id, at)| (id.clone(), *at)).collect();
            live.sort_by_key(|(_, at)| *at);
            let excess = index.len() - new.limit;
            for (id, _) in live
                .into_iter()
                .filter(|(id, _)| *id != keys.id)
                .take(excess)
            {
                Store::delete(self, &format!("{}{id}", keys.session_prefix)).await?;
                index.remove(&id);
                evicted += 1;
            }
        }
        write_index(self, &keys.index, &index, now).await?;
        Ok((stored, evicted))
    }

    async fn get(&self, keys: &Keys, touch_after: u64) -> Result<Lookup> {
        let _step = STEP.lock().await;
        let now = now();
        let Some(mut stored) = read_session(self, keys).await? else {
            let index = read_index(self, &keys.index).await?;
            return Ok(match index.get(&keys.id) {
                Some(expires) if *expires <= now => Lookup::Expired,
                _ => Lookup::Missing,
            });
        };
        if stored.expires_at <= now || stored.absolute_at <= now {
            Store::delete(self, &keys.session).await?;
            return Ok(Lookup::Expired);
        }
        if now.saturating_sub(stored.last_accessed) >= touch_after {
            stored.last_accessed = now;
            stored.expires_at = now.saturating_add(stored.ttl).min(stored.absolute_at);
            write_session(self, &keys.session, &stored, now).await?;
            reindex(self, keys, stored.expires_at, now).await?;
        }
        Ok(Lookup::Live(stored))
    }

    async fn update(&self, keys: &Keys, changes: &[(String, Option<Vec<u8>>)]) -> Result<bool> {
        let _step = STEP.lock().await;
        let now = now();
        let Some(mut stored) = read_live(self, keys, now).await? else {
            return Ok(false);
        };
        for (name, value) in changes {
            stored.data.retain(|(field, _)| field != name);
            if let Some(value) = value {
                stored.data.push((name.clone(), value.clone()));
            }
        }
        write_session(self, &keys.session, &stored, now).await?;
        Ok(true)
    }

    async fn extend(&self, keys: &Keys, by: u64) -> Result<Option<u64>> {
        let _step = STEP.lock().await;
        let now = now();
        let Some(mut stored) = read_live(self, keys, now).await? else {
            return Ok(None);
        };
        stored.expires_at = stored
            .expires_at
            .max(now.saturating_add(by))
            .min(stored.absolute_at);
        write_session(self, &keys.session, &stored, now).await?;
        reindex(self, keys, stored.expires_at, now).await?;
        Ok(Some(stored.expires_at))
    }

    async fn delete(&self, keys: &Keys) -> Result<bool> {
        let _step = STEP.lock().await;
        let existed = Store::delete(self, &keys.session).await?;
        let mut index = read_index(self, &keys.index).await?;
        if index.remove(&keys.id).is_some() {
            write_index(self, &keys.index, &index, now()).await?;
        }
        Ok(existed)
    }

    async fn rotate(&self, old: &Keys, new: &Keys) -> Result<bool> {
        let _step = STEP.lock().await;
        let now = now();
        let Some(stored) = read_live(self, old, now).await? else {
            return Ok(false);
        };
        write_session(self, &new.session, &stored, now).await?;
        Store::delete(self, &old.session).await?;
        let mut index = read_index(self, &old.index).await?;
        index.remove(&old.id);
        index.insert(new.id.clone(), stored.expires_at);
        write_index(self, &old.index, &index, now).await?;
        Ok(true)
    }

    async fn list(
        &self,
        index: &str,
        session_prefix: &str,
        user_id: &str,
    ) -> Result<Vec<(String, Stored)>> {
        let _step = STEP.lock().await;
        let now = now();
        let mut sessions = Vec::new();
        for (id, expires) in read_index(self, index).await? {
            if expires <= now {
                continue;
            }
            let keys = Keys::member(index, session_prefix, &id);
            if let Some(stored) = read_session(self, &keys)
                .await?
                .filter(|s| s.user_id == user_id)
            {
                sessions.push((id, stored));
            }
        }
        Ok(sessions)
    }

    async fn revoke_all(&self, index: &str, session_prefix: &str, user_id: &str) -> Result<u64> {
        let _step = STEP.lock().await;
        let now = now();
        let mut entries = read_index(self, index).await?;
        let mut revoked = 0;
        for id in entries.keys().cloned().collect::<Vec<_>>() {
            let keys = Keys::member(index, session_prefix, &id);
            match read_session(self, &keys).await? {
                Some(stored) if stored.user_id == user_id => {
                    revoked += u64::from(Store::delete(self, &keys.session).await?);
                    entries.remove(&id);
                }
                Some(_) => {}
                None => {
                    entries.remove(&id);
                }
            }
        }
        write_index(self, index, &entries, now).await?;
        Ok(revoked)
    }

    async fn register(&self, registry: &str, user_id: &str, until: u64) -> Result<()> {
        let _step = STEP.lock().await;
        let known = self.hget(registry, user_id).await?;
        let known = known
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        self.hset(
            registry,
            user_id,
            until.max(known).to_string().as_bytes(),
            REGISTRY_TTL,
        )
        .await?;
        Ok(())
    }

    async fn counts(&self, registry: &Registry<'_>) -> Result<Counts> {
        let _step = STEP.lock().await;
        let now = now();
        let mut counts = Counts::default();
        for (user, _) in registered(self, registry.key).await? {
            let index = read_index(self, &(registry.index_of)(&user)).await?;
            let active = index.values().filter(|expires| **expires > now).count() as u64;
            counts.total += index.len() as u64;
            counts.active += active;
            counts.users += u64::from(active > 0);
        }
        Ok(counts)
    }

    async fn cleanup(&self, registry: &Registry<'_>) -> Result<u64> {
        let _step = STEP.lock().await;
        let now = now();
        let mut removed = 0;
        for (user, until) in registered(self, registry.key).await? {
            let key = (registry.index_of)(&user);
            let mut index = read_index(self, &key).await?;
            let before = index.len();
            index.retain(|_, expires| *expires > now);
            removed += (before - index.len()) as u64;
            if before != index.len() {
                write_index(self, &key, &index, now).await?;
            }
            if until <= now {
                self.hdel(registry.key, &user).await?;
            }
        }
        Ok(removed)
    }
}
