//! The atomic session operations, on Redis (Lua scripts) and in process.

mod memory;
mod redis;

use async_trait::async_trait;

use crate::error::{Error, Result};

/// How long an index outlives its last entry's expiry, so that a session that expired is
/// reported as expired (not unknown) until the clean-up after it.
pub(crate) const INDEX_GRACE_MS: u64 = 86_400_000;

/// The statistics of the sessions whose keys share one hash slot (on one server: of all
/// sessions), kept by the same atomic steps that change sessions: `<prefix>live`, a sorted
/// set of session ids by expiry (until the clean-up after it), and `<prefix>users`, a sorted
/// set of user ids by the latest expiry of their indexed sessions. Its name is the prefix.
pub(crate) type Ledger = std::sync::Arc<str>;

/// Where one session lives.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The session's hash.
    pub(crate) session: String,
    /// The index of its user tag's sessions (a sorted set of ids scored by expiry).
    pub(crate) index: String,
    /// The session's id in the index: the token's hash.
    pub(crate) id: String,
    /// `session` minus `id`: the prefix of every session key of this user tag.
    pub(crate) session_prefix: String,
    /// The statistics of this user tag's hash slot.
    pub(crate) ledger: Ledger,
}

impl Keys {
    /// The keys of the session `id` in `index`.
    pub(crate) fn member(index: &str, session_prefix: &str, id: &str, ledger: &Ledger) -> Keys {
        let user = UserKeys {
            index: index.to_owned(),
            session_prefix: session_prefix.to_owned(),
            ledger: Ledger::clone(ledger),
        };
        Keys::of(user, id.to_owned())
    }

    /// The keys of the session `id` among `user`'s (nothing copied again).
    pub(crate) fn of(user: UserKeys, id: String) -> Keys {
        let UserKeys {
            index,
            session_prefix,
            ledger,
        } = user;
        Keys {
            session: [session_prefix.as_str(), id.as_str()].concat(),
            index,
            id,
            session_prefix,
            ledger,
        }
    }
}

/// A user's sessions: the index of its tag and the prefix of its session keys, with the
/// statistics of its hash slot.
#[derive(Debug, Clone)]
pub(crate) struct UserKeys {
    pub(crate) index: String,
    pub(crate) session_prefix: String,
    pub(crate) ledger: Ledger,
}

/// A session as stored: times in milliseconds since the Unix epoch, data fields as JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub(crate) user_id: String,
    pub(crate) created_at: u64,
    pub(crate) last_accessed: u64,
    pub(crate) expires_at: u64,
    pub(crate) absolute_at: u64,
    pub(crate) ttl: u64,
    /// The random id data fields are bound to when sealed in format 2 (kept across
    /// rotations); `None` for a session created without it.
    pub(crate) sid: Option<String>,
    pub(crate) data: Vec<(String, Vec<u8>)>,
    /// This read slid the expiry of the session its own token names (not one an old token
    /// forwards to after a rotation).
    pub(crate) refreshed: bool,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Live(Stored),
    /// Known to the index but past its expiry.
    Expired,
    Missing,
}

/// A new session's settings.
pub(crate) struct NewSession<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) ttl: u64,
    pub(crate) absolute: u64,
    pub(crate) limit: usize,
    /// See [`Stored::sid`].
    pub(crate) sid: Option<&'a str>,
    pub(crate) data: &'a [(String, Vec<u8>)],
}

/// Counts over the sessions the ledgers hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) active: u64,
    pub(crate) users: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.total += other.total;
        self.active += other.active;
        self.users += other.users;
    }
}

/// A change to one data field of a session, as [`Backend::update`] applies it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Sets the field.
    Set(Vec<u8>),
    /// Removes it.
    Remove,
    /// Sets it to `new` only if it still holds `old` (a field sealed again under the current
    /// key must not overwrite a write made since it was read).
    Replace { old: Vec<u8>, new: Vec<u8> },
}

