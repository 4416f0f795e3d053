use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    Backend, Change, Counts, INDEX_GRACE_MS, Keys, Ledger, Lookup, NewSession, Stored, UserKeys,
};
use crate::error::Result;

/// Sessions kept in process, beside a [`MemoryStore`](cache_core::MemoryStore)'s cached values
/// (as its [`attachment`](cache_core::MemoryStore::attachment)) but never evicted by them: a
/// burst of cached data cannot end a session.
///
/// It holds the live sessions plus the expired ones not yet swept. Every operation is one
/// step under one lock, as a Lua script is on Redis; a creation sweeps expired records once
/// their number has doubled since the last sweep, and
/// [`cleanup_expired`](crate::SessionManager::cleanup_expired) sweeps everything.
#[derive(Default)]
pub(crate) struct MemorySessions {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Record>,
    indexes: HashMap<String, HashMap<String, u64>>,
    ledgers: HashMap<Ledger, Tally>,
    swept_at: usize,
}

/// A ledger's sets, as the Redis scripts keep them: session ids and user ids by expiry.
#[derive(Default)]
struct Tally {
    live: HashMap<String, u64>,
    users: HashMap<String, u64>,
}

enum Record {
    Session {
        stored: Stored,
        rotated_from: Option<String>,
    },
    Moved {
        to: String,
        until: u64,
    },
}

const SWEEP_FLOOR: usize = 1024;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn is_live(stored: &Stored, now: u64) -> bool {
    stored.expires_at > now && stored.absolute_at > now
}

impl Record {
    fn ends_at(&self) -> u64 {
        match self {
            Record::Session { stored, .. } => stored.expires_at.min(stored.absolute_at),
            Record::Moved { until, .. } => *until,
        }
    }
}

impl MemorySessions {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The keys of the session `keys` names, following a rotation's forwarding record.
    fn resolve<'k>(&self, keys: &'k Keys, now: u64) -> Cow<'k, Keys> {
        match self.records.get(&keys.session) {
            Some(Record::Moved { to, until }) if *until > now => Cow::Owned(Keys::member(
                &keys.index,
                &keys.session_prefix,
                to,
                &keys.ledger,
            )),
            _ => Cow::Borrowed(keys),
        }
    }

    fn live_mut(&mut self, key: &str, now: u64) -> Option<&mut Stored> {
        match self.records.get_mut(key) {
            Some(Record::Session { stored, .. }) if is_live(stored, now) => Some(stored),
            _ => None,
        }
    }

    fn reindex(&mut self, keys: &Keys, expires_at: u64) {
        if let Some(expires) = self
            .indexes
            .get_mut(&keys.index)
            .and_then(|index| index.get_mut(&keys.id))
        {
            *expires = expires_at;
        }
    }

    /// The session `id` is indexed until `expires` (for its user, when named): the one step
    /// every change to an index takes for the statistics, as `track` in the Redis scripts.
    fn track(&mut self, ledger: &Ledger, id: &str, expires: u64, user: Option<&str>) {
        let tally = self.ledgers.entry(Ledger::clone(ledger)).or_default();
        tally.live.insert(id.to_owned(), expires);
        if let Some(user) = user {
            let latest = tally.users.entry(user.to_owned()).or_default();
            *latest = expires.max(*latest);
        }
    }

    /// The session `id` left its index.
    fn untrack(&mut self, ledger: &Ledger, id: &str) {
        if let Some(tally) = self.ledgers.get_mut(ledger) {
            tally.live.remove(id);
        }
    }

    /// Sets `user`'s latest expiry from its index, after sessions left it.
    fn settle(&mut self, ledger: &Ledger, index: &str, user: Option<&str>) {
        let Some(user) = user else { return };
        let latest = self
            .indexes
            .get(index)
            .and_then(|entries| entries.values().max().copied());
        let tally = self.ledgers.entry(Ledger::clone(ledger)).or_default();
        match latest {
            Some(latest) => {
                tally.users.insert(user.to_owned(), latest);
            }
            None => {
                tally.users.remove(user);
            }
        }
    }

    /// Removes the forwarding record `from` if it still points to `to`.
    fn drop_forward(&mut self, session_prefix: &str, from: &str, to: &str) {
        let key = format!("{session_prefix}{from}");
        if matches!(self.records.get(&key), Some(Record::Moved { to: target, .. }) if target == to)
        {
            self.records.remove(&key);
        }
    }

    fn sweep(&mut self, now: u64) {
        self.records.retain(|_, record| record.ends_at() > now);
        self.indexes.retain(|_, index| {
            index
                .values()
                .max()
                .is_some_and(|last| last.saturating_add(INDEX_GRACE_MS) > now)
        });
        self.swept_at = self.records.len();
    }
}

