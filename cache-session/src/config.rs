//! Session settings.

use std::time::Duration;

use cache_core::Config;
use cache_core::config::Secret;
use cache_core::encryption::EncryptionKeys;

/// How sessions behave: lifetimes, activity tracking, per-user limit, token hashing key.
///
/// ```
/// use cache_session::SessionConfig;
/// use std::time::Duration;
///
/// let config = SessionConfig::default()
///     .ttl(Duration::from_secs(30 * 60))
///     .absolute_ttl(Duration::from_secs(8 * 3600))
///     .max_sessions_per_user(Some(5));
/// assert_eq!(config.touch_after_value(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) ttl: Duration,
    pub(crate) absolute_ttl: Duration,
    pub(crate) touch_after: Option<Duration>,
    pub(crate) max_per_user: Option<usize>,
    pub(crate) key_prefix: String,
    pub(crate) cleanup_interval: Duration,
    pub(crate) secret: Option<Secret>,
    pub(crate) rotation_grace: Duration,
    pub(crate) encryption: Option<EncryptionKeys>,
    pub(crate) name: std::sync::Arc<str>,
}

/// The default [`rotation_grace`](SessionConfig::rotation_grace).
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(60);

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig::from_config(&Config::default())
    }
}

impl SessionConfig {
    /// The session settings of a [`Config`]: `SESSION_EXPIRE_SECONDS`,
    /// `SESSION_ABSOLUTE_EXPIRE_SECONDS`, `SESSION_MAX_PER_USER`, `SESSION_SECRET`,
    /// `SESSION_CLEANUP_INTERVAL`, and `CACHE_KEY_PREFIX` before the `session:` key prefix.
    pub fn from_config(config: &Config) -> SessionConfig {
        SessionConfig {
            ttl: config.session_ttl,
            absolute_ttl: config.session_absolute_ttl,
            touch_after: None,
            max_per_user: config.session_max_per_user,
            key_prefix: format!("{}session:", config.key_prefix),
            cleanup_interval: config.session_cleanup_interval,
            secret: config.session_secret.clone(),
            rotation_grace: DEFAULT_ROTATION_GRACE,
            encryption: config.encryption_keys.clone(),
            name: std::sync::Arc::from("default"),
        }
    }

    /// The manager's name, the `session.manager.name` label of its metrics (as caches carry
    /// `cache.name`), for telling apart the managers of one process (default `default`).
    ///
    /// ```
    /// use cache_session::SessionConfig;
    ///
    /// let config = SessionConfig::default().name("students");
    /// assert_eq!(config.name_value(), "students");
    /// ```
    pub fn name(mut self, name: impl AsRef<str>) -> SessionConfig {
        self.name = std::sync::Arc::from(name.as_ref());
        self
    }

    /// The manager's [`name`](SessionConfig::name).
    pub fn name_value(&self) -> &str {
        &self.name
    }

    /// [`from_config`](SessionConfig::from_config) of [`Config::from_env`].
    pub fn from_env() -> cache_core::Result<SessionConfig> {
        Config::from_env().map(|config| SessionConfig::from_config(&config))
    }

    /// Idle timeout: a session not used for this long expires (default
    /// `SESSION_EXPIRE_SECONDS`, 24 hours). Reads and [`extend`](crate::SessionManager::extend_session)
    /// push the expiry forward.
    pub fn ttl(mut self, ttl: Duration) -> SessionConfig {
        self.ttl = ttl;
        self
    }

    /// Absolute timeout: no session lives longer than this after its creation, however
    /// active (default `SESSION_ABSOLUTE_EXPIRE_SECONDS`, 7 days).
    pub fn absolute_ttl(mut self, ttl: Duration) -> SessionConfig {
        self.absolute_ttl = ttl;
        self
    }

    /// How stale `last_accessed` may get before a read rewrites it (and slides the expiry).
    /// Default: a quarter of the ttl, at most one minute.
    pub fn touch_after(mut self, after: Duration) -> SessionConfig {
        self.touch_after = Some(after);
        self
    }

