//! The session manager.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::session::{Session, SessionData, SessionPatch};
use crate::store::{
    Backend, Change, Keys, Ledger, Lookup, NewSession, SessionStore, Stored, UserKeys,
};
use crate::telemetry;
use crate::token::{Hasher, SessionToken};
use cache_core::encryption::{EncryptionKeys, SealFormat};

const MAX_USER_ID_BYTES: usize = 1024;

/// Creates, reads, changes and ends user sessions in a [`SessionStore`].
///
/// Every state change is one atomic step on the store (a Lua script on Redis) on keys of one
/// hash slot, and expiry is enforced by the store's clock. Store failures are errors: a
/// session is never reported valid when the store cannot confirm it.
///
/// ```
/// use cache_session::{MemoryStore, SessionConfig, SessionData, SessionManager, SessionPatch};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_session::Result<()> {
/// let sessions = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let data = SessionData::new().with("role", "teacher")?.with("department", "Math")?;
/// let token = sessions.create_session("42", data, None).await?;
///
/// let session = sessions.get_session(&token).await?.expect("just created");
/// assert_eq!(session.user_id, "42");
/// assert_eq!(session.data.role(), Some("teacher"));
///
/// sessions.update_session(&token, SessionPatch::new().set("last_login", "2026-11-28")?).await?;
/// let rotated = sessions.rotate_session(&token).await?.expect("still live");
/// assert!(sessions.get_session(&rotated).await?.is_some());
/// assert!(sessions.get_session(&token).await?.is_none(), "the new token's use ends the old");
/// assert_eq!(sessions.delete_user_sessions("42").await?, 1);
/// assert!(sessions.get_session(&rotated).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    config: SessionConfig,
    hasher: Hasher,
    /// The statistics ledgers: one, or one per hash slot of a cluster (16,384).
    ledgers: Vec<Ledger>,
    /// Recent users' tags: a read checks the stored user against the token's tag, and the
    /// HMAC behind a tag costs more than the rest of the read. User ids are not secret.
    tags: Memo,
    /// Recent tokens' store ids, for the same reason, found by a keyed digest of the token:
    /// the memo holds no token, so a dump of the process's memory hands out no live session
    /// (the ids are what the store holds).
    ids: Memo,
    /// The configured keys for session data ([`EncryptionKeys::for_sessions`]).
    sealing: Option<EncryptionKeys>,
    /// The `sid` (see [`Stored::sid`]; empty: none) of recently read or created sessions, by
    /// store id: what an update seals its fields to without reading the session first. A
    /// store id names one session for good (a rotation keeps the `sid`).
    sids: Memo,
}

/// A bounded map of recent hash results, found by a 128-bit digest of their input keyed
/// with this process's random SipHash-1-3 key (one pass over the input, against several
/// thousand instructions for the HMAC-SHA-256 it saves), so that it keeps no input: it
/// starts over once it holds [`Memo::CAPACITY`].
#[derive(Default)]
struct Memo {
    map: std::sync::Mutex<
        std::collections::HashMap<u128, String, std::hash::BuildHasherDefault<Digested>>,
    >,
    key: std::hash::RandomState,
}

/// The map's hasher: its keys are keyed digests already, so their low bits are the hash.
#[derive(Default)]
struct Digested(u64);

impl std::hash::Hasher for Digested {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // only `write_u128` is used; anything else is folded in
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, digest: u128) {
        self.0 = digest as u64;
    }
}

impl Memo {
    const CAPACITY: usize = 4096;

