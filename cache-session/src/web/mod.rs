//! Sessions in [axum](https://docs.rs/axum) and tower (feature `axum`): a layer, extractors,
//! cookies and bearer tokens, rejections in JSON, and an optional CSRF check.
//!
//! - [`SessionLayer`]: reads the token from a cookie, an `Authorization: Bearer` header or
//!   either ([`Transport`]); sets, refreshes and clears the cookie ([`CookieSettings`]:
//!   `__Host-session`, `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`, and a `Max-Age` that
//!   follows the session's expiry).
//! - [`SessionHandle`]: the request's session, read on first use (a request that does not
//!   use it costs no store round trip and gets no `Set-Cookie`): `get`, `update`, `login`
//!   (a new token, the old session ended), `rotate` (after a privilege change), `logout`,
//!   `logout_everywhere`, `csrf_token`.
//! - [`Authenticated`]: a live session or a [`SessionRejection`] (401, 403 or 503, as
//!   `{"error": "..."}`); `Option<Authenticated>` for routes open to all.
//!
//! A malformed, unknown, ended or expired token is no session, never an error; a store
//! failure is never taken for "no session" (503: sessions fail closed).
//!
//! ```
//! use axum::{Json, Router, routing::{get, post}};
//! use cache_session::web::{Authenticated, SessionHandle, SessionLayer, SessionRejection};
//! use cache_session::{MemoryStore, SessionConfig, SessionData, SessionManager};
//! use serde_json::{Value, json};
//!
//! async fn login(session: SessionHandle) -> Result<Json<Value>, SessionRejection> {
//!     let token = session.login("42", SessionData::new().with("role", "teacher")?).await?;
//!     // browsers get the cookie; other clients may send the token as a bearer token
//!     Ok(Json(json!({ "token": token.expose() })))
//! }
//!
//! async fn profile(user: Authenticated) -> Json<Value> {
//!     Json(json!({ "user_id": user.user_id, "role": user.data.role() }))
//! }
//!
//! async fn promote(user: Authenticated) -> Result<&'static str, SessionRejection> {
//!     user.handle().insert("role", "admin").await?;
//!     user.handle().rotate().await?; // a privilege change gets a new token
//!     Ok("promoted")
//! }
//!
//! let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(profile))
//!     .route("/promote", post(promote))
//!     .layer(SessionLayer::new(manager));
//! ```

mod csrf;
mod handle;
mod layer;
mod rejection;
mod transport;

pub use self::csrf::CSRF_HEADER;
pub use self::handle::{Authenticated, SessionHandle};
pub use self::layer::{SessionLayer, SessionMiddleware};
pub use self::rejection::SessionRejection;
pub use self::transport::{CookieSettings, SameSite, Transport};