    /// The most sessions one user keeps; creating one more ends the oldest (earliest created): "you were signed out of your oldest device".
    pub fn max_sessions_per_user(mut self, max: Option<usize>) -> SessionConfig {
        self.max_per_user = max;
        self
    }

    /// The prefix of every session key (default `session:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> SessionConfig {
        self.key_prefix = prefix.into();
        self
    }

    /// The key of the HMAC that hashes tokens (for the store) and user ids (into the user
    /// tag every token carries); `SESSION_SECRET`. Changing it ends every session.
    ///
    /// What is stored and sent either way: the store holds hashes of tokens, never a token,
    /// and user ids in plain (each session's `user_id` field and the statistics' `users`
    /// sets). A token carries 128 bits of a hash of its user id, to route it to the
    /// user's keys. With a secret that hash is an HMAC nobody can compute without the secret;
    /// **without one it is an unkeyed SHA-256**, so whoever holds a token (a leaked log line,
    /// say) can find its user by hashing candidate ids. Set a secret of at least 32 random
    /// bytes in production: [`SessionManager::new`](crate::SessionManager::new) logs a
    /// warning when there is none.
    pub fn secret(mut self, secret: impl Into<String>) -> SessionConfig {
        self.secret = Some(Secret::new(secret));
        self
    }

    /// Encrypts the values of session data fields in the store (default
    /// `CACHE_ENCRYPTION_KEY`, off when unset), as a cache does its values
    /// ([`EncryptionKeys`]). A field is sealed with its name and the user's tag as associated
    /// data, so it does not decrypt under another field or another user's session; in
    /// [`SealFormat::V2`](cache_core::encryption::SealFormat::V2) (`CACHE_ENCRYPTION_FORMAT=2`)
    /// a session gets a random `sid` at creation and its fields are bound to it too, so they
    /// do not decrypt in another session (sessions created before keep format 1). A
    /// session whose data is altered under a configured key is treated as unknown and
    /// ended; one sealed under a key that is not configured (a rotation not rolled out to
    /// this instance yet), or sealed while no key is, is [`Error::Unreadable`] (the request
    /// fails closed, the session is kept); plaintext while encrypting is treated as unknown
    /// and kept. A field sealed under an older key is sealed again under the first key when
    /// the session is read by its token (see the README's key rotation; a listing by user,
    /// `get_user_sessions`, reads without writing). User ids, times and field names
    /// stay readable: the store's scripts need them.
    ///
    /// [`Error::Unreadable`]: crate::Error::Unreadable
    pub fn encryption(mut self, keys: Option<EncryptionKeys>) -> SessionConfig {
        self.encryption = keys;
        self
    }

    /// How long the old token of a [rotated](crate::SessionManager::rotate_session) session
    /// still reaches it (default 60 s), unless the new token is used first: its first use
    /// ends the old one at once.
    ///
    /// The grace makes rotation safe when its outcome is unknown: if `rotate_session` times
    /// out and the store runs the rotation later, the caller never received the new token,
    /// and the old one keeps working (and can be rotated again) instead of the user being
    /// logged out. The cost: for at most the grace, and only until the new token's first
    /// use, a copy of the old token (for example one an attacker planted before login) also
    /// reaches the session. `Duration::ZERO` ends the old token at the rotation itself.
    pub fn rotation_grace(mut self, grace: Duration) -> SessionConfig {
        self.rotation_grace = grace;
        self
    }

    /// Time between runs of [`spawn_cleanup`](crate::SessionManager::spawn_cleanup).
    pub fn cleanup_interval(mut self, interval: Duration) -> SessionConfig {
        self.cleanup_interval = interval;
        self
    }

    /// The effective [`touch_after`](SessionConfig::touch_after).
    pub fn touch_after_value(&self) -> Duration {
        self.touch_after
            .unwrap_or_else(|| (self.ttl / 4).min(Duration::from_secs(60)))
    }
}
