//! The request's session: read on first use, written field by field, with its cookie set or
//! cleared on the way out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::{HeaderMap, Method};
use serde::Serialize;
use tokio::sync::{Mutex, MutexGuard};

use super::csrf;
use super::rejection::SessionRejection;
use super::transport::{CookieSettings, Incoming, Source, Transport, expiry_after};
use crate::error::{Error, Result};
use crate::manager::{SessionManager, SessionState};
use crate::session::{Session, SessionData, SessionPatch};
use crate::token::SessionToken;

/// What a [`SessionLayer`](super::SessionLayer) was built with.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) manager: SessionManager,
    pub(super) transport: Transport,
    pub(super) cookie: CookieSettings,
    pub(super) csrf: bool,
}

/// The session of the current request, as the [`SessionLayer`](super::SessionLayer) hands it
/// to handlers: an extractor on any route behind the layer.
///
/// Nothing is read until a method asks: a request that does not use its session makes no
/// store round trip and gets no `Set-Cookie`. The first read is kept for the rest of the
/// request (clones of the handle share it). A token that is malformed, unknown, ended or
/// expired is no session, never an error.
///
/// Writes go to the store field by field as they are made ([`update`](SessionHandle::update)),
/// so concurrent requests of one session never undo each other's changes, and nothing is
/// saved when the response leaves. Sessions belong to users: the write that starts one is
/// [`login`](SessionHandle::login), which always issues a new token (a token the client
/// chose is never adopted).
///
/// ```
/// use axum::{Router, routing::post};
/// use cache_session::web::{SessionHandle, SessionLayer, SessionRejection};
/// use cache_session::{MemoryStore, SessionConfig, SessionData, SessionManager};
///
/// async fn login(session: SessionHandle) -> Result<String, SessionRejection> {
///     // after checking the user's credentials:
///     let data = SessionData::new().with("role", "teacher")?;
///     session.login("42", data).await?; // the cookie is set on this response
///     Ok("welcome".into())
/// }
///
/// async fn logout(session: SessionHandle) -> Result<&'static str, SessionRejection> {
///     session.logout().await?; // ends the session, clears the cookie
///     Ok("bye")
/// }
///
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/logout", post(logout))
///     .layer(SessionLayer::new(manager));
/// ```
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Arc<Settings>,
    source: Option<Source>,
    /// A state-changing request whose session came in a cookie without the session's CSRF
    /// token (only with the check on): it may not act with the session it brought.
    forged: bool,
    state: Mutex<State>,
}

struct State {
    /// The session's token: the request's, a new one after a login or rotation, none after a
    /// logout.
    token: Option<SessionToken>,
    /// Whether `token` was issued during this request (so the CSRF check no longer applies).
    minted: bool,
    /// What the request sent instead of a token, until it is read (and counted as invalid).
    malformed: Option<String>,
    read: Option<SessionState>,
    cookie: CookieChange,
}

enum CookieChange {
    Keep,
    Set(SystemTime),
    Clear,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("source", &self.shared.source)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(super) fn new(
        settings: Arc<Settings>,
        method: &Method,
        headers: &HeaderMap,
    ) -> SessionHandle {
        let incoming = Incoming::from_headers(settings.transport, &settings.cookie, headers);
        let forged = settings.csrf
            && incoming.source == Some(Source::Cookie)
            && csrf::changes_state(method)
            && incoming
                .token
                .as_ref()
                .is_some_and(|token| !csrf::verify(token, headers));
        SessionHandle {
            shared: Arc::new(Shared {
                settings,
                source: incoming.source,
                forged,
                state: Mutex::new(State {
                    token: incoming.token,
                    minted: false,
                    malformed: incoming.malformed,
                    read: None,
                    cookie: CookieChange::Keep,
                }),
            }),
        }
    }

    /// The manager underneath, for what the handle does not offer (listing a user's sessions).
    pub fn manager(&self) -> &SessionManager {
        &self.shared.settings.manager
    }

