//! HTTP routes. Sessions come from `cache_session::web`'s layer: the token travels as a
//! bearer token or in the `__Host-session` cookie; routes that need a session take
//! `Authenticated`, which answers 401 with a JSON error when the token is missing, invalid or
//! expired, 403 for a cookie-borne state change without the CSRF token, and 503 when the
//! session store cannot be asked.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachemere::cache_session::SessionData;
use cachemere::cache_session::web::{
    Authenticated, SessionHandle, SessionLayer, SessionRejection, Transport,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::db::DbError;
use super::keys::CacheKeys;

pub(crate) fn router(state: AppState) -> Router {
    // browsers keep the token in the `__Host-session` cookie (and send the CSRF token the
    // login returns with state-changing requests); other clients send it as a bearer token
    let sessions = SessionLayer::new(state.sessions.manager().clone())
        .transport(Transport::CookieOrBearer)
        .csrf(true);
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/me/profile", get(profile))
        .route("/me/classes", get(classes))
        .route("/me/assignments", get(assignments).post(create_assignment))
        .route("/classes/{class_id}/students", get(class_students))
        .route("/assignments/{assignment_id}", get(assignment))
        .route("/grading/{task_id}", get(grading))
        .route("/analytics/students", get(analytics))
        .route("/health/redis", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(json_errors))
        .layer(sessions)
        .with_state(state)
}

const MAX_BODY_BYTES: usize = 64 * 1024;

/// Turns every error response that is not JSON yet (axum's own rejections: malformed JSON,
/// wrong content type, a non-numeric path id, a body over the limit, a wrong method) into the
/// service's one error shape, `{"error": ...}`, keeping the status and the reason.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_lowercase(),
        false => text,
    };
    let mut json = ApiError(status, message).into_response();
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
    {
        json.headers_mut().append(name, value.clone());
    }
    json
}

/// A JSON error body with a status.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> ApiError {
        match err {
            DbError::NotFound(what) => ApiError(StatusCode::NOT_FOUND, format!("{what} not found")),
        }
    }
}

impl From<cachemere::cache_session::Error> for ApiError {
    fn from(err: cachemere::cache_session::Error) -> ApiError {
        SessionRejection::from(err).into()
    }
}

impl From<SessionRejection> for ApiError {
    fn from(rejection: SessionRejection) -> ApiError {
        ApiError(rejection.status(), rejection.to_string())
    }
}

#[derive(Deserialize)]
struct Login {
    user_id: String,
}

async fn login(
    State(state): State<AppState>,
    session: SessionHandle,
    Json(login): Json<Login>,
) -> Result<Json<Value>, ApiError> {
    let Some(profile) = state.service.db.user(&login.user_id).await? else {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "unknown user".into()));
    };
    if let Err(err) = state.service.cache_user_profile(&profile).await {
        tracing::warn!(error = %err, "could not warm the profile cache");
    }
    let data = SessionData::new()
        .with("role", &profile.role)
        .and_then(|data| data.with("name", &profile.name))
        .and_then(|data| data.with("permissions", &permissions(&profile.role)))?;
    // a new token (the session the request brought, if any, ends), in the cookie too
    let token = session.login(&profile.user_id, data).await?;
    Ok(Json(json!({
        "token": token.expose(),
        "csrf_token": session.csrf_token().await,
        "user_id": profile.user_id,
        "role": profile.role,
    })))
}

fn permissions(role: &str) -> Vec<&'static str> {
    match role {
        "teacher" => vec!["read", "write", "grade"],
        _ => vec!["read"],
    }
}

async fn logout(auth: Authenticated) -> Result<Json<Value>, ApiError> {
    let ended = auth.handle().logout().await?;
    Ok(Json(json!({ "logged_out": ended })))
}

async fn logout_everywhere(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let ended = auth.handle().logout_everywhere().await?;
    state.service.invalidate_user_cache(&auth.user_id).await;
    Ok(Json(json!({ "sessions_ended": ended })))
}

async fn profile(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    match state.service.get_user_profile(&auth.user_id).await? {
        Some(profile) => Ok(Json(json!(profile))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "user not found".into())),
    }
}

async fn classes(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.service.get_user_classes(&auth.user_id).await?
    )))
}

async fn assignments(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.service.get_user_assignments(&auth.user_id).await?
    )))
}

#[derive(Deserialize)]
struct NewAssignment {
    class_id: u32,
    title: String,
}

async fn create_assignment(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(new): Json<NewAssignment>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !auth.data.has_permission("write") {
        return Err(ApiError(StatusCode::FORBIDDEN, "teachers only".into()));
    }
    let assignment = state
        .service
        .create_assignment(new.class_id, &new.title)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(assignment))))
}

async fn class_students(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(class_id): Path<u32>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.service.get_class_students(class_id).await?
    )))
}

async fn assignment(
    State(state): State<AppState>,
    Path(assignment_id): Path<u32>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.service.get_assignment_info(assignment_id).await?
    )))
}

async fn grading(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(task_id): Path<u32>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.service.get_grading_result(task_id).await?
    )))
}

async fn analytics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "students": state.service.count_students().await? }),
    ))
}

/// The seed's health endpoint: 200 when the store answers, 503 otherwise. `backend` says
/// which store serves the cache; `redis` is `"not configured"` on the in-process store.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let report = state.service.cache.health_check().await;
    let status = match report.healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let verdict = match (report.backend, report.healthy) {
        ("memory", _) => "not configured",
        (_, true) => "healthy",
        (_, false) => "unhealthy",
    };
    (
        status,
        Json(json!({ "backend": report.backend, "redis": verdict, "details": report })),
    )
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    let cache = state.service.cache.stats();
    let sessions = match state.sessions.manager().get_session_stats().await {
        Ok(stats) => json!(stats),
        Err(err) => json!({ "error": err.to_string() }),
    };
    Json(json!({
        "cache": cache,
        "cache_hit_ratio": cache.hit_ratio(),
        "sessions": sessions,
        "database_queries": state.service.db.queries(),
        "key_templates": [
            CacheKeys::USER_PROFILE, CacheKeys::USER_CLASSES, CacheKeys::CLASS_STUDENTS,
            CacheKeys::ASSIGNMENT_INFO, CacheKeys::GRADING_RESULT, CacheKeys::AI_CHAT_CONTEXT,
        ],
    }))
}

/// The process's metrics in Prometheus text format (cache and session metrics with the
/// `metrics` feature).
async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError(StatusCode::NOT_FOUND, "metrics are not recorded".into()).into_response(),
    }
}