    /// Two 64-bit outputs of one keyed pass over `input`: the hasher's state after it
    /// (256 bits), finished, then finished again after one more byte, so two inputs share a
    /// digest only if both outputs collide.
    fn digest(&self, input: &str) -> u128 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = self.key.build_hasher();
        hasher.write(input.as_bytes());
        let high = hasher.finish();
        hasher.write_u8(0xA5);
        (u128::from(high) << 64) | u128::from(hasher.finish())
    }

    fn get_or(&self, input: &str, compute: impl FnOnce() -> String) -> String {
        let digest = self.digest(input);
        let mut memo = self.map();
        if let Some(output) = memo.get(&digest) {
            return output.clone();
        }
        let output = compute();
        Memo::insert(&mut memo, digest, output.clone());
        output
    }

    fn get(&self, input: &str) -> Option<String> {
        let digest = self.digest(input);
        self.map().get(&digest).cloned()
    }

    /// Remembers `output()` for `input` unless something is remembered already.
    fn put(&self, input: &str, output: impl FnOnce() -> String) {
        let digest = self.digest(input);
        let mut memo = self.map();
        if !memo.contains_key(&digest) {
            Memo::insert(&mut memo, digest, output());
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<u128, String, std::hash::BuildHasherDefault<Digested>>,
    > {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(
        memo: &mut std::collections::HashMap<u128, String, std::hash::BuildHasherDefault<Digested>>,
        digest: u128,
        output: String,
    ) {
        if memo.len() >= Memo::CAPACITY {
            memo.clear();
        }
        memo.insert(digest, output);
    }
}

/// How the data fields of one session are sealed: the format and the associated data. A
/// session with a `sid` (created in format 2) holds format 2 fields bound to its user's tag,
/// the `sid` and their name; one without, format 1 fields bound to the tag and name. A field
/// moved to another session does not open there, nor does a field of one format in a
/// session of the other.
struct FieldSeal<'a> {
    tag: &'a str,
    sid: Option<&'a str>,
}

impl<'a> FieldSeal<'a> {
    fn new(tag: &'a str, sid: Option<&'a str>) -> FieldSeal<'a> {
        FieldSeal { tag, sid }
    }

    /// The session's format: 2 with a `sid`, else 1.
    fn format(&self) -> SealFormat {
        match self.sid {
            None => SealFormat::V1,
            Some(_) => SealFormat::V2,
        }
    }

    /// The associated data of `field`.
    fn context(&self, field: &str) -> Vec<u8> {
        let parts = match self.sid {
            None => ["cachemere session\0", self.tag, "\0", "", "", field],
            Some(sid) => ["cachemere session 2\0", self.tag, "\0", sid, "\0", field],
        };
        parts.concat().into_bytes()
    }
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.inner.backend.name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Where a token stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionState {
    /// A live session (its `last_accessed` refreshed if it was stale).
    Active(Session),
    /// The session expired and has not been cleaned up yet.
    Expired,
    /// No such session: never issued, ended, revoked or cleaned up after expiry.
    Unknown,
}

/// One of a user's live sessions, as [`SessionManager::get_user_sessions`] lists them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSession {
    /// A stable, non-secret id of the session (a hash of its token), for display and for
    /// [`SessionManager::delete_user_session`].
    pub id: String,
    /// The session.
    pub session: Session,
}

/// Counts over every session, as the seed's `get_session_stats` returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// Sessions not ended: live, or expired and not yet cleaned up.
    pub total_sessions: u64,
    /// Live sessions.
    pub active_sessions: u64,
    /// Expired sessions awaiting [`SessionManager::cleanup_expired`].
    pub expired_sessions: u64,
    /// Users with at least one live session.
    pub unique_users: u64,
}

/// The statistics ledgers of sessions under `key_prefix`: one on one server; on a cluster one
/// per hash slot, each named with a hash tag of its slot, so that the scripts changing the
/// sessions of a slot keep its ledger in the same atomic step.
pub(crate) fn ledgers(key_prefix: &str, spread: bool) -> Vec<Ledger> {
    if !spread {
        return vec![Ledger::from(format!("{key_prefix}stats:"))];
    }
    slot_tags()
        .iter()
        .map(|tag| Ledger::from(format!("{key_prefix}{{{tag}}}:stats:")))
        .collect()
}

/// For each of the 16,384 hash slots, a short hash tag in it.
fn slot_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        const SLOTS: usize = 16384;
        let mut tags = vec![String::new(); SLOTS];
        let mut missing = SLOTS;
        let mut candidate = 0u64;
        while missing > 0 {
            let tag = format!("l{candidate}");
            let slot = usize::from(cache_core::key::hash_slot(&tag));
            if tags[slot].is_empty() {
                tags[slot] = tag;
                missing -= 1;
            }
            candidate += 1;
        }
        tags
    })
}