/// One atomic step per operation, on keys of one hash slot (the user tag's).
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Writes the session and indexes it, evicting beyond `limit` (0: none); returns it as
    /// stored and the number evicted.
    async fn create(&self, keys: &Keys, new: &NewSession<'_>) -> Result<(Stored, u64)>;
    /// Reads the session, rewriting `last_accessed` and sliding the expiry when it is older
    /// than `touch_after`.
    async fn get(&self, keys: &Keys, touch_after: u64) -> Result<Lookup>;
    /// Sets and removes data fields of a live session; `false` when there is none.
    async fn update(&self, keys: &Keys, changes: &[(String, Change)]) -> Result<bool>;
    /// Moves the expiry to at least now + `by` (within the absolute limit); the new expiry.
    async fn extend(&self, keys: &Keys, by: u64) -> Result<Option<u64>>;
    async fn delete(&self, keys: &Keys) -> Result<bool>;
    /// Moves a live session to `new`'s key in one step. With a `grace` (ms), `old` forwards
    /// to `new` until `new` is first read or the grace ends.
    async fn rotate(&self, old: &Keys, new: &Keys, grace: u64) -> Result<bool>;
    /// The live sessions of `user_id` in its tag's index, with their ids.
    async fn list(&self, user: &UserKeys, user_id: &str) -> Result<Vec<(String, Stored)>>;
    /// Deletes every session of `user_id`; returns how many were live.
    async fn revoke_all(&self, user: &UserKeys, user_id: &str) -> Result<u64>;
    /// Whether sessions spread over several hash slots' ledgers (a Redis Cluster), or one
    /// ledger holds them all.
    fn spread(&self) -> bool {
        false
    }
    /// The totals of `ledgers`.
    async fn counts(&self, ledgers: &[Ledger]) -> Result<Counts>;
    /// Removes the expired entries of `ledgers`; returns how many sessions they held.
    async fn cleanup(&self, ledgers: &[Ledger]) -> Result<u64>;
}

/// The store sessions live in: a [`RedisStore`](cache_core::RedisStore) or a
/// [`MemoryStore`](cache_core::MemoryStore).
pub struct SessionStore(pub(crate) std::sync::Arc<dyn Backend>);

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SessionStore").field(&self.0.name()).finish()
    }
}

impl From<cache_core::RedisStore> for SessionStore {
    fn from(store: cache_core::RedisStore) -> SessionStore {
        SessionStore(std::sync::Arc::new(store))
    }
}

/// A live session as the Redis read script returns it: one JSON document, so that the reply
/// is one bulk string rather than an array of fields to parse one by one.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    user_id: String,
    created_at: u64,
    last_accessed: u64,
    expires_at: u64,
    absolute_at: u64,
    ttl: u64,
    #[serde(default)]
    refreshed: bool,
    #[serde(default)]
    sid: Option<String>,
    #[serde(borrow)]
    data: std::collections::HashMap<String, &'a serde_json::value::RawValue>,
}

impl Stored {
    /// Reads the JSON document the Redis read script builds.
    pub(crate) fn from_json(id: &str, json: &[u8]) -> Result<Stored> {
        let wire: Wire<'_> = serde_json::from_slice(json).map_err(|err| Error::Corrupt {
            id: id.chars().take(12).collect(),
            reason: err.to_string(),
        })?;
        Ok(Stored {
            user_id: wire.user_id,
            created_at: wire.created_at,
            last_accessed: wire.last_accessed,
            expires_at: wire.expires_at,
            absolute_at: wire.absolute_at,
            ttl: wire.ttl,
            sid: wire.sid,
            refreshed: wire.refreshed,
            data: wire
                .data
                .into_iter()
                .map(|(name, value)| (name, value.get().as_bytes().to_vec()))
                .collect(),
        })
    }

    /// Reads the flat `field, value, ..` list a Redis hash (or the memory store) holds.
    pub(crate) fn from_fields(id: &str, fields: Vec<(String, Vec<u8>)>) -> Result<Stored> {
        let corrupt = |reason: String| Error::Corrupt {
            id: id.chars().take(12).collect(),
            reason,
        };
        let mut stored = Stored {
            user_id: String::new(),
            created_at: 0,
            last_accessed: 0,
            expires_at: 0,
            absolute_at: 0,
            ttl: 0,
            sid: None,
            data: Vec::new(),
            refreshed: false,
        };
        let mut seen_user = false;
        for (field, value) in fields {
            let number = || -> Result<u64> {
                std::str::from_utf8(&value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| corrupt(format!("`{field}` is not a number")))
            };
            match field.as_str() {
                "user_id" => {
                    stored.user_id = String::from_utf8(value.clone())
                        .map_err(|_| corrupt("`user_id` is not UTF-8".into()))?;
                    seen_user = true;
                }
                "created_at" => stored.created_at = number()?,
                "last_accessed" => stored.last_accessed = number()?,
                "expires_at" => stored.expires_at = number()?,
                "absolute_at" => stored.absolute_at = number()?,
                "ttl" => stored.ttl = number()?,
                "sid" => {
                    stored.sid = Some(
                        String::from_utf8(value)
                            .map_err(|_| corrupt("`sid` is not UTF-8".into()))?,
                    );
                }
                _ => {
                    if let Some(name) = field.strip_prefix("d:") {
                        stored.data.push((name.to_owned(), value));
                    }
                }
            }
        }
        if !seen_user || stored.expires_at == 0 {
            return Err(corrupt("required fields are missing".into()));
        }
        Ok(stored)
    }
}
