//! HTTP routes. Reads that need a session answer 401 with a JSON error when the token is
//! missing, invalid or expired, and 503 when the session store cannot be asked.

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachemere::cache_session::{Session, SessionData, ValidationError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::db::DbError;
use super::keys::CacheKeys;

pub(crate) fn router(state: AppState) -> Router {
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

const STORE_UNAVAILABLE: &str = "session store unavailable";

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
        match err.is_store_failure() {
            true => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                STORE_UNAVAILABLE.to_owned(),
            ),
            false => ApiError(StatusCode::BAD_REQUEST, err.to_string()),
        }
    }
}

/// The caller's session, from `Authorization: Bearer <token>`.
pub(crate) struct Authenticated {
    token: String,
    session: Session,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing session token".into()))?;
        match state.sessions.validate_session(token).await {
            Ok(session) => Ok(Authenticated {
                token: token.to_owned(),
                session,
            }),
            Err(err) => {
                let status =
                    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
                let message = match err {
                    ValidationError::Expired => "session expired",
                    ValidationError::Store(_) => STORE_UNAVAILABLE,
                    _ => "invalid session",
                };
                Err(ApiError(status, message.into()))
            }
        }
    }
}

#[derive(Deserialize)]
struct Login {
    user_id: String,
}

async fn login(
    State(state): State<AppState>,
    Json(login): Json<Login>,
) -> Result<Json<Value>, ApiError> {
    let Some(profile) = state.service.db.user(&login.user_id).await? else {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "unknown user".into()));
    };
    if let Err(err) = state.service.cache_user_profile(&profile).await {
        tracing::warn!(error = %err, "could not warm the profile cache");
    }
    let data = SessionData::new()
        .with("name", &profile.name)
        .and_then(|data| data.with("permissions", &permissions(&profile.role)))?;
    let token = state
        .sessions
        .create_authenticated_session(&profile.user_id, &profile.role, data)
        .await?;
    Ok(Json(
        json!({ "token": token.expose(), "user_id": profile.user_id, "role": profile.role }),
    ))
}

fn permissions(role: &str) -> Vec<&'static str> {
    match role {
        "teacher" => vec!["read", "write", "grade"],
        _ => vec!["read"],
    }
}

async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let ended = state.sessions.manager().delete_session(&auth.token).await?;
    Ok(Json(json!({ "logged_out": ended })))
}

async fn logout_everywhere(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let user_id = &auth.session.user_id;
    let ended = state
        .sessions
        .manager()
        .delete_user_sessions(user_id)
        .await?;
    state.service.invalidate_user_cache(user_id).await;
    Ok(Json(json!({ "sessions_ended": ended })))
}

async fn profile(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    match state
        .service
        .get_user_profile(&auth.session.user_id)
        .await?
    {
        Some(profile) => Ok(Json(json!(profile))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "user not found".into())),
    }
}

async fn classes(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state
            .service
            .get_user_classes(&auth.session.user_id)
            .await?
    )))
}

async fn assignments(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state
            .service
            .get_user_assignments(&auth.session.user_id)
            .await?
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
    if !auth.session.data.has_permission("write") {
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