    async fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().await
    }

    /// Refuses to act with a session the request may have forged (see
    /// [`SessionLayer::csrf`](super::SessionLayer::csrf)).
    fn authorize(&self, state: &State) -> Result<()> {
        match self.shared.forged && !state.minted {
            true => Err(Error::Csrf),
            false => Ok(()),
        }
    }

    /// Whether the cookie carries this request's session, so that a new expiry is sent in it.
    fn in_cookie(&self, state: &State) -> bool {
        state.minted || self.shared.source == Some(Source::Cookie)
    }

    async fn read(&self, state: &mut State) -> Result<SessionState> {
        self.authorize(state)?;
        if let Some(read) = &state.read {
            return Ok(read.clone());
        }
        let Some(token) = &state.token else {
            if let Some(malformed) = state.malformed.take() {
                // validated like any token, so that it is counted and traced as invalid; the
                // store is not asked
                let refused = self.manager().read(&malformed).await;
                debug_assert!(matches!(refused, Err(Error::InvalidToken { .. })));
            }
            state.read = Some(SessionState::Unknown);
            return Ok(SessionState::Unknown);
        };
        let (read, refreshed) = self.manager().read(token.expose()).await?;
        if let (SessionState::Active(session), true) = (&read, refreshed)
            && self.in_cookie(state)
        {
            state.cookie = CookieChange::Set(session.expires_at);
        }
        state.read = Some(read.clone());
        Ok(read)
    }

    /// The request's session, or `None` (no token, or one that grants no session). Read
    /// once per request; refreshes the session's activity as
    /// [`SessionManager::get_session`] does, and sends the cookie again when that slides
    /// its expiry.
    ///
    /// Errors: [`Error::Csrf`] on a forged state-changing request (with the CSRF check on),
    /// and store failures (sessions fail closed).
    pub async fn get(&self) -> Result<Option<Session>> {
        match self.session_state().await? {
            SessionState::Active(session) => Ok(Some(session)),
            SessionState::Expired | SessionState::Unknown => Ok(None),
        }
    }

    /// Like [`get`](SessionHandle::get), telling an expired session from an unknown one.
    pub async fn session_state(&self) -> Result<SessionState> {
        let mut state = self.state().await;
        self.read(&mut state).await
    }

    /// Starts a session for `user_id` (after the handler has checked the user's credentials)
    /// with a new token, and sets the cookie on this response. A session the request brought
    /// is ended first, so a login never keeps a token from before it (no session fixation).
    /// Returns the new token, for clients that send it as a bearer token.
    ///
    /// A login is not subject to the CSRF check.
    pub async fn login(&self, user_id: &str, data: SessionData) -> Result<SessionToken> {
        let mut state = self.state().await;
        if let Some(old) = state.token.clone() {
            self.manager().delete_session(&old).await?;
            state.token = None;
            state.read = Some(SessionState::Unknown);
        }
        let manager = self.manager();
        let token = manager.create_session(user_id, data, None).await?;
        let config = manager.config();
        state.token = Some(token.clone());
        state.minted = true;
        state.read = None;
        state.cookie = CookieChange::Set(expiry_after(config.ttl.min(config.absolute_ttl)));
        Ok(token)
    }

    /// Issues a new token for the same session (after a privilege change) and puts it in the
    /// cookie on this response; the old token stops working before the response leaves (the
    /// new one is used once, which ends it). Returns the new token, or `None` when there is
    /// no live session.
    ///
    /// When the store fails after the rotation (the outcome is unknown), the old token keeps
    /// reaching the session until the new one is first used or for
    /// [`rotation_grace`](crate::SessionConfig::rotation_grace), so nobody is logged out.
    pub async fn rotate(&self) -> Result<Option<SessionToken>> {
        let mut state = self.state().await;
        self.authorize(&state)?;
        let Some(old) = state.token.clone() else {
            return Ok(None);
        };
        let manager = self.manager();
        let Some(new) = manager.rotate_session(&old).await? else {
            state.read = None;
            return Ok(None);
        };
        let read = match manager.read(new.expose()).await {
            Ok((read, _)) => Some(read),
            Err(err) => {
                tracing::debug!(error = %err, "the old token ends at the new one's next use");
                None
            }
        };
        let expires_at = match &read {
            Some(SessionState::Active(session)) => session.expires_at,
            _ => expiry_after(manager.config().ttl),
        };
        state.token = Some(new.clone());
        state.minted = true;
        state.read = read;
        state.cookie = CookieChange::Set(expires_at);
        Ok(Some(new))
    }

    /// Sets and removes fields of the session in one atomic step (see
    /// [`SessionManager::update_session`]); `false` when there is no live session (a patch
    /// never starts one: see [`login`](SessionHandle::login)).
    pub async fn update(&self, patch: SessionPatch) -> Result<bool> {
        let mut state = self.state().await;
        self.authorize(&state)?;
        let Some(token) = state.token.clone() else {
            return Ok(false);
        };
        let updated = self.manager().update_session(&token, patch).await?;
        state.read = None;
        Ok(updated)
    }

    /// Sets one field (see [`update`](SessionHandle::update)).
    pub async fn insert<T: Serialize + ?Sized>(&self, field: &str, value: &T) -> Result<bool> {
        self.update(SessionPatch::new().set(field, value)?).await
    }

    /// Removes one field (see [`update`](SessionHandle::update)).
    pub async fn remove(&self, field: &str) -> Result<bool> {
        self.update(SessionPatch::new().remove(field)).await
    }

    /// Pushes the expiry to at least `by` from now (see [`SessionManager::extend_session`])
    /// and sends the cookie again with it; the new expiry, or `None` without a live session.
    pub async fn extend(&self, by: Duration) -> Result<Option<SystemTime>> {
        let mut state = self.state().await;
        self.authorize(&state)?;
        let Some(token) = state.token.clone() else {
            return Ok(None);
        };
        let expiry = self.manager().extend_session(&token, by).await?;
        if let Some(expires_at) = expiry
            && self.in_cookie(&state)
        {
            state.cookie = CookieChange::Set(expires_at);
        }
        state.read = None;
        Ok(expiry)
    }

    /// Ends the session and clears the cookie (`Max-Age=0`, same path and domain); returns
    /// whether a session was live. When the store fails, the cookie is kept (the session may
    /// still be live) and the error returned.
    pub async fn logout(&self) -> Result<bool> {
        let mut state = self.state().await;
        self.authorize(&state)?;
        let ended = match state.token.clone() {
            Some(token) => self.manager().delete_session(&token).await?,
            None => false,
        };
        self.forget(&mut state);
        Ok(ended)
    }

    /// Ends every session of the request's user ("log out everywhere", see
    /// [`SessionManager::delete_user_sessions`]) and clears the cookie; returns how many
    /// were live (0 without a session).
    pub async fn logout_everywhere(&self) -> Result<u64> {
        let mut state = self.state().await;
        let ended = match self.read(&mut state).await? {
            SessionState::Active(session) => {
                self.manager()
                    .delete_user_sessions(&session.user_id)
                    .await?
            }
            SessionState::Expired | SessionState::Unknown => 0,
        };
        self.forget(&mut state);
        Ok(ended)
    }

    fn forget(&self, state: &mut State) {
        state.token = None;
        state.malformed = None;
        state.read = Some(SessionState::Unknown);
        state.cookie = CookieChange::Clear;
    }

    /// The session's token as it stands: the request's, the new one after
    /// [`login`](SessionHandle::login) or [`rotate`](SessionHandle::rotate), `None` after a
    /// logout or when the request brought none (or a malformed one). Whether it grants a
    /// session is for [`get`](SessionHandle::get) to say.
    pub async fn token(&self) -> Option<SessionToken> {
        self.state().await.token.clone()
    }

    /// The CSRF token of the session's token, for the page or client to send back in the
    /// `x-csrf-token` header of state-changing requests (see
    /// [`SessionLayer::csrf`](super::SessionLayer::csrf)). A keyed hash of the session token:
    /// it changes with every login and rotation, and gives nobody the session token.
    pub async fn csrf_token(&self) -> Option<String> {
        self.state().await.token.as_ref().map(csrf::token_for)
    }

    /// The `Set-Cookie` header this request's session changes call for, if any.
    pub(super) fn outgoing_cookie(&self) -> Option<http::HeaderValue> {
        let settings = &self.shared.settings;
        if !settings.transport.sets_cookie() {
            return None;
        }
        let Ok(state) = self.shared.state.try_lock() else {
            tracing::debug!("a session operation outlived its response; its cookie is not sent");
            return None;
        };
        match (&state.cookie, &state.token) {
            (CookieChange::Set(expires_at), Some(token)) => settings.cookie.set(token, *expires_at),
            (CookieChange::Clear, _) => settings.cookie.clear(),
            (CookieChange::Keep | CookieChange::Set(_), _) => None,
        }
    }

    fn from_parts(parts: &Parts) -> Result<SessionHandle, SessionRejection> {
        parts
            .extensions
            .get::<SessionHandle>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionHandle {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, SessionRejection> {
        SessionHandle::from_parts(parts)
    }
}

/// A request with a live session: an extractor that rejects the request otherwise (401 with
/// no session, an invalid one or an expired one; 403 for a forged state-changing request
/// with the CSRF check on; 503 when the store cannot be asked), as [`SessionRejection`].
///
/// `Option<Authenticated>` is the extractor for routes open to all: `None` for the 401
/// cases, the other rejections still apply (a store failure is never taken for "no
/// session"). It dereferences to the [`Session`].
///
/// ```
/// use axum::{Json, Router, routing::get};
/// use cache_session::web::{Authenticated, SessionLayer};
/// use cache_session::{MemoryStore, SessionConfig, SessionManager};
///
/// async fn me(user: Authenticated) -> Json<serde_json::Value> {
///     Json(serde_json::json!({ "user_id": user.user_id, "role": user.data.role() }))
/// }
///
/// async fn home(user: Option<Authenticated>) -> String {
///     match user {
///         Some(user) => format!("hello {}", user.user_id),
///         None => "hello stranger".into(),
///     }
/// }
///
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .route("/", get(home))
///     .layer(SessionLayer::new(manager));
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated {
    session: Session,
    handle: SessionHandle,
}

impl Authenticated {
    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The handle, to change the session (update, rotate, logout).
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// The session, by value.
    pub fn into_session(self) -> Session {
        self.session
    }

    async fn extract(parts: &Parts) -> Result<Authenticated, SessionRejection> {
        let handle = SessionHandle::from_parts(parts)?;
        match handle.session_state().await? {
            SessionState::Active(session) => Ok(Authenticated { session, handle }),
            SessionState::Expired => Err(SessionRejection::Expired),
            SessionState::Unknown if handle.shared.source.is_none() => {
                Err(SessionRejection::Missing)
            }
            SessionState::Unknown => Err(SessionRejection::Invalid),
        }
    }
}

impl std::ops::Deref for Authenticated {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, SessionRejection> {
        Authenticated::extract(parts).await
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<Option<Self>, SessionRejection> {
        match Authenticated::extract(parts).await {
            Ok(user) => Ok(Some(user)),
            Err(
                SessionRejection::Missing | SessionRejection::Invalid | SessionRejection::Expired,
            ) => Ok(None),
            Err(rejection) => Err(rejection),
        }
    }
}
