//! The axum session layer (`cache_session::web`) driven over HTTP: a real axum router on a
//! free port, against a private `redis-server` and the in-process store (every test runs on
//! both).

use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_testing::RedisServer;
use cachemere::cache_session::web::{
    Authenticated, CSRF_HEADER, CookieSettings, SessionHandle, SessionLayer, SessionRejection,
    Transport,
};
use cachemere::cache_session::{SessionConfig, SessionData, SessionManager, SessionStore};
use cachemere::{MemoryStore, RedisStore};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Store {
    Redis,
    Memory,
}

struct Server {
    base: String,
    http: reqwest::Client,
    redis: Option<RedisServer>,
    manager: SessionManager,
    /// Another manager on the same store, with its own settings (another instance).
    instance: Box<dyn Fn(SessionConfig) -> SessionManager + Send + Sync>,
}

/// What a response said: status, `Set-Cookie` headers, JSON body.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    body: Value,
}

impl Reply {
    /// The single `Set-Cookie` header, or none.
    fn cookie(&self) -> Option<&str> {
        assert!(
            self.cookies.len() <= 1,
            "one Set-Cookie at most: {:?}",
            self.cookies
        );
        self.cookies.first().map(String::as_str)
    }

    /// The session token the `Set-Cookie` header hands out.
    fn cookie_token(&self) -> String {
        let cookie = self.cookie().expect("a Set-Cookie header");
        let (pair, _) = cookie.split_once(';').expect("attributes");
        let (_, value) = pair.split_once('=').expect("name=value");
        value.to_owned()
    }
}

fn router(layer: SessionLayer) -> Router {
    async fn login(
        session: SessionHandle,
        Json(body): Json<Value>,
    ) -> Result<Json<Value>, SessionRejection> {
        let user = body["user_id"].as_str().unwrap_or("u1").to_owned();
        let data = SessionData::new().with("role", "student")?;
        let token = session.login(&user, data).await?;
        let csrf = session.csrf_token().await;
        Ok(Json(json!({ "token": token.expose(), "csrf": csrf })))
    }
    async fn me(user: Authenticated) -> Json<Value> {
        Json(json!({ "user_id": user.user_id, "data": user.data }))
    }
    async fn maybe(user: Option<Authenticated>) -> Json<Value> {
        Json(json!({ "user_id": user.map(|user| user.user_id.clone()) }))
    }
    async fn set(
        session: SessionHandle,
        Path(field): Path<String>,
        Json(value): Json<Value>,
    ) -> Result<Json<Value>, SessionRejection> {
        Ok(Json(
            json!({ "updated": session.insert(&field, &value).await? }),
        ))
    }
    async fn promote(user: Authenticated) -> Result<Json<Value>, SessionRejection> {
        user.handle().insert("role", "admin").await?;
        let token = user.handle().rotate().await?.expect("live");
        Ok(Json(json!({ "token": token.expose() })))
    }
    async fn rotate(session: SessionHandle) -> Result<Json<Value>, SessionRejection> {
        let token = session.rotate().await?;
        Ok(Json(
            json!({ "token": token.map(|token| token.expose().to_owned()) }),
        ))
    }
    async fn logout(session: SessionHandle) -> Result<Json<Value>, SessionRejection> {
        Ok(Json(json!({ "ended": session.logout().await? })))
    }
    async fn logout_everywhere(session: SessionHandle) -> Result<Json<Value>, SessionRejection> {
        Ok(Json(json!({ "ended": session.logout_everywhere().await? })))
    }
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/set/{field}", post(set))
        .route("/promote", post(promote))
        .route("/rotate", post(rotate))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/untouched", get(|_session: SessionHandle| async { "ok" }))
        .route("/plain", get(|| async { "ok" }))
        .layer(layer)
}