#[async_trait]
impl Backend for MemorySessions {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, keys: &Keys, new: &NewSession<'_>) -> Result<(Stored, u64)> {
        let now = now();
        let absolute_at = now.saturating_add(new.absolute);
        let stored = Stored {
            user_id: new.user_id.to_owned(),
            created_at: now,
            last_accessed: now,
            expires_at: now.saturating_add(new.ttl).min(absolute_at),
            absolute_at,
            ttl: new.ttl,
            sid: new.sid.map(str::to_owned),
            data: new.data.to_vec(),
            refreshed: false,
        };
        let mut state = self.state();
        if state.records.len() >= (2 * state.swept_at).max(SWEEP_FLOOR) {
            state.sweep(now);
        }
        state.records.insert(
            keys.session.clone(),
            Record::Session {
                stored: stored.clone(),
                rotated_from: None,
            },
        );
        let State {
            records, indexes, ..
        } = &mut *state;
        let index = indexes.entry(keys.index.clone()).or_default();
        index.retain(|_, expires| *expires > now);
        index.insert(keys.id.clone(), stored.expires_at);
        let mut evicted = Vec::new();
        if new.limit > 0 && index.len() > new.limit {
            let created_at = |id: &str| match records.get(&format!("{}{id}", keys.session_prefix)) {
                Some(Record::Session { stored, .. }) => stored.created_at,
                _ => 0,
            };
            let mut others: Vec<(u64, String)> = index
                .keys()
                .filter(|id| **id != keys.id)
                .map(|id| (created_at(id), id.clone()))
                .collect();
            others.sort();
            let excess = index.len() - new.limit;
            for (_, id) in others.into_iter().take(excess) {
                records.remove(&format!("{}{id}", keys.session_prefix));
                index.remove(&id);
                evicted.push(id);
            }
        }
        state.track(&keys.ledger, &keys.id, stored.expires_at, Some(new.user_id));
        for id in &evicted {
            state.untrack(&keys.ledger, id);
        }
        if !evicted.is_empty() {
            state.settle(&keys.ledger, &keys.index, Some(new.user_id));
        }
        Ok((stored, evicted.len() as u64))
    }

    async fn get(&self, keys: &Keys, touch_after: u64) -> Result<Lookup> {
        let now = now();
        let mut state = self.state();
        let target = state.resolve(keys, now);
        let (stored, rotated_from) = match state.records.get_mut(&target.session) {
            Some(Record::Session {
                stored,
                rotated_from,
            }) => (stored, rotated_from),
            Some(Record::Moved { .. }) | None => {
                let expired = state
                    .indexes
                    .get(&target.index)
                    .and_then(|index| index.get(&target.id))
                    .is_some_and(|expires| *expires <= now);
                return Ok(if expired {
                    Lookup::Expired
                } else {
                    Lookup::Missing
                });
            }
        };
        if !is_live(stored, now) {
            state.records.remove(&target.session);
            return Ok(Lookup::Expired);
        }
        let mut touched = None;
        if now.saturating_sub(stored.last_accessed) >= touch_after {
            stored.last_accessed = now;
            stored.expires_at = now
                .saturating_add(stored.ttl)
                .max(stored.expires_at)
                .min(stored.absolute_at);
            touched = Some(stored.expires_at);
        }
        let mut found = stored.clone();
        found.refreshed = touched.is_some() && target.session == keys.session;
        let retired = if target.session == keys.session {
            rotated_from.take()
        } else {
            None
        };
        if let Some(expires_at) = touched {
            state.reindex(&target, expires_at);
            state.track(&keys.ledger, &target.id, expires_at, Some(&found.user_id));
        }
        if let Some(old) = retired {
            state.drop_forward(&keys.session_prefix, &old, &keys.id);
        }
        Ok(Lookup::Live(found))
    }

    async fn update(&self, keys: &Keys, changes: &[(String, Change)]) -> Result<bool> {
        let now = now();
        let mut state = self.state();
        let target = state.resolve(keys, now);
        let Some(stored) = state.live_mut(&target.session, now) else {
            return Ok(false);
        };
        for (name, change) in changes {
            let value = match change {
                Change::Set(value) => Some(value),
                Change::Remove => None,
                Change::Replace { old, new } => {
                    let holds_old = stored
                        .data
                        .iter()
                        .any(|(field, value)| field == name && value == old);
                    match holds_old {
                        true => Some(new),
                        false => continue,
                    }
                }
            };
            stored.data.retain(|(field, _)| field != name);
            if let Some(value) = value {
                stored.data.push((name.clone(), value.clone()));
            }
        }
        Ok(true)
    }

    async fn extend(&self, keys: &Keys, by: u64) -> Result<Option<u64>> {
        let now = now();
        let mut state = self.state();
        let target = state.resolve(keys, now);
        let Some(stored) = state.live_mut(&target.session, now) else {
            return Ok(None);
        };
        stored.expires_at = stored
            .expires_at
            .max(now.saturating_add(by))
            .min(stored.absolute_at);
        let expires_at = stored.expires_at;
        let user = stored.user_id.clone();
        state.reindex(&target, expires_at);
        state.track(&keys.ledger, &target.id, expires_at, Some(&user));
        Ok(Some(expires_at))
    }

    async fn delete(&self, keys: &Keys) -> Result<bool> {
        let now = now();
        let mut state = self.state();
        let target = state.resolve(keys, now);
        if target.session != keys.session {
            state.records.remove(&keys.session);
        }
        let (existed, user) = match state.records.remove(&target.session) {
            Some(Record::Session {
                stored,
                rotated_from,
            }) => {
                if let Some(old) = rotated_from {
                    state.drop_forward(&keys.session_prefix, &old, &target.id);
                }
                (is_live(&stored, now), Some(stored.user_id))
            }
            Some(moved @ Record::Moved { .. }) => {
                state.records.insert(target.session.clone(), moved);
                (false, None)
            }
            None => (false, None),
        };
        if let Some(index) = state.indexes.get_mut(&target.index) {
            index.remove(&target.id);
        }
        state.untrack(&keys.ledger, &target.id);
        state.settle(&keys.ledger, &target.index, user.as_deref());
        Ok(existed)
    }

    async fn rotate(&self, old: &Keys, new: &Keys, grace: u64) -> Result<bool> {
        let now = now();
        let mut state = self.state();
        let target = state.resolve(old, now);
        let Some(Record::Session {
            stored,
            rotated_from,
        }) = state.records.remove(&target.session)
        else {
            return Ok(false);
        };
        if !is_live(&stored, now) {
            return Ok(false);
        }
        if let Some(previous) = rotated_from.filter(|previous| *previous != old.id) {
            state.drop_forward(&old.session_prefix, &previous, &target.id);
        }
        let expires_at = stored.expires_at;
        state.records.insert(
            new.session.clone(),
            Record::Session {
                stored,
                rotated_from: (grace > 0).then(|| old.id.clone()),
            },
        );
        if grace > 0 {
            state.records.insert(
                old.session.clone(),
                Record::Moved {
                    to: new.id.clone(),
                    until: now.saturating_add(grace).min(expires_at),
                },
            );
        } else {
            state.records.remove(&old.session);
        }
        let index = state.indexes.entry(old.index.clone()).or_default();
        index.remove(&target.id);
        index.insert(new.id.clone(), expires_at);
        state.untrack(&old.ledger, &target.id);
        state.track(&old.ledger, &new.id, expires_at, None);
        Ok(true)
    }

    async fn list(&self, user: &UserKeys, user_id: &str) -> Result<Vec<(String, Stored)>> {
        let now = now();
        let state = self.state();
        let session_prefix = &user.session_prefix;
        let Some(entries) = state.indexes.get(&user.index) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .iter()
            .filter(|(_, expires)| **expires > now)
            .filter_map(
                |(id, _)| match state.records.get(&format!("{session_prefix}{id}")) {
                    Some(Record::Session { stored, .. }) if stored.user_id == user_id => {
                        Some((id.clone(), stored.clone()))
                    }
                    _ => None,
                },
            )
            .collect())
    }

    async fn revoke_all(&self, user: &UserKeys, user_id: &str) -> Result<u64> {
        let now = now();
        let mut guard = self.state();
        let State {
            records, indexes, ..
        } = &mut *guard;
        let Some(entries) = indexes.get_mut(&user.index) else {
            return Ok(0);
        };
        let mut revoked = 0;
        let mut ended = Vec::new();
        entries.retain(|id, _| {
            let key = format!("{}{id}", user.session_prefix);
            let keep = match records.get(&key) {
                Some(Record::Session { stored, .. }) if stored.user_id == user_id => {
                    revoked += u64::from(is_live(stored, now));
                    records.remove(&key);
                    false
                }
                Some(Record::Session { .. }) => true,
                Some(Record::Moved { .. }) | None => false,
            };
            if !keep {
                ended.push(id.clone());
            }
            keep
        });
        for id in &ended {
            guard.untrack(&user.ledger, id);
        }
        guard.settle(&user.ledger, &user.index, Some(user_id));
        Ok(revoked)
    }

    async fn counts(&self, ledgers: &[Ledger]) -> Result<Counts> {
        let now = now();
        let state = self.state();
        let mut counts = Counts::default();
        for tally in ledgers
            .iter()
            .filter_map(|ledger| state.ledgers.get(ledger))
        {
            let live = |expires: &&u64| **expires > now;
            counts += Counts {
                total: tally.live.len() as u64,
                active: tally.live.values().filter(live).count() as u64,
                users: tally.users.values().filter(live).count() as u64,
            };
        }
        Ok(counts)
    }

    async fn cleanup(&self, ledgers: &[Ledger]) -> Result<u64> {
        let now = now();
        let mut state = self.state();
        let mut removed = 0;
        for ledger in ledgers {
            if let Some(tally) = state.ledgers.get_mut(ledger) {
                let before = tally.live.len();
                tally.live.retain(|_, expires| *expires > now);
                tally.users.retain(|_, expires| *expires > now);
                removed += (before - tally.live.len()) as u64;
            }
        }
        state.sweep(now);
        Ok(removed)
    }
}

impl From<cache_core::MemoryStore> for super::SessionStore {
    fn from(store: cache_core::MemoryStore) -> super::SessionStore {
        super::SessionStore(store.attachment::<MemorySessions>() as Arc<dyn Backend>)
    }
}
