//! Secure user sessions for [cachemere](https://docs.rs/cachemere), on Redis or in process.
//!
//! - [`SessionManager`]: create, read (with activity tracking), update, extend, rotate and
//!   end sessions; list and revoke all sessions of a user; statistics and clean-up.
//! - [`SessionService`]: the seed's authentication workflow on top, with a typed
//!   [`ValidationError`] a web layer maps to 401 or 503.
//!
//! - `web` (feature `axum`): a tower layer and axum extractors, the token in a cookie or a
//!   bearer header, JSON rejections, CSRF tokens.
//!
//! Features:
//! - `metrics`: session counters through the `metrics` facade;
//! - `axum`: the `web` module.
//!
//! Security properties:
//! - tokens carry 256 random bits from the operating system, in a fixed format
//!   ([`SessionToken`]) checked before the store is asked; `Debug` and `Display` hide them;
//! - the store holds only a hash of each token (HMAC-SHA-256 when `SESSION_SECRET` is set);
//!   user ids are stored in plain, and a token carries a hash of its user id that is keyed
//!   only when `SESSION_SECRET` is set (see [`SessionConfig::secret`]; a manager without a
//!   secret warns at start-up);
//! - idle and absolute timeouts, enforced by the store's clock and key expiry;
//! - every state change is one atomic step on keys of one hash slot (Redis Cluster ready);
//! - store failures are errors, never a valid session (fail closed).
//!
//! ```
//! use cache_session::{MemoryStore, SessionConfig, SessionData, SessionManager, SessionService};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_session::Result<()> {
//! let service = SessionService::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()));
//! let token = service
//!     .create_authenticated_session("42", "teacher", SessionData::new().with("department", "Math")?)
//!     .await?;
//! let session = service.validate_session(token.expose()).await.expect("valid");
//! assert_eq!(session.data.role(), Some("teacher"));
//! assert!(service.validate_session("forged").await.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Data layout (Redis)
//!
//! With the default `session:` prefix and `T` the user's tag (a hash of the user id that the
//! token carries):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `session:{T}:s:<token hash>` | hash | `user_id`, times (ms), `ttl`, `d:<field>` = JSON; expires with the session |
//! | `session:{T}:index` | sorted set | the tag's session ids scored by expiry; expires a day after its last entry |
//! | `session:stats:live` | sorted set | every session's id scored by its expiry, until the clean-up after it (statistics) |
//! | `session:stats:users` | sorted set | user ids scored by the latest expiry of their sessions (statistics) |
//!
//! On a Redis Cluster the two statistics sets are kept per hash slot, as
//! `session:{l<n>}:stats:live` and `:users` with a hash tag `l<n>` in the slot, so that the
//! script that changes a session updates the statistics of its slot in the same atomic
//! step. Statistics read them with one script per node (Redis 7 or newer; older servers
//! answer slot by slot). Earlier versions kept a `session:users` registry, no longer used:
//! delete it after the upgrade; sessions created before the upgrade join the statistics
//! when next touched.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod manager;
mod service;
mod session;
mod store;
mod telemetry;
mod token;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;

pub use cache_core::{MemoryStore, RedisStore};

pub use crate::config::{DEFAULT_ROTATION_GRACE, SessionConfig};
pub use crate::error::{Error, Result};
pub use crate::manager::{SessionManager, SessionState, SessionStats, UserSession};
pub use crate::service::{SessionService, ValidationError};
pub use crate::session::{Session, SessionData, SessionPatch};
pub use crate::store::SessionStore;
pub use crate::token::{SessionToken, TOKEN_LEN};
