//! Why a request gets no session, as an HTTP response in JSON.

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::error::Error;

/// Why an extractor or a [`SessionHandle`](super::SessionHandle) call refused a request,
/// answered as `{"error": "<message>"}` with the status of [`status`](SessionRejection::status).
///
/// Handlers that return their own error type convert from it (match on the variant, or use
/// [`status`](SessionRejection::status) and the `Display` message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The request carries no session token: 401.
    #[error("missing session token")]
    Missing,
    /// The token is malformed, was never issued, or its session ended: 401.
    #[error("invalid session")]
    Invalid,
    /// The session expired: 401.
    #[error("session expired")]
    Expired,
    /// A state-changing request carried its session in a cookie without the session's CSRF
    /// token: 403.
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// The session store could not be asked (or cannot read the session with this
    /// instance's encryption settings): 503. Sessions fail closed.
    #[error("session store unavailable")]
    Unavailable(#[source] Error),
    /// Any other failure of a session operation (a value that does not encode as JSON, a
    /// duration out of range): 500.
    #[error("session operation failed")]
    Failed(#[source] Error),
    /// The route is not behind a [`SessionLayer`](super::SessionLayer): 500.
    #[error("the route is not behind a SessionLayer")]
    MissingLayer,
}

impl SessionRejection {
    /// The HTTP status the rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::Missing | SessionRejection::Invalid | SessionRejection::Expired => {
                StatusCode::UNAUTHORIZED
            }
            SessionRejection::Csrf => StatusCode::FORBIDDEN,
            SessionRejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionRejection::Failed(_) | SessionRejection::MissingLayer => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<Error> for SessionRejection {
    fn from(err: Error) -> SessionRejection {
        match err {
            Error::InvalidToken { .. } => SessionRejection::Invalid,
            Error::Csrf => SessionRejection::Csrf,
            err if err.is_store_failure() => SessionRejection::Unavailable(err),
            err => SessionRejection::Failed(err),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match &self {
            SessionRejection::Unavailable(err) | SessionRejection::Failed(err) => {
                tracing::warn!(error = %err, "session operation failed");
            }
            SessionRejection::MissingLayer => {
                tracing::error!("a session extractor is used on a route without a SessionLayer");
            }
            _ => {}
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = (self.status(), body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
