//! End to end: the example service on a free port, against a private `redis-server`, driven
//! over HTTP.

#[allow(
    dead_code,
    reason = "the example's binary uses parts of the app this test does not"
)]
#[path = "../examples/education_backend/app/mod.rs"]
mod app;

use std::time::Duration;

use app::{AppState, Backend};
use cache_testing::RedisServer;
use cachemere::RedisStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Service {
    base: String,
    http: reqwest::Client,
    redis: RedisServer,
}

async fn start(session_ttl: Option<Duration>) -> Service {
    let redis = RedisServer::start_private().expect("start redis-server");
    let mut config = redis.config();
    if let Some(ttl) = session_ttl {
        config.session_ttl = ttl;
    }
    let store = RedisStore::connect(&config).await.expect("connect");
    let state = AppState::new(Backend::Redis(store), &config, Duration::from_millis(20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app::router(state)).await });
    Service {
        base,
        http: reqwest::Client::new(),
        redis,
    }
}

impl Service {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn login(&self, user_id: &str) -> String {
        let (status, body) = self
            .post("/login", None, json!({ "user_id": user_id }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    async fn stats(&self) -> Value {
        self.get("/stats", None).await.1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cached_reads_invalidating_write_logout() {
    let service = start(None).await;
    let (status, body) = service.get("/me/profile", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing session token"))
    );
    let (status, body) = service.get("/me/profile", Some("cms1_forged")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid session"))
    );
    let (status, _) = service
        .post("/login", None, json!({ "user_id": "nobody" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let teacher = service.login("t1").await;
    let (status, profile) = service.get("/me/profile", Some(&teacher)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["name"], "Grace Hopper");

    let before = service.stats().await;
    let (status, first) = service.get("/me/assignments", Some(&teacher)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, second) = service.get("/me/assignments", Some(&teacher)).await;
    assert_eq!(first, second);
    let after = service.stats().await;
    assert_eq!(
        after["cache"]["hits"].as_u64().unwrap() - before["cache"]["hits"].as_u64().unwrap(),
        1,
        "{after}"
    );
    assert_eq!(
        after["cache"]["misses"].as_u64().unwrap() - before["cache"]["misses"].as_u64().unwrap(),
        1
    );
    assert_eq!(
        after["database_queries"].as_u64().unwrap() - before["database_queries"].as_u64().unwrap(),
        1,
        "the second read never reached the database"
    );
    assert_eq!(after["sessions"]["active_sessions"], 1);

    let (status, created) = service
        .post(
            "/me/assignments",
            Some(&teacher),
            json!({ "class_id": 1, "title": "Difference engine" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, third) = service.get("/me/assignments", Some(&teacher)).await;
    assert_eq!(
        third.as_array().unwrap().len(),
        first.as_array().unwrap().len() + 1,
        "the write invalidated"
    );

    let student = service.login("s1").await;
    let (status, _) = service
        .post(
            "/me/assignments",
            Some(&student),
            json!({ "class_id": 1, "title": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = service.post("/logout", Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = service.get("/me/profile", Some(&teacher)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid session"))
    );
    assert_eq!(
        service.get("/me/profile", Some(&student)).await.0,
        StatusCode::OK
    );
}

/// A browser's walk through the service: the session in the `__Host-session` cookie, the CSRF
/// token the login returned on state-changing requests, the cookie cleared at logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_use_the_cookie_and_the_csrf_token() {
    let service = start(None).await;
    let login = service
        .http
        .post(format!("{}/login", service.base))
        .json(&json!({ "user_id": "t1" }))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .expect("the session cookie")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        cookie.starts_with("__Host-session=cms1_") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let body: Value = login.json().await.expect("JSON");
    let csrf = body["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let request = |method: reqwest::Method, path: &str| {
        service
            .http
            .request(method, format!("{}{path}", service.base))
            .header("cookie", &pair)
    };
    let profile = request(reqwest::Method::GET, "/me/profile")
        .send()
        .await
        .expect("GET");
    assert_eq!(profile.status(), StatusCode::OK);
    assert!(
        profile.headers().get("set-cookie").is_none(),
        "nothing to refresh"
    );
    let assignment = json!({ "class_id": 1, "title": "Analytical engine" });
    let forged = request(reqwest::Method::POST, "/me/assignments")
        .json(&assignment)
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged: Value = forged.json().await.expect("JSON");
    assert_eq!(forged["error"], "missing or invalid CSRF token");
    let created = request(reqwest::Method::POST, "/me/assignments")
        .header("x-csrf-token", &csrf)
        .json(&assignment)
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::CREATED);
    let logout = request(reqwest::Method::POST, "/logout")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    let cleared = logout
        .headers()
        .get("set-cookie")
        .expect("cleared")
        .to_str()
        .expect("ASCII");
    assert!(
        cleared.starts_with("__Host-session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = request(reqwest::Method::GET, "/me/profile")
        .send()
        .await
        .expect("GET");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_ends_every_session_of_the_user() {
    let service = start(None).await;
    let laptop = service.login("s2").await;
    let phone = service.login("s2").await;
    let other = service.login("s3").await;
    let (status, body) = service
        .post("/logout-everywhere", Some(&phone), json!({}))
        .await;
    assert_eq!(
        (status, body["sessions_ended"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    for token in [&laptop, &phone] {
        assert_eq!(
            service.get("/me/classes", Some(token)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        service.get("/me/classes", Some(&other)).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_answer_401_session_expired() {
    let service = start(Some(Duration::from_millis(500))).await;
    let token = service.login("s1").await;
    assert_eq!(
        service.get("/me/profile", Some(&token)).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = service.get("/me/profile", Some(&token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session expired"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_health_fails_reads_answer_sessions_fail_closed() {
    let service = start(None).await;
    let token = service.login("s1").await;
    let (status, body) = service.get("/health/redis", None).await;
    assert_eq!(
        (status, body["redis"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
    assert_eq!(service.get("/assignments/1", None).await.0, StatusCode::OK);

    service.redis.kill().expect("kill redis-server");
    let (status, body) = service.get("/health/redis", None).await;
    assert_eq!(
        (status, body["redis"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
    );
    let (status, body) = service.get("/assignments/1", None).await;
    assert_eq!(
        (status, body["title"].as_str()),
        (StatusCode::OK, Some("Bernoulli numbers")),
        "cached reads degrade to the database"
    );
    assert_eq!(
        service.get("/analytics/students", None).await.0,
        StatusCode::OK
    );
    let (status, body) = service.get("/me/profile", Some(&token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("session store unavailable")
        )
    );
    let (status, body) = service
        .post("/login", None, json!({ "user_id": "s1" }))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("session store unavailable")
        ),
        "login speaks of the same fault in the same words"
    );
    let stats = service.stats().await;
    assert!(stats["cache"]["errors"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["sessions"]["error"].is_string());
}

async fn raw(
    service: &Service,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = service
        .http
        .request(method, format!("{}{path}", service.base))
        .body(body);
    if let Some(kind) = content_type {
        request = request.header("content-type", kind);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|kind| kind.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    assert!(
        kind.starts_with("application/json"),
        "{status} answered {kind:?}: {text:?}"
    );
    (status, serde_json::from_str(&text).expect("a JSON body"))
}

#[tokio::test]
async fn every_error_answers_json_with_the_right_status() {
    use reqwest::Method;
    let service = start(None).await;
    let token = service.login("t1").await;
    let json = Some("application/json");
    type Case<'a> = (
        &'a str,
        Method,
        String,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            Method::POST,
            "/login".into(),
            json,
            b"{".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing field",
            Method::POST,
            "/login".into(),
            json,
            b"{}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "wrong content type",
            Method::POST,
            "/login".into(),
            Some("text/plain"),
            b"user_id=t1".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no content type",
            Method::POST,
            "/login".into(),
            None,
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "non-numeric path id",
            Method::GET,
            "/assignments/abc".into(),
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "body too large",
            Method::POST,
            "/login".into(),
            json,
            vec![b' '; 1 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "unknown route",
            Method::GET,
            "/no/such/route".into(),
            None,
            Vec::new(),
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            Method::DELETE,
            "/login".into(),
            None,
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "no token",
            Method::GET,
            "/me/profile".into(),
            None,
            Vec::new(),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (case, method, path, kind, body, expected) in cases {
        let (status, body) = raw(&service, method, &path, kind, body).await;
        assert_eq!(status, expected, "{case}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|text| !text.is_empty()),
            "{case}: {body}"
        );
    }
    let mut hostile = token.clone();
    hostile.replace_range(36..38, "é");
    let response = service
        .http
        .get(format!("{}/me/profile", service.base))
        .header("authorization", format!("Bearer {hostile}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = service.get("/me/profile", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "the service still answers");
}

#[tokio::test]
async fn the_start_up_line_redacts_the_password_and_health_names_the_backend() {
    let mut config = cachemere::Config::default();
    config.redis_url = Some("redis://app:hunter2@127.0.0.1:1/0".into());
    let (_, line) = Backend::from_config(&config).expect("lazy connection");
    assert_eq!(
        line,
        "cache and sessions on Redis at redis://app:***@127.0.0.1:1/0"
    );

    config.redis_url = None;
    let (backend, line) = Backend::from_config(&config).expect("memory");
    assert!(line.contains("in process"), "{line}");
    let state = AppState::new(backend, &config, Duration::from_millis(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app::router(state)).await });
    let response = reqwest::get(format!("{base}/health/redis"))
        .await
        .expect("health");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["backend"], "memory");
    assert_eq!(body["redis"], "not configured");
}
