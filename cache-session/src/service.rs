//! The seed's session service: authentication workflows on the manager.

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::manager::{SessionManager, SessionState};
use crate::session::{Session, SessionData};
use crate::token::SessionToken;

/// Why a token does not grant a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Malformed, never issued, ended or revoked: answer 401.
    #[error("invalid session")]
    Invalid,
    /// The session expired: answer 401 (and ask the user to log in again).
    #[error("session expired")]
    Expired,
    /// The store could not be asked: answer 503, never let the request through.
    #[error("session store unavailable")]
    Store(#[source] Error),
}

impl ValidationError {
    /// The HTTP status a web layer answers with: 401, or 503 for a store failure.
    pub fn http_status(&self) -> u16 {
        match self {
            ValidationError::Invalid | ValidationError::Expired => 401,
            ValidationError::Store(_) => 503,
        }
    }
}

/// Authentication workflows: sessions created with a role, validated with a typed error.
#[derive(Debug, Clone)]
pub struct SessionService {
    manager: SessionManager,
}

impl SessionService {
    /// A service on `manager`.
    pub fn new(manager: SessionManager) -> SessionService {
        SessionService { manager }
    }

    /// The manager underneath.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// Starts a session for an authenticated user: `additional_data` plus `role`.
    pub async fn create_authenticated_session(
        &self,
        user_id: &str,
        role: &str,
        additional_data: SessionData,
    ) -> Result<SessionToken> {
        let data = additional_data.with("role", role)?;
        self.manager.create_session(user_id, data, None).await
    }

    /// The session `token` grants, or why it grants none.
    pub async fn validate_session(&self, token: &str) -> Result<Session, ValidationError> {
        match self.manager.session_state(token).await {
            Ok(SessionState::Active(session)) => Ok(session),
            Ok(SessionState::Expired) => Err(ValidationError::Expired),
            Ok(SessionState::Unknown) | Err(Error::InvalidToken { .. }) => {
                Err(ValidationError::Invalid)
            }
            Err(err) => Err(ValidationError::Store(err)),
        }
    }

    /// Whether `token` no longer grants a session (expired, or unknown); store failures are
    /// errors.
    pub async fn is_session_expired(&self, token: &str) -> Result<bool> {
        match self.validate_session(token).await {
            Ok(_) => Ok(false),
            Err(ValidationError::Invalid | ValidationError::Expired) => Ok(true),
            Err(ValidationError::Store(err)) => Err(err),
        }
    }

    /// Extends a live session to at least `minutes` from now; the new expiry, or `None`.
    pub async fn extend_user_session(
        &self,
        token: &str,
        minutes: u64,
    ) -> Result<Option<SystemTime>> {
        let by = Duration::from_secs(minutes.saturating_mul(60));
        self.manager.extend_session(token, by).await
    }
}