fn millis(name: &'static str, duration: Duration) -> Result<u64> {
    match u64::try_from(duration.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(Error::DurationOutOfRange { name, duration }),
    }
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl SessionManager {
    /// A manager on `store` (a [`RedisStore`](crate::RedisStore) or a
    /// [`MemoryStore`](crate::MemoryStore)).
    ///
    /// Without a [`secret`](SessionConfig::secret) it logs a warning (once per process): the
    /// user tag in its tokens is then an unkeyed hash of the user id.
    pub fn new(store: impl Into<SessionStore>, config: SessionConfig) -> SessionManager {
        telemetry::describe();
        static WARNED: std::sync::Once = std::sync::Once::new();
        if config.secret.is_none() {
            WARNED.call_once(|| {
                tracing::warn!(
                    "SESSION_SECRET is not set: session tokens carry an unkeyed hash of the user id, \
                     so a leaked token can be matched to its user; set a secret in production"
                );
            });
        }
        let hasher = Hasher::new(
            config
                .secret
                .as_ref()
                .map(|secret| secret.expose().as_bytes().to_vec()),
        );
        let backend = store.into().0;
        let ledgers = ledgers(&config.key_prefix, backend.spread());
        SessionManager {
            inner: Arc::new(Inner {
                backend,
                hasher,
                ledgers,
                tags: Memo::default(),
                ids: Memo::default(),
                sealing: config.encryption.as_ref().map(EncryptionKeys::for_sessions),
                sids: Memo::default(),
                config,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The user's tag, remembered for recent users.
    fn user_tag(&self, user_id: &str) -> String {
        self.inner
            .tags
            .get_or(user_id, || self.inner.hasher.user_tag(user_id))
    }

    fn keys(&self, token: &SessionToken) -> Keys {
        let id = self
            .inner
            .ids
            .get_or(token.expose(), || self.inner.hasher.token_id(token));
        Keys::of(self.tag_keys(token.tag()), id)
    }

    fn index_of(&self, user_id: &str) -> UserKeys {
        self.tag_keys(&self.user_tag(user_id))
    }

    /// The keys of the sessions of the user tag `tag`: `<prefix>{<tag>}:index`, the prefix
    /// `<prefix>{<tag>}:s:` of their hashes, and their slot's ledger.
    fn tag_keys(&self, tag: &str) -> UserKeys {
        let tagged = [self.inner.config.key_prefix.as_str(), "{", tag, "}:"].concat();
        let index = [tagged.as_str(), "index"].concat();
        let mut session_prefix = tagged;
        session_prefix.push_str("s:");
        UserKeys {
            index,
            session_prefix,
            ledger: Ledger::clone(self.ledger_of(tag)),
        }
    }

    /// The ledger of the hash slot of the user tag `tag`.
    fn ledger_of(&self, tag: &str) -> &Ledger {
        let ledgers = &self.inner.ledgers;
        match ledgers.len() {
            1 => &ledgers[0],
            _ => &ledgers[usize::from(cache_core::key::hash_slot(tag)) % ledgers.len()],
        }
    }

    /// A data field's JSON as stored: itself, or sealed and carried as a JSON string (base64)
    /// when encryption is configured (the store's scripts splice stored values into JSON).
    fn sealed_field(&self, seal: &FieldSeal<'_>, field: &str, json: Vec<u8>) -> Vec<u8> {
        match &self.inner.sealing {
            None => json,
            Some(keys) => {
                let sealed = keys.seal_as(seal.format(), &seal.context(field), json);
                format!("\"{}\"", STANDARD.encode(sealed)).into_bytes()
            }
        }
    }

    /// A stored data field's JSON, opened when encryption is configured, and the stored
    /// bytes when they were sealed under an older key (to be sealed again over them).
    fn opened_field(
        &self,
        seal: &FieldSeal<'_>,
        field: &str,
        stored: Vec<u8>,
    ) -> std::result::Result<(Vec<u8>, Option<Vec<u8>>), Unread> {
        // a JSON string holding base64, as `sealed_field` writes
        let sealed = || -> Option<Vec<u8>> {
            let text: String = serde_json::from_slice(&stored).ok()?;
            STANDARD.decode(text).ok()
        };
        let Some(keys) = &self.inner.sealing else {
            // sealed bytes start `0xCE 0x01`, `zg` in base64: other values cost one compare
            if stored.starts_with(b"\"zg")
                && sealed().is_some_and(|bytes| cache_core::encryption::looks_sealed(&bytes))
            {
                return Err(Unread::Settings(
                    "sealed, but this manager has no encryption key (CACHE_ENCRYPTION_KEY)",
                ));
            }
            return Ok((stored, None));
        };
        let Some(sealed) = sealed().filter(|bytes| cache_core::encryption::looks_sealed(bytes))
        else {
            return Err(Unread::Plain);
        };
        match keys.open(&seal.context(field), &sealed) {
            Ok(json) => Ok((json, (!keys.sealed_by_current(&sealed)).then_some(stored))),
            Err(err) if err.is_unknown_key() => Err(Unread::Settings(
                "sealed under a key this manager does not have (CACHE_ENCRYPTION_KEY): roll the \
                 new key out to every instance before any seals with it",
            )),
            Err(err) => Err(Unread::Tampered(err.to_string())),
        }
    }

    /// The session `stored` holds (see [`Opened`]). [`Error::Unreadable`] when this
    /// manager's encryption settings cannot read it (sealed under a key it lacks, or sealed
    /// while it has no key): nothing says it is altered, so it is left for the instances
    /// that can read it. `tag` is the user's tag (the caller has it already: it checked or
    /// built the key).
    fn session(&self, stored: Stored, tag: &str) -> Result<Opened> {
        let mut data = Map::new();
        let mut reseal = Vec::new();
        let seal = FieldSeal::new(tag, stored.sid.as_deref());
        for (field, stored_json) in stored.data {
            let json = match self.opened_field(&seal, &field, stored_json) {
                Ok((json, stale)) => {
                    if let Some(old) = stale {
                        let new = self.sealed_field(&seal, &field, json.clone());
                        reseal.push((field.clone(), Change::Replace { old, new }));
                    }
                    json
                }
                Err(Unread::Settings(reason)) => {
                    tracing::warn!(field, %reason, "session data cannot be read with this manager's encryption settings: the request fails closed, the session is kept");
                    return Err(Error::Unreadable {
                        field,
                        reason: reason.to_owned(),
                    });
                }
                Err(Unread::Tampered(reason)) => {
                    tracing::warn!(field, %reason, "session data does not decrypt: the session is treated as unknown and ended");
                    return Ok(Opened::Altered);
                }
                Err(Unread::Plain) => {
                    tracing::warn!(
                        field,
                        "session data is not encrypted, but this manager encrypts sessions: the session is treated as unknown"
                    );
                    return Ok(Opened::Plain);
                }
            };
            let value: Value = serde_json::from_slice(&json).map_err(|err| Error::Corrupt {
                id: String::new(),
                reason: format!("field `{field}`: {err}"),
            })?;
            data.insert(field, value);
        }
        let session = Session {
            user_id: stored.user_id,
            created_at: time(stored.created_at),
            last_accessed: time(stored.last_accessed),
            expires_at: time(stored.expires_at),
            data: SessionData::from_map(data),
        };
        Ok(Opened::Session(session, reseal))
    }

    /// Starts a session for `user_id` that lives `ttl` without use (default: the configured
    /// ttl) and never longer than the absolute ttl; returns its token. With a per-user
    /// limit, the user's oldest session (earliest created) is ended when the limit is exceeded.
    #[tracing::instrument(name = "session.create", level = "debug", skip_all)]
    pub async fn create_session(
        &self,
        user_id: &str,
        data: SessionData,
        ttl: Option<Duration>,
    ) -> Result<SessionToken> {
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
            return Err(Error::InvalidArgument {
                name: "user_id",
                reason: format!(
                    "expected 1 to {MAX_USER_ID_BYTES} bytes, got {}",
                    user_id.len()
                ),
            });
        }
        let config = &self.inner.config;
        let ttl = millis("session ttl", ttl.unwrap_or(config.ttl))?;
        let absolute = millis("absolute session ttl", config.absolute_ttl)?;
        let tag = self.user_tag(user_id);
        // format 2 binds the session's fields to a random id of its own
        let sid = match &self.inner.sealing {
            Some(keys) if keys.format() != SealFormat::V1 => {
                Some(crate::token::random_text::<16>()?)
            }
            _ => None,
        };
        let seal = FieldSeal::new(&tag, sid.as_deref());
        let fields = data
            .fields()
            .map(|(field, value)| {
                serde_json::to_vec(value)
                    .map(|json| (field.to_owned(), self.sealed_field(&seal, field, json)))
                    .map_err(|source| Error::Encode {
                        field: field.to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let token = SessionToken::generate(&tag)?;
        let keys = self.keys(&token);
        let new = NewSession {
            user_id,
            ttl,
            absolute,
            limit: config.max_per_user.unwrap_or(0),
            sid: sid.as_deref(),
            data: &fields,
        };
        let (_, evicted) = self.inner.backend.create(&keys, &new).await?;
        if self.inner.sealing.is_some() {
            self.inner
                .sids
                .put(&keys.id, || sid.clone().unwrap_or_default());
        }
        if evicted > 0 {
            tracing::debug!(evicted, "ended sessions beyond the per-user limit");
        }
        telemetry::count(&self.inner.config.name, "cachemere.session.created", 1);
        telemetry::count(
            &self.inner.config.name,
            "cachemere.session.revoked",
            evicted,
        );
        Ok(token)
    }

    /// The session of `token`, or `None` when there is none (never issued, ended or
    /// expired). Refreshes `last_accessed` and slides the expiry when `last_accessed` is
    /// older than [`touch_after`](SessionConfig::touch_after). A malformed token is an
    /// [`Error::InvalidToken`], found without asking the store; a session whose data this
    /// manager's encryption settings cannot read (a key it lacks) is [`Error::Unreadable`],
    /// and is kept. Fields sealed under an older key are sealed again with the current one.
    pub async fn get_session(&self, token: impl AsRef<str>) -> Result<Option<Session>> {
        match self.session_state(token).await? {
            SessionState::Active(session) => Ok(Some(session)),
            SessionState::Expired | SessionState::Unknown => Ok(None),
        }
    }

    /// Like [`get_session`](SessionManager::get_session), telling an expired session from
    /// an unknown one.
    pub async fn session_state(&self, token: impl AsRef<str>) -> Result<SessionState> {
        Ok(self.read(token.as_ref()).await?.0)
    }

    /// The token's state, and whether this read slid the expiry of the session the token
    /// names (so a cookie carrying it is sent again with the new expiry).
    pub(crate) async fn read(&self, token: &str) -> Result<(SessionState, bool)> {
        // the span `session.validate` wraps the lookup only when a subscriber listens: the
        // read of every authenticated request pays nothing else for it
        let span = tracing::debug_span!("session.validate", outcome = tracing::field::Empty);
        let state = match span.is_disabled() {
            true => self.lookup(token).await,
            false => Box::pin(self.lookup(token).instrument(span.clone())).await,
        };
        let outcome = match &state {
            Ok((SessionState::Active(_), _)) => "ok",
            Ok((SessionState::Expired, _)) => "expired",
            Ok((SessionState::Unknown, _)) | Err(Error::InvalidToken { .. }) => "invalid",
            Err(_) => "store_error",
        };
        // a disabled span would still look the field up by name
        if !span.is_disabled() {
            span.record("outcome", outcome);
        }
        telemetry::validated(&self.inner.config.name, outcome);
        state
    }

    async fn lookup(&self, token: &str) -> Result<(SessionState, bool)> {
        let token = SessionToken::parse(token)?;
        let keys = self.keys(&token);
        let touch_after =
            u64::try_from(self.inner.config.touch_after_value().as_millis()).unwrap_or(u64::MAX);
        match self.inner.backend.get(&keys, touch_after).await? {
            Lookup::Live(stored) if self.user_tag(&stored.user_id) == token.tag() => {
                let refreshed = stored.refreshed;
                if self.inner.sealing.is_some() {
                    self.remember_sid(&keys, &stored);
                }
                match self.session(stored, token.tag())? {
                    Opened::Session(session, reseal) => {
                        if !reseal.is_empty() {
                            // a rotation completes as sessions are used
                            if let Err(err) = self.inner.backend.update(&keys, &reseal).await {
                                tracing::debug!(error = %err, "could not seal session data again under the current key");
                            }
                        }
                        Ok((SessionState::Active(session), refreshed))
                    }
                    Opened::Altered => {
                        // Altered under a key this manager has: it can never be read. End it.
                        if let Err(err) = self.inner.backend.delete(&keys).await {
                            tracing::warn!(error = %err, "could not end an undecryptable session");
                        }
                        Ok((SessionState::Unknown, false))
                    }
                    Opened::Plain => Ok((SessionState::Unknown, false)),
                }
            }
            Lookup::Live(_) | Lookup::Missing => Ok((SessionState::Unknown, false)),
            Lookup::Expired => Ok((SessionState::Expired, false)),
        }
    }

    /// Sets and removes data fields of a live session in one atomic step; fields the patch
    /// does not name are untouched. Returns `false` when there is no live session (a patch
    /// never brings one back).
    ///
    /// With encryption in format 2, set fields are sealed to the session's `sid`: known
    /// without a read when this manager created, read or rotated the session recently,
    /// otherwise read first (one more round trip, a use of the session as a read is).
    pub async fn update_session(
        &self,
        token: impl AsRef<str>,
        patch: SessionPatch,
    ) -> Result<bool> {
        let token = SessionToken::parse(token.as_ref())?;
        if patch.is_empty() {
            return Ok(self.get_session(token.expose()).await?.is_some());
        }
        let keys = self.keys(&token);
        let sets = patch.changes.iter().any(|(_, json)| json.is_some());
        let sid = match &self.inner.sealing {
            Some(_) if sets => match self.sid(&token, &keys).await? {
                Some(sid) => sid,
                None => return Ok(false),
            },
            _ => None,
        };
        let seal = FieldSeal::new(token.tag(), sid.as_deref());
        let changes: Vec<(String, Change)> = patch
            .changes
            .into_iter()
            .map(|(field, json)| {
                let change = match json {
                    Some(json) => Change::Set(self.sealed_field(&seal, &field, json)),
                    None => Change::Remove,
                };
                (field, change)
            })
            .collect();
        self.inner.backend.update(&keys, &changes).await
    }

    /// The `sid` of the session `keys` names, for sealing fields to it: remembered from an
    /// earlier read or creation here, or read now (the read is a use, as a request's
    /// validation is). `None` when there is no live session; `Some(None)` for a session
    /// without one.
    async fn sid(&self, token: &SessionToken, keys: &Keys) -> Result<Option<Option<String>>> {
        if let Some(sid) = self.inner.sids.get(&keys.id) {
            return Ok(Some((!sid.is_empty()).then_some(sid)));
        }
        let touch_after =
            u64::try_from(self.inner.config.touch_after_value().as_millis()).unwrap_or(u64::MAX);
        match self.inner.backend.get(keys, touch_after).await? {
            Lookup::Live(stored) if self.user_tag(&stored.user_id) == token.tag() => {
                self.remember_sid(keys, &stored);
                Ok(Some(stored.sid))
            }
            Lookup::Live(_) | Lookup::Expired | Lookup::Missing => Ok(None),
        }
    }

    fn remember_sid(&self, keys: &Keys, stored: &Stored) {
        self.inner
            .sids
            .put(&keys.id, || stored.sid.clone().unwrap_or_default());
    }

    /// Pushes the expiry to at least `by` from now (within the absolute limit); returns the
    /// new expiry, or `None` when there is no live session.
    pub async fn extend_session(
        &self,
        token: impl AsRef<str>,
        by: Duration,
    ) -> Result<Option<SystemTime>> {
        let token = SessionToken::parse(token.as_ref())?;
        let by = millis("extension", by)?;
        Ok(self
            .inner
            .backend
            .extend(&self.keys(&token), by)
            .await?
            .map(time))
    }

    /// Ends a session; returns whether it was live.
    #[tracing::instrument(name = "session.revoke", level = "debug", skip_all)]
    pub async fn delete_session(&self, token: impl AsRef<str>) -> Result<bool> {
        let token = SessionToken::parse(token.as_ref())?;
        let ended = self.inner.backend.delete(&self.keys(&token)).await?;
        telemetry::count(
            &self.inner.config.name,
            "cachemere.session.revoked",
            u64::from(ended),
        );
        Ok(ended)
    }

    /// Issues a new token for the same session (after a login or a privilege change) in one
    /// atomic step; nothing else changes. `None` when there is no live session.
    ///
    /// The old token stops working at the new token's first use, or after the
    /// [`rotation_grace`](SessionConfig::rotation_grace) (60 s by default), whichever comes
    /// first. So a rotation whose outcome is unknown (an error after a timeout, when the
    /// store may still run it) never loses the session: the old token still reaches it, and
    /// rotating it again returns a working new token.
    #[tracing::instrument(name = "session.rotate", level = "debug", skip_all)]
    pub async fn rotate_session(&self, token: impl AsRef<str>) -> Result<Option<SessionToken>> {
        let token = SessionToken::parse(token.as_ref())?;
        let fresh = SessionToken::generate(token.tag())?;
        let grace = u64::try_from(self.inner.config.rotation_grace.as_millis()).unwrap_or(u64::MAX);
        let (old, new) = (self.keys(&token), self.keys(&fresh));
        let rotated = self.inner.backend.rotate(&old, &new, grace).await?;
        if let Some(sid) = self.inner.sids.get(&old.id).filter(|_| rotated) {
            // the session keeps its `sid`
            self.inner.sids.put(&new.id, || sid);
        }
        telemetry::count(
            &self.inner.config.name,
            "cachemere.session.rotated",
            u64::from(rotated),
        );
        Ok(rotated.then_some(fresh))
    }

    /// The user's live sessions.
    pub async fn get_user_sessions(&self, user_id: &str) -> Result<Vec<UserSession>> {
        let user = self.index_of(user_id);
        let tag = self.user_tag(user_id);
        self.inner
            .backend
            .list(&user, user_id)
            .await?
            .into_iter()
            .filter_map(|(id, stored)| match self.session(stored, &tag) {
                Ok(Opened::Session(session, _)) => Some(Ok(UserSession { id, session })),
                Ok(Opened::Altered | Opened::Plain) => None,
                Err(err) => Some(Err(err)),
            })
            .collect()
    }

    /// Ends one of the user's sessions by its [`UserSession::id`]; returns whether it was live.
    #[tracing::instrument(name = "session.revoke", level = "debug", skip_all)]
    pub async fn delete_user_session(&self, user_id: &str, id: &str) -> Result<bool> {
        let user = self.index_of(user_id);
        let owned = self
            .get_user_sessions(user_id)
            .await?
            .iter()
            .any(|session| session.id == id);
        if !owned {
            return Ok(false);
        }
        let keys = Keys::of(user, id.to_owned());
        let ended = self.inner.backend.delete(&keys).await?;
        telemetry::count(
            &self.inner.config.name,
            "cachemere.session.revoked",
            u64::from(ended),
        );
        Ok(ended)
    }

    /// Ends every session of the user in one atomic step ("log out everywhere"); returns how
    /// many were live. A session created concurrently either ends too or starts after it.
    #[tracing::instrument(name = "session.revoke", level = "debug", skip_all)]
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let user = self.index_of(user_id);
        let ended = self.inner.backend.revoke_all(&user, user_id).await?;
        telemetry::count(&self.inner.config.name, "cachemere.session.revoked", ended);
        Ok(ended)
    }

    /// Totals over every session, exact at the moment they are read: the atomic steps that
    /// create, touch, extend, rotate and end sessions keep them up to date (in a sorted set
    /// of sessions by expiry and one of users by their latest expiry), so reading them costs
    /// the same at any number of users: one script on one server, one per node on a Redis
    /// Cluster (Redis 7; older servers answer slot by slot). On a cluster each node's totals
    /// are exact at the moment that node reads them.
    pub async fn get_session_stats(&self) -> Result<SessionStats> {
        let counts = self.inner.backend.counts(&self.inner.ledgers).await?;
        Ok(SessionStats {
            total_sessions: counts.total,
            active_sessions: counts.active,
            expired_sessions: counts.total.saturating_sub(counts.active),
            unique_users: counts.users,
        })
    }

    /// Drops expired sessions from the statistics (they count as `expired_sessions` until
    /// then); returns how many. It costs in proportion to what it removes, not to the number
    /// of users. A user's index sheds its expired entries at the user's next login, and
    /// expires a day after its last session.
    #[tracing::instrument(name = "session.cleanup", level = "debug", skip_all)]
    pub async fn cleanup_expired(&self) -> Result<u64> {
        let removed = self.inner.backend.cleanup(&self.inner.ledgers).await?;
        telemetry::count(
            &self.inner.config.name,
            "cachemere.session.cleanup_removed",
            removed,
        );
        Ok(removed)
    }

    /// Runs [`cleanup_expired`](SessionManager::cleanup_expired) every `interval` on the
    /// tokio runtime until the returned handle is aborted; failures are logged.
    pub fn spawn_cleanup(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let manager = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match manager.cleanup_expired().await {
                    Ok(removed) => tracing::debug!(removed, "session clean-up"),
                    Err(err) => tracing::warn!(error = %err, "session clean-up failed"),
                }
            }
        })
    }
}

/// Why a stored field was not read.
enum Unread {
    /// This manager's encryption settings cannot read it; nothing says it is altered.
    Settings(&'static str),
    /// Altered, or sealed for another session, user or field, under a key this manager has.
    Tampered(String),
    /// Plaintext, while this manager encrypts: written by an instance without encryption
    /// (or before it was turned on), or planted. Not trusted, not ended.
    Plain,
}

/// A stored session as this manager reads it.
enum Opened {
    /// Readable; with its fields sealed under an older key, sealed again under the current
    /// one (to be written back: a rotation completes as sessions are used).
    Session(Session, Vec<(String, Change)>),
    /// Its data is provably altered under a key this manager has (moved from another
    /// session, user or field, or changed): treated as unknown and ended.
    Altered,
    /// Its data is plaintext while this manager encrypts: treated as unknown (a sealed
    /// field binds its user and name, plaintext binds nothing), and left in place.
    Plain,
}

#[cfg(test)]
mod tests {
    use super::{FieldSeal, Memo, SealFormat};

    /// The associated data is part of what is stored: sessions written by earlier releases
    /// (format 1) must keep opening, so its bytes are pinned here.
    #[test]
    fn the_associated_data_of_each_format_is_stable() {
        let tag = "00112233445566778899aabbccddeeff";
        let v1 = FieldSeal::new(tag, None);
        assert_eq!(v1.format(), SealFormat::V1);
        assert_eq!(
            v1.context("role"),
            b"cachemere session\x0000112233445566778899aabbccddeeff\x00role"
        );
        let v2 = FieldSeal::new(tag, Some("sid-Ab_9"));
        assert_eq!(v2.format(), SealFormat::V2);
        assert_eq!(
            v2.context("role"),
            b"cachemere session 2\x0000112233445566778899aabbccddeeff\x00sid-Ab_9\x00role"
        );
    }

    #[test]
    fn the_memo_answers_from_digests_and_starts_over_when_full() {
        let memo = Memo::default();
        let mut computed = 0;
        let mut id = |input: &str| {
            memo.get_or(input, || {
                computed += 1;
                format!("id of {}", input.len())
            })
        };
        assert_eq!(id("cms_token-one"), "id of 13");
        assert_eq!(id("cms_token-one"), "id of 13");
        assert_eq!(id("cms_token-two"), "id of 13");
        assert_eq!(computed, 2, "a repeated input is answered from the memo");
        assert_ne!(memo.digest("cms_token-one"), memo.digest("cms_token-two"));
        assert_ne!(
            memo.digest("cms_token-one"),
            Memo::default().digest("cms_token-one"),
            "each memo has its own random key"
        );
        for n in 0..Memo::CAPACITY {
            memo.get_or(&n.to_string(), String::new);
        }
        assert!(memo.map.lock().expect("not poisoned").len() <= Memo::CAPACITY);
    }
}
