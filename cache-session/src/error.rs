//! Errors of the session manager.

use std::time::Duration;

/// What went wrong in a session operation.
///
/// A store failure is always an error ([`Error::Store`]): sessions fail closed, never
/// answering "valid" when the store cannot say.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not one this manager issues; the store was not asked.
    #[error("invalid session token: {reason}")]
    InvalidToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store failed or timed out.
    #[error("session store failed")]
    Store(#[source] cache_core::Error),
    /// A stored session could not be read back.
    #[error("stored session {id} is corrupt: {reason}")]
    Corrupt {
        /// The first characters of the session's stored id (not the token).
        id: String,
        /// What could not be read.
        reason: String,
    },
    /// A session's data cannot be read with this manager's encryption settings, and nothing
    /// says it is altered: sealed under a key this manager does not have (a key rotation not
    /// yet rolled out to every instance), sealed while this manager has no key, or plaintext
    /// while it encrypts. The request fails closed, as for a store failure (a web layer's
    /// 503), and the session is left as it is for the instances that can read it.
    #[error(
        "session field `{field}` cannot be read with this manager's encryption settings: {reason}"
    )]
    Unreadable {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A session field could not be encoded as JSON.
    #[error("session field `{field}` cannot be encoded as JSON")]
    Encode {
        /// The field.
        field: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A session field does not decode as the requested type.
    #[error("session field `{field}` does not decode as the requested type")]
    Decode {
        /// The field.
        field: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// An argument is out of range.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A duration does not fit the store's millisecond clock.
    #[error("{name} of {duration:?} is out of range")]
    DurationOutOfRange {
        /// The duration's role.
        name: &'static str,
        /// The duration.
        duration: Duration,
    },
    /// A request that changes state carried its session in a cookie without the session's
    /// CSRF token (the CSRF check of the `axum` feature's `SessionLayer`).
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {reason}")]
    Random {
        /// The system's message.
        reason: String,
    },
}

impl Error {
    /// Whether retrying may succeed: store timeouts and connection failures.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(err) if err.is_transient())
    }

    /// Whether the store, not the request, is at fault (a web layer's 503 rather than 401).
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Error::Store(_) | Error::Random { .. } | Error::Unreadable { .. }
        )
    }
}

impl From<cache_core::Error> for Error {
    fn from(err: cache_core::Error) -> Error {
        Error::Store(err)
    }
}

/// `Result<T, cache_session::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
