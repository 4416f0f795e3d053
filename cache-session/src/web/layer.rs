//! The tower layer: hands each request a [`SessionHandle`] and sets or clears the session
//! cookie on its response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::SET_COOKIE;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::handle::{SessionHandle, Settings};
use super::transport::{CookieSettings, Transport};
use crate::error::Result;
use crate::manager::SessionManager;

/// A tower layer that gives every request behind it a session: the [`SessionHandle`] and
/// [`Authenticated`](super::Authenticated) extractors, the token read from a cookie or an
/// `Authorization: Bearer` header ([`Transport`]), and the cookie set, sent again with a
/// new expiry, or cleared on the response when the handler's session calls ask for it.
///
/// ```
/// use axum::{Router, routing::get};
/// use cache_session::web::{Authenticated, CookieSettings, SessionLayer, Transport};
/// use cache_session::{MemoryStore, SessionConfig, SessionManager};
///
/// # fn main() -> cache_session::Result<()> {
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let layer = SessionLayer::new(manager)
///     .transport(Transport::CookieOrBearer)
///     .cookie(CookieSettings::default().name("__Host-sid"))?
///     .csrf(true);
/// let app: Router = Router::new()
///     .route("/me", get(|user: Authenticated| async move { user.user_id.clone() }))
///     .layer(layer);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    settings: Arc<Settings>,
}

impl SessionLayer {
    /// Sessions from `manager`, in the default cookie ([`CookieSettings::default`]), without
    /// the CSRF check.
    pub fn new(manager: SessionManager) -> SessionLayer {
        SessionLayer {
            settings: Arc::new(Settings {
                manager,
                transport: Transport::default(),
                cookie: CookieSettings::default(),
                csrf: false,
            }),
        }
    }

    /// Where tokens travel (default [`Transport::Cookie`]).
    pub fn transport(mut self, transport: Transport) -> SessionLayer {
        Arc::make_mut(&mut self.settings).transport = transport;
        self
    }

    /// The cookie's name and attributes. An
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for settings browsers
    /// refuse (a `__Host-` cookie that is not `Secure`, has a `Domain` or another path;
    /// `SameSite=None` without `Secure`; a name or value with separators).
    pub fn cookie(mut self, cookie: CookieSettings) -> Result<SessionLayer> {
        cookie.check()?;
        Arc::make_mut(&mut self.settings).cookie = cookie;
        Ok(self)
    }

    /// The CSRF check (default off). When on, a request whose method changes state
    /// (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`) and whose session came in the cookie
    /// must carry the session's CSRF token ([`SessionHandle::csrf_token`]) in the
    /// [`x-csrf-token`](super::CSRF_HEADER) header, or it cannot act with that session:
    /// [`Authenticated`](super::Authenticated) rejects it with 403 and the handle's calls
    /// return [`Error::Csrf`](crate::Error::Csrf). Bearer tokens need no CSRF token: browsers
    /// do not attach them by themselves.
    pub fn csrf(mut self, on: bool) -> SessionLayer {
        Arc::make_mut(&mut self.settings).csrf = on;
        self
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionMiddleware<S>;

    fn layer(&self, inner: S) -> SessionMiddleware<S> {
        SessionMiddleware {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service [`SessionLayer`] wraps around routes.
#[derive(Debug, Clone)]
pub struct SessionMiddleware<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionMiddleware<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let handle = SessionHandle::new(
            Arc::clone(&self.settings),
            request.method(),
            request.headers(),
        );
        request.extensions_mut().insert(handle.clone());
        // the clone that was made ready is the one called
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            if let Some(cookie) = handle.outgoing_cookie() {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            Ok(response)
        })
    }
}
