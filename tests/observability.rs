//! The example service's `GET /metrics` (Prometheus text) moves exactly as the requests made:
//! a miss, a hit, an invalidation, a 401, and a Redis outage with errors and a breaker trip.
//! One test in its own binary: the metrics recorder is global to the process.

#[allow(
    dead_code,
    reason = "the example's binary uses parts of the app this test does not"
)]
#[path = "../examples/education_backend/app/mod.rs"]
mod app;

use std::collections::HashMap;
use std::time::Duration;

use app::{AppState, Backend};
use cache_testing::RedisServer;
use cachemere::RedisStore;
use reqwest::StatusCode;
use serde_json::json;

/// The samples of one scrape: series (name and sorted labels) to value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of the series named `name` whose labels include every one of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (series_name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                series_name == name
                    && labels
                        .iter()
                        .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

struct Service {
    base: String,
    http: reqwest::Client,
}

impl Service {
    async fn scrape(&self) -> Scrape {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["content-type"].to_str().expect("ascii");
        assert!(kind.starts_with("text/plain"), "{kind}");
        Scrape::parse(&response.text().await.expect("body"))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request").status()
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }
}

const CACHE: (&str, &str) = ("cache_name", app::CACHE_NAME);

/// How much each series moved between two scrapes.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_exactly_as_the_requests_made() {
    let prometheus = app::install_prometheus().expect("the only recorder of this process");
    let redis = RedisServer::start_private().expect("start redis-server");
    let mut config = redis.config();
    config.cache_breaker_threshold = 2;
    config.cache_breaker_cooldown = Duration::from_secs(60);
    config.cache_operation_timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&config).await.expect("connect");
    let state = AppState::new(Backend::Redis(store), &config, Duration::from_millis(5))
        .with_metrics(prometheus);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app::router(state)).await });
    let service = Service {
        base,
        http: reqwest::Client::new(),
    };

    // a miss: one GET, one computation, one SET
    let start = service.scrape().await;
    assert_eq!(service.get("/assignments/1", None).await, StatusCode::OK);
    let miss = service.scrape().await;
    for (name, expected) in [
        ("cachemere_cache_misses_total", 1.0),
        ("cachemere_cache_hits_total", 0.0),
        ("cachemere_cache_sets_total", 1.0),
        ("cachemere_cache_factory_duration_seconds_count", 1.0),
    ] {
        assert_eq!(moved(&start, &miss, name, &[CACHE]), expected, "{name}");
    }
    for (operation, expected) in [("GET", 1.0), ("SET", 1.0)] {
        let series = [
            CACHE,
            ("db_system_name", "redis"),
            ("db_operation_name", operation),
            ("db_namespace", "0"),
            ("server_address", "127.0.0.1"),
        ];
        assert_eq!(
            moved(
                &start,
                &miss,
                "db_client_operation_duration_seconds_count",
                &series
            ),
            expected,
            "{operation}"
        );
    }

    // every metric is described, with its unit in the name where it has one
    let text = service
        .http
        .get(format!("{}/metrics", service.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    for help in [
        "# HELP db_client_operation_duration_seconds duration of store operations",
        "# HELP cachemere_cache_factory_duration_seconds duration of the computations of misses",
        "# HELP cachemere_cache_misses_total reads the cache could not answer",
        "# HELP cachemere_cache_sets_total values written",
    ] {
        assert!(text.contains(help), "{help} in:\n{text}");
    }

    // a hit
    assert_eq!(service.get("/assignments/1", None).await, StatusCode::OK);
    let hit = service.scrape().await;
    assert_eq!(
        moved(&miss, &hit, "cachemere_cache_hits_total", &[CACHE]),
        1.0
    );
    assert_eq!(
        moved(&miss, &hit, "cachemere_cache_misses_total", &[CACHE]),
        0.0
    );
    assert_eq!(
        moved(
            &miss,
            &hit,
            "cachemere_cache_factory_duration_seconds_count",
            &[CACHE]
        ),
        0.0
    );

    // a 401: a forged token is an invalid validation
    assert_eq!(
        service.get("/me/profile", Some("cms1_forged")).await,
        StatusCode::UNAUTHORIZED
    );
    let refused = service.scrape().await;
    let outcome = |outcome| [("outcome", outcome)];
    assert_eq!(
        moved(
            &hit,
            &refused,
            "cachemere_session_validated_total",
            &outcome("invalid")
        ),
        1.0
    );
    assert_eq!(
        moved(
            &hit,
            &refused,
            "cachemere_session_validated_total",
            &outcome("ok")
        ),
        0.0
    );

    // a login (a session, the profile cached), then "log out everywhere": one session
    // revoked, the user's cached profile invalidated
    let login = service
        .post("/login", None, json!({ "user_id": "s1" }))
        .await;
    let token = login["token"].as_str().expect("token").to_owned();
    let logged_in = service.scrape().await;
    assert_eq!(
        moved(
            &refused,
            &logged_in,
            "cachemere_session_created_total",
            &[("session_manager_name", app::CACHE_NAME)]
        ),
        1.0
    );
    assert_eq!(
        moved(&refused, &logged_in, "cachemere_cache_sets_total", &[CACHE]),
        1.0
    );
    service
        .post("/logout-everywhere", Some(&token), json!({}))
        .await;
    let invalidated = service.scrape().await;
    assert_eq!(
        moved(
            &logged_in,
            &invalidated,
            "cachemere_session_validated_total",
            &outcome("ok")
        ),
        1.0
    );
    assert_eq!(
        moved(
            &logged_in,
            &invalidated,
            "cachemere_session_revoked_total",
            &[]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &logged_in,
            &invalidated,
            "cachemere_cache_deletes_total",
            &[CACHE]
        ),
        1.0
    );

    // a local tier's size: five 4 KB values read 20 times from the tier; the gauge follows
    // within its report interval (1 s) (it used to stay at 0: moka's size lags its inserts)
    let tiered = cachemere::Cache::builder(RedisStore::connect(&config).await.expect("connect"))
        .config(&config)
        .name("tier")
        .local_cache(1 << 20, Duration::from_secs(60))
        .build();
    let started = std::time::Instant::now();
    while tiered.local_cache_active() != Some(true) {
        assert!(started.elapsed() < Duration::from_secs(10), "subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // incompressible bytes (values over 1 KiB are compressed, and the tier weighs what it keeps)
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let value: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    for i in 0..5 {
        tiered
            .set(&format!("tier:{i}"), &value, Duration::from_secs(60))
            .await
            .expect("set");
    }
    for round in 0..20 {
        let got: Vec<u8> = tiered
            .get(&format!("tier:{}", round % 5))
            .await
            .expect("get")
            .expect("a value");
        assert_eq!(got.len(), 4096);
    }
    assert!(tiered.stats().local_hits >= 15, "{:?}", tiered.stats());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sized = service.scrape().await;
    let size = sized.value(
        "cachemere_cache_local_size_bytes",
        &[("cache_name", "tier")],
    );
    assert!(size >= 5.0 * 4096.0, "local.size = {size}");
    // and after invalidations
    for i in 0..5 {
        tiered.delete(&format!("tier:{i}")).await.expect("delete");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let emptied = service.scrape().await;
    let size = emptied.value(
        "cachemere_cache_local_size_bytes",
        &[("cache_name", "tier")],
    );
    assert_eq!(
        size, 0.0,
        "local.size after the tier's values were invalidated"
    );

    // Redis frozen: the read times out (an error), the computed value's write times out
    // (the second failure trips the breaker); the next read skips the store
    redis.pause().expect("freeze redis");
    assert_eq!(
        service.get("/analytics/students", None).await,
        StatusCode::OK
    );
    let tripped = service.scrape().await;
    for operation in ["GET", "SET"] {
        let series = [
            CACHE,
            ("db_operation_name", operation),
            ("error_type", "timeout"),
        ];
        assert_eq!(
            moved(
                &invalidated,
                &tripped,
                "cachemere_cache_errors_total",
                &series
            ),
            1.0,
            "{operation}"
        );
    }
    assert_eq!(
        moved(
            &invalidated,
            &tripped,
            "cachemere_cache_circuit_trips_total",
            &[CACHE]
        ),
        1.0
    );
    assert_eq!(tripped.value("cachemere_cache_circuit_open", &[CACHE]), 1.0);
    assert_eq!(
        service.get("/analytics/students", None).await,
        StatusCode::OK
    );
    let skipped = service.scrape().await;
    redis.resume().expect("resume redis");
    let series = [
        CACHE,
        ("db_operation_name", "GET"),
        ("error_type", "circuit_open"),
    ];
    assert_eq!(
        moved(&tripped, &skipped, "cachemere_cache_errors_total", &series),
        1.0
    );
    assert!(
        moved(
            &tripped,
            &skipped,
            "cachemere_cache_short_circuits_total",
            &[CACHE]
        ) >= 1.0
    );
    assert_eq!(
        moved(
            &tripped,
            &skipped,
            "cachemere_cache_circuit_trips_total",
            &[CACHE]
        ),
        0.0
    );
}