async fn serve(
    store: Store,
    config: SessionConfig,
    layer: impl FnOnce(SessionLayer) -> SessionLayer,
) -> Server {
    type Stores = Box<dyn Fn() -> SessionStore + Send + Sync>;
    let (redis, sessions): (_, Stores) = match store {
        Store::Redis => {
            let redis = RedisServer::start_private().expect("start redis-server");
            let store = RedisStore::connect(&redis.config()).await.expect("connect");
            (Some(redis), Box::new(move || store.clone().into()))
        }
        Store::Memory => {
            let store = MemoryStore::new();
            (None, Box::new(move || store.clone().into()))
        }
    };
    let manager = SessionManager::new(sessions(), config.secret("test secret"));
    let app = router(layer(SessionLayer::new(manager.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base,
        http: reqwest::Client::new(),
        redis,
        manager,
        instance: Box::new(move |config| {
            SessionManager::new(sessions(), config.secret("test secret"))
        }),
    }
}

/// How a request carries its token.
enum Auth<'a> {
    None,
    Cookie(&'a str),
    Bearer(&'a str),
    CookieAndCsrf(&'a str, &'a str),
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, auth: Auth<'_>) -> Reply {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        request = match auth {
            Auth::None => request,
            // bytes, so that non-ASCII cookies reach the server as sent
            Auth::Cookie(token) => request.header(
                COOKIE,
                reqwest::header::HeaderValue::from_bytes(
                    format!("__Host-session={token}").as_bytes(),
                )
                .expect("a header value"),
            ),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::CookieAndCsrf(token, csrf) => request
                .header(COOKIE, format!("__Host-session={token}"))
                .header(CSRF_HEADER, csrf),
        };
        if method == reqwest::Method::POST {
            request = request.json(&json!({ "user_id": "u1", "value": "v" }));
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("ASCII").to_owned())
            .collect();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            cookies,
            body,
        }
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.call(reqwest::Method::GET, path, auth).await
    }

    async fn post(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.call(reqwest::Method::POST, path, auth).await
    }

    /// Logs `u1` in; the reply and the token of its cookie.
    async fn login(&self) -> (Reply, String) {
        let reply = self.post("/login", Auth::None).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let token = reply.body["token"].as_str().expect("token").to_owned();
        (reply, token)
    }

    /// Session scripts the private Redis has run (`None` for the in-process store).
    fn scripts_run(&self) -> Option<u64> {
        let redis = self.redis.as_ref()?;
        Some(redis.command_calls("evalsha").expect("commandstats"))
    }
}

fn config() -> SessionConfig {
    SessionConfig::default().ttl(Duration::from_secs(1800))
}

fn max_age(cookie: &str) -> u64 {
    cookie
        .split(';')
        .find_map(|attribute| attribute.trim().strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("seconds")
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Redis).await
                }
            )*
        }
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Memory).await
                }
            )*
        }
    };
}

on_both_stores!(
    login_sets_the_strictest_cookie_and_it_opens_the_session,
    a_request_that_does_not_use_its_session_costs_nothing,
    a_bogus_malformed_or_unknown_cookie_is_no_session,
    a_login_never_adopts_the_token_the_client_brought,
    an_expired_session_is_no_session,
    a_privilege_change_rotates_the_token_in_the_same_response,
    logout_ends_the_session_and_clears_the_cookie,
    logout_everywhere_ends_every_session_of_the_user,
    concurrent_requests_of_one_session_keep_each_others_writes,
    the_cookie_follows_the_sliding_expiry,
    bearer_tokens_work_without_cookies,
    the_csrf_check_guards_cookie_borne_state_changes,
    the_cookie_attributes_are_configurable,
    a_session_this_instance_cannot_open_is_a_503_and_is_kept,
);

async fn login_sets_the_strictest_cookie_and_it_opens_the_session(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (reply, token) = server.login().await;
    let cookie = reply.cookie().expect("Set-Cookie");
    assert!(
        cookie.starts_with(&format!("__Host-session={token};")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let age = max_age(cookie);
    assert!(
        (1790..=1800).contains(&age),
        "Max-Age follows the 30 min ttl: {age}"
    );

    let me = server.get("/me", Auth::Cookie(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.body["user_id"], "u1");
    assert_eq!(me.body["data"]["role"], "student");
    assert_eq!(
        me.cookie(),
        None,
        "a read that slides nothing sets no cookie"
    );
}

async fn a_request_that_does_not_use_its_session_costs_nothing(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, token) = server.login().await;
    // the first read loads its script
    assert_eq!(
        server.get("/me", Auth::Cookie(&token)).await.status,
        StatusCode::OK
    );
    let before = server.scripts_run();
    for path in ["/untouched", "/plain"] {
        let reply = server.get(path, Auth::Cookie(&token)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.cookies.is_empty(), "{path}: {reply:?}");
    }
    assert_eq!(server.scripts_run(), before, "no store round trip");
    let read = server.get("/me", Auth::Cookie(&token)).await;
    assert_eq!(read.status, StatusCode::OK);
    if let (Some(before), Some(after)) = (before, server.scripts_run()) {
        assert_eq!(after - before, 1, "one round trip for a read");
    }
}

async fn a_bogus_malformed_or_unknown_cookie_is_no_session(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, real) = server.login().await;
    // the right shape and the user's tag, but never issued
    let forged = format!("{}{}", &real[..real.len() - 4], "AAAA");
    for bogus in ["nonsense", "", "cms1_ü", forged.as_str()] {
        let me = server.get("/me", Auth::Cookie(bogus)).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{bogus}: {me:?}");
        assert_eq!(me.body, json!({ "error": "invalid session" }));
        assert!(me.cookies.is_empty(), "a dead cookie is left alone: {me:?}");
        let maybe = server.get("/maybe", Auth::Cookie(bogus)).await;
        assert_eq!(maybe.status, StatusCode::OK, "never an error: {maybe:?}");
        assert_eq!(maybe.body, json!({ "user_id": null }));
        let write = server.post("/set/x", Auth::Cookie(bogus)).await;
        assert_eq!(write.status, StatusCode::OK, "{write:?}");
        assert_eq!(
            write.body,
            json!({ "updated": false }),
            "no session is started"
        );
        assert!(write.cookies.is_empty());
    }
    let none = server.get("/me", Auth::None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body, json!({ "error": "missing session token" }));
    assert_eq!(
        server.get("/me", Auth::Cookie(&real)).await.status,
        StatusCode::OK,
        "the real session is untouched"
    );
}

async fn a_login_never_adopts_the_token_the_client_brought(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, first) = server.login().await;
    let forged = format!("{}{}", &first[..first.len() - 4], "AAAA");
    for brought in [first.as_str(), forged.as_str(), "nonsense"] {
        let reply = server.post("/login", Auth::Cookie(brought)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let issued = reply.cookie_token();
        assert_ne!(issued, brought);
        assert_eq!(reply.body["token"], issued.as_str());
        assert_eq!(
            server.get("/me", Auth::Cookie(&issued)).await.status,
            StatusCode::OK
        );
        assert_eq!(
            server.get("/me", Auth::Cookie(brought)).await.status,
            StatusCode::UNAUTHORIZED,
            "the session from before the login is over"
        );
    }
}

async fn an_expired_session_is_no_session(store: Store) {
    let config = SessionConfig::default().ttl(Duration::from_millis(300));
    let server = serve(store, config, |layer| layer).await;
    let (reply, token) = server.login().await;
    assert_eq!(
        max_age(reply.cookie().expect("cookie")),
        1,
        "rounded up, never 0"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let me = server.get("/me", Auth::Cookie(&token)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.body, json!({ "error": "session expired" }));
    let maybe = server.get("/maybe", Auth::Cookie(&token)).await;
    assert_eq!(maybe.body, json!({ "user_id": null }));
    let write = server.post("/set/x", Auth::Cookie(&token)).await;
    assert_eq!(write.body, json!({ "updated": false }));
}

async fn a_privilege_change_rotates_the_token_in_the_same_response(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, old) = server.login().await;
    let reply = server.post("/promote", Auth::Cookie(&old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let new = reply.cookie_token();
    assert_ne!(new, old);
    assert_eq!(reply.body["token"], new.as_str());
    assert_eq!(
        server.get("/me", Auth::Cookie(&old)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old token ended with the response, before the new one was used"
    );
    let me = server.get("/me", Auth::Cookie(&new)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["data"]["role"], "admin", "the data came along");
}

async fn logout_ends_the_session_and_clears_the_cookie(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, token) = server.login().await;
    let reply = server.post("/logout", Auth::Cookie(&token)).await;
    assert_eq!(reply.body, json!({ "ended": true }));
    let cookie = reply.cookie().expect("a clearing Set-Cookie");
    assert!(cookie.starts_with("__Host-session=;"), "{cookie}");
    assert_eq!(max_age(cookie), 0);
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert_eq!(
        server.get("/me", Auth::Cookie(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = server.post("/logout", Auth::Cookie(&token)).await;
    assert_eq!(again.body, json!({ "ended": false }));
    assert_eq!(max_age(again.cookie().expect("cleared again")), 0);
}

async fn logout_everywhere_ends_every_session_of_the_user(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let (_, laptop) = server.login().await;
    let (_, phone) = server.login().await;
    let reply = server
        .post("/logout-everywhere", Auth::Cookie(&phone))
        .await;
    assert_eq!(reply.body, json!({ "ended": 2 }));
    assert_eq!(max_age(reply.cookie().expect("cleared")), 0);
    for token in [&laptop, &phone] {
        assert_eq!(
            server.get("/me", Auth::Cookie(token)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn concurrent_requests_of_one_session_keep_each_others_writes(store: Store) {
    let server = std::sync::Arc::new(serve(store, config(), |layer| layer).await);
    let (_, token) = server.login().await;
    let writers = (0..16).map(|i| {
        let server = std::sync::Arc::clone(&server);
        let token = token.clone();
        tokio::spawn(async move {
            let reply = server
                .post(&format!("/set/f{i}"), Auth::Cookie(&token))
                .await;
            assert_eq!(reply.body, json!({ "updated": true }), "{reply:?}");
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.expect("writer");
    }
    let me = server.get("/me", Auth::Cookie(&token)).await;
    for i in 0..16 {
        assert_eq!(
            me.body["data"][format!("f{i}")]["value"],
            "v",
            "f{i} lost: {me:?}"
        );
    }
}

async fn the_cookie_follows_the_sliding_expiry(store: Store) {
    let config = SessionConfig::default()
        .ttl(Duration::from_secs(600))
        .touch_after(Duration::from_millis(200));
    let server = serve(store, config, |layer| layer).await;
    let (_, token) = server.login().await;
    assert_eq!(server.get("/me", Auth::Cookie(&token)).await.cookie(), None);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let slid = server.get("/me", Auth::Cookie(&token)).await;
    assert_eq!(slid.status, StatusCode::OK);
    assert_eq!(slid.cookie_token(), token, "the same token, sent again");
    assert!(
        (599..=600).contains(&max_age(slid.cookie().expect("cookie"))),
        "{slid:?}"
    );
    assert_eq!(
        server.get("/me", Auth::Cookie(&token)).await.cookie(),
        None,
        "once per slide"
    );
    // a session reached through its old token (the rotation grace) sets no cookie: it would
    // put the old token back in the browser
    let old = token;
    let new = server
        .manager
        .rotate_session(&old)
        .await
        .expect("rotate")
        .expect("live");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forwarded = server.get("/me", Auth::Cookie(&old)).await;
    assert_eq!(forwarded.status, StatusCode::OK, "{forwarded:?}");
    assert_eq!(forwarded.cookie(), None, "{forwarded:?}");
    assert_eq!(
        server.get("/me", Auth::Cookie(new.expose())).await.status,
        StatusCode::OK
    );
}

async fn bearer_tokens_work_without_cookies(store: Store) {
    let server = serve(store, config(), |layer| layer.transport(Transport::Bearer)).await;
    let (reply, token) = server.login().await;
    assert!(reply.cookies.is_empty(), "bearer only: {reply:?}");
    assert_eq!(
        server.get("/me", Auth::Bearer(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.get("/me", Auth::Cookie(&token)).await.status,
        StatusCode::UNAUTHORIZED,
        "cookies are not read"
    );
    let promoted = server.post("/promote", Auth::Bearer(&token)).await;
    let new = promoted.body["token"].as_str().expect("token").to_owned();
    assert!(promoted.cookies.is_empty());
    assert_eq!(
        server.get("/me", Auth::Bearer(&new)).await.status,
        StatusCode::OK
    );
    let logout = server.post("/logout", Auth::Bearer(&new)).await;
    assert_eq!(logout.body, json!({ "ended": true }));
    assert!(logout.cookies.is_empty());

    let both = serve(store, config(), |layer| {
        layer.transport(Transport::CookieOrBearer)
    })
    .await;
    let (reply, token) = both.login().await;
    assert_eq!(reply.cookie_token(), token, "the cookie is set as well");
    assert_eq!(
        both.get("/me", Auth::Bearer(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        both.get("/me", Auth::Cookie(&token)).await.status,
        StatusCode::OK
    );
}

async fn the_csrf_check_guards_cookie_borne_state_changes(store: Store) {
    let server = serve(store, config(), |layer| layer.csrf(true)).await;
    let (reply, token) = server.login().await;
    let csrf = reply.body["csrf"].as_str().expect("csrf token").to_owned();
    let forged = server.post("/set/x", Auth::Cookie(&token)).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
    assert_eq!(
        forged.body,
        json!({ "error": "missing or invalid CSRF token" })
    );
    let wrong = server
        .post("/set/x", Auth::CookieAndCsrf(&token, "AAAA"))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let (other, _) = server.login().await;
    let other_csrf = other.body["csrf"].as_str().expect("csrf token").to_owned();
    let crossed = server
        .post("/set/x", Auth::CookieAndCsrf(&token, &other_csrf))
        .await;
    assert_eq!(
        crossed.status,
        StatusCode::FORBIDDEN,
        "bound to its session"
    );
    assert_eq!(
        server.post("/promote", Auth::Cookie(&token)).await.status,
        StatusCode::FORBIDDEN,
        "the Authenticated extractor checks it too"
    );
    assert_eq!(
        server.post("/logout", Auth::Cookie(&token)).await.status,
        StatusCode::FORBIDDEN
    );
    let good = server
        .post("/set/x", Auth::CookieAndCsrf(&token, &csrf))
        .await;
    assert_eq!(good.body, json!({ "updated": true }), "{good:?}");
    assert_eq!(
        server.get("/me", Auth::Cookie(&token)).await.status,
        StatusCode::OK,
        "reads need no CSRF token"
    );
}

async fn the_cookie_attributes_are_configurable(store: Store) {
    let cookie = CookieSettings::default()
        .name("__Secure-sid")
        .domain("example.test")
        .path("/app")
        .http_only(false);
    let server = serve(store, config(), |layer| {
        layer.cookie(cookie).expect("valid settings")
    })
    .await;
    let (reply, token) = server.login().await;
    let set = reply.cookie().expect("cookie");
    assert!(set.starts_with(&format!("__Secure-sid={token};")), "{set}");
    assert!(
        set.contains("Domain=example.test") && set.contains("Path=/app"),
        "{set}"
    );
    assert!(!set.contains("HttpOnly"), "{set}");
    let logout = server
        .http
        .post(format!("{}/logout", server.base))
        .header(COOKIE, format!("__Secure-sid={token}"))
        .send()
        .await
        .expect("request");
    let cleared = logout
        .headers()
        .get(SET_COOKIE)
        .expect("cleared")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        cleared.contains("Domain=example.test") && cleared.contains("Path=/app"),
        "cleared with the same path and domain: {cleared}"
    );
    assert_eq!(max_age(&cleared), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_reached_is_a_503_never_no_session() {
    let server = serve(Store::Redis, config(), |layer| layer).await;
    let (_, token) = server.login().await;
    server.redis.as_ref().expect("redis").kill().expect("kill");
    for path in ["/me", "/maybe"] {
        let reply = server.get(path, Auth::Cookie(&token)).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {reply:?}"
        );
        assert_eq!(reply.body, json!({ "error": "session store unavailable" }));
        assert!(reply.cookies.is_empty());
    }
    let logout = server.post("/logout", Auth::Cookie(&token)).await;
    assert_eq!(logout.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        logout.cookies.is_empty(),
        "the cookie is kept when the session may still be live"
    );
    let untouched = server.get("/plain", Auth::Cookie(&token)).await;
    assert_eq!(
        untouched.status,
        StatusCode::OK,
        "routes without sessions still answer"
    );
}

#[tokio::test]
async fn a_route_outside_the_layer_is_a_clear_500() {
    let app: Router = Router::new().route("/me", get(|_: Authenticated| async { "never" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/me", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let reply = reqwest::get(url).await.expect("request");
    assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = reply.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "error": "the route is not behind a SessionLayer" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_outcome_is_unknown_logs_nobody_out() {
    let server = serve(Store::Redis, config(), |layer| layer).await;
    let (_, token) = server.login().await;
    let redis = server.redis.as_ref().expect("redis");
    redis.pause().expect("pause");
    // the rotation's script is sent, then the command times out: it may still run later
    let rotate = server.post("/rotate", Auth::Cookie(&token));
    let resume = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.resume().expect("resume");
    };
    let (reply, ()) = tokio::join!(rotate, resume);
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert!(
        reply.cookies.is_empty(),
        "the cookie keeps the old token: {reply:?}"
    );
    let mut reached = None;
    for _ in 0..50 {
        let me = server.get("/me", Auth::Cookie(&token)).await;
        if me.status != StatusCode::SERVICE_UNAVAILABLE {
            reached = Some(me);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let me = reached.expect("the store answers again");
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the old token still reaches the session, rotated or not: {me:?}"
    );
    let again = server.post("/rotate", Auth::Cookie(&token)).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "rotating again works: {again:?}"
    );
    let new = again.cookie_token();
    assert_eq!(
        server.get("/me", Auth::Cookie(&new)).await.status,
        StatusCode::OK
    );
}

/// Key rotation rolled out to another instance first: this one lacks the key its session was
/// sealed with. The request fails closed (503, also for `Option<Authenticated>`), the cookie
/// stays, and the session is intact for the instances that have the key.
async fn a_session_this_instance_cannot_open_is_a_503_and_is_kept(store: Store) {
    let server = serve(store, config(), |layer| layer).await;
    let sealed = |key: u8| {
        cachemere::cache_core::encryption::EncryptionKeys::new([[key; 32]]).expect("a key")
    };
    let ahead = (server.instance)(config().encryption(Some(sealed(2))));
    let token = ahead
        .create_session(
            "u1",
            SessionData::new().with("role", "admin").expect("data"),
            None,
        )
        .await
        .expect("create");
    for path in ["/me", "/maybe"] {
        let reply = server.get(path, Auth::Cookie(token.expose())).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {reply:?}"
        );
        assert_eq!(reply.body, json!({ "error": "session store unavailable" }));
        assert!(reply.cookies.is_empty(), "{path}: the cookie is kept");
    }
    let session = ahead
        .get_session(&token)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(session.data.role(), Some("admin"));
}
