//! Fault injection against a real `redis-server`: killed under load, frozen, restarted on the
//! same port, started after the application. Figures are printed (`--nocapture`) for
//! RELIABILITY.md; the assertions are the guarantees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_testing::{RedisServer, SilentProxy};
use cachemere::cache_session::{SessionConfig, SessionData, SessionManager, SessionToken};
use cachemere::{Cache, Config, RedisStore, cache_result};

const DEADLINE: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(300);

fn config(server: &RedisServer) -> Config {
    let mut config = server.config();
    config.cache_operation_timeout = DEADLINE;
    config.cache_breaker_cooldown = COOLDOWN;
    config
}

/// A private server, a cache and a session manager on it, and one live session.
struct Setup {
    server: RedisServer,
    cache: Cache,
    sessions: SessionManager,
    token: SessionToken,
}

impl Setup {
    async fn start() -> Setup {
        let server = RedisServer::start_private().expect("start redis-server");
        let config = config(&server);
        let store = RedisStore::connect(&config).await.expect("connect");
        let cache = Cache::builder(store.clone()).config(&config).build();
        let sessions = SessionManager::new(store, SessionConfig::from_config(&config));
        let token = sessions
            .create_session("u", SessionData::new(), None)
            .await
            .expect("create");
        Setup {
            server,
            cache,
            sessions,
            token,
        }
    }
}

#[cache_result("resilience:{id}", cache = cache)]
async fn lookup(cache: &Cache, runs: &AtomicU64, id: u32) -> u32 {
    runs.fetch_add(1, Ordering::Relaxed);
    id * 2
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies.get(index).copied().unwrap_or_default()
}

/// Polls until `key` reads back from Redis through the cache; the time it took.
async fn until_cached(cache: &Cache, runs: &AtomicU64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        lookup(cache, runs, 1).await;
        if cache.get::<u32>("resilience:1").await.ok().flatten() == Some(2) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_load_cached_calls_never_fail_and_recover_after_restart() {
    let Setup {
        server,
        cache,
        sessions,
        token,
    } = Setup::start().await;

    let runs = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|task| {
            let (cache, runs, calls, wrong, stop) = (
                cache.clone(),
                runs.clone(),
                calls.clone(),
                wrong.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let id = (task * 100 + i) % 50;
                    let started = Instant::now();
                    let value = lookup(&cache, &runs, id).await;
                    slowest = slowest.max(started.elapsed());
                    calls.fetch_add(1, Ordering::Relaxed);
                    if value != id * 2 {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                    tokio::task::yield_now().await;
                }
                slowest
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().expect("SIGKILL");
    let before_outage = calls.load(Ordering::Relaxed);
    let session_read = sessions.get_session(&token).await;
    assert!(
        session_read.is_err(),
        "sessions fail closed: {session_read:?}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during_outage = calls.load(Ordering::Relaxed) - before_outage;

    server.restart().expect("restart on the same port");
    let recovery = until_cached(&cache, &runs, Duration::from_secs(10))
        .await
        .expect("caching resumes after the restart, with the same Cache and store");
    stop.store(true, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for task in load {
        slowest = slowest.max(task.await.expect("no panic in a cached call"));
    }
    let recreated = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("sessions work again without new objects");
    assert!(
        sessions
            .get_session(&recreated)
            .await
            .expect("read")
            .is_some()
    );

    let stats = cache.stats();
    println!(
        "kill: {during_outage} cached calls during the 0.7 s outage, 0 errors surfaced, slowest call {slowest:?}, \
         recovery {recovery:?} after restart (breaker cool-down {COOLDOWN:?}), store errors {}, short circuits {}, trips {}",
        stats.errors, stats.short_circuits, stats.circuit_trips
    );
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(
        during_outage > 0,
        "calls kept being answered during the outage"
    );
    assert!(
        slowest < DEADLINE * 2 + Duration::from_millis(300),
        "slowest cached call {slowest:?}"
    );
    assert!(stats.circuit_trips >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_costs_at_most_the_deadline_then_nothing() {
    let Setup {
        server,
        cache,
        sessions,
        token,
    } = Setup::start().await;
    let runs = AtomicU64::new(0);
    lookup(&cache, &runs, 1).await;

    server.pause().expect("SIGSTOP");
    let mut latencies = Vec::new();
    for id in 0..40 {
        let started = Instant::now();
        assert_eq!(lookup(&cache, &runs, id).await, id * 2);
        latencies.push(started.elapsed());
    }
    let started = Instant::now();
    let session_read = sessions.get_session(&token).await;
    let session_wait = started.elapsed();
    assert!(
        session_read.is_err(),
        "sessions fail closed: {session_read:?}"
    );
    assert!(cache.health_check().await.circuit_open);
    server.resume().expect("SIGCONT");

    let recovery = until_cached(&cache, &runs, Duration::from_secs(10))
        .await
        .expect("caching resumes after the freeze");
    let p99 = percentile(&mut latencies, 0.99);
    let p50 = percentile(&mut latencies, 0.50);
    let max = latencies.last().copied().unwrap_or_default();
    let stats = cache.stats();
    println!(
        "freeze: 40 cached calls, p50 {p50:?}, p99 {p99:?}, max {max:?} (deadline {DEADLINE:?}); \
         session read failed after {session_wait:?}; short circuits {}; recovery {recovery:?} after SIGCONT",
        stats.short_circuits
    );
    assert!(
        max < DEADLINE * 2 + Duration::from_millis(100),
        "no call waits past its deadlines: {max:?}"
    );
    assert!(
        p50 < Duration::from_millis(20),
        "once the circuit is open calls skip the store: {p50:?}"
    );
    assert!(stats.short_circuits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_started_after_the_application() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = config(&server);
    server.stop().expect("stop before the application starts");
    let started = Instant::now();
    let store = RedisStore::connect_lazy(&config).expect("a lazy store starts without Redis");
    let cache = Cache::builder(store).config(&config).build();
    let startup = started.elapsed();
    let runs = AtomicU64::new(0);
    let started = Instant::now();
    for id in 0..10 {
        assert_eq!(lookup(&cache, &runs, id).await, id * 2);
    }
    let uncached = started.elapsed();
    assert!(!cache.health_check().await.healthy);

    server.restart().expect("start Redis");
    let recovery = until_cached(&cache, &runs, Duration::from_secs(15))
        .await
        .expect("caching starts once Redis is up");
    println!(
        "late start: application up in {startup:?}, 10 uncached calls in {uncached:?}, cached {recovery:?} after Redis started"
    );
    assert!(startup < Duration::from_millis(100));
    assert!(uncached < Duration::from_secs(3), "{uncached:?}");
}

/// Reads that time out on a frozen server leave their requests on the connection; when the
/// server answers them, those replies must be dropped, not handed to the next reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_timed_out_on_a_frozen_server_leave_no_reply_for_later_reads() {
    let Setup { server, cache, .. } = Setup::start().await;
    let ttl = Duration::from_secs(600);
    let keys = ["a", "b", "ünï", "d"];
    for (value, key) in keys.iter().enumerate() {
        cache.set(key, &(value as u32), ttl).await.expect("set");
    }
    server.pause().expect("SIGSTOP");
    let mut timed_out = 0;
    for key in keys {
        let started = Instant::now();
        match cache.get::<u32>(key).await {
            Err(cachemere::Error::Timeout { .. }) => timed_out += 1,
            Err(cachemere::Error::CircuitOpen { .. }) => {}
            other => panic!("a frozen server answered {other:?}"),
        }
        assert!(started.elapsed() < DEADLINE * 2, "{:?}", started.elapsed());
    }
    assert!(
        timed_out >= 1,
        "at least one request was sent and timed out"
    );
    server.resume().expect("SIGCONT");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    while answered < 200 {
        assert!(Instant::now() < deadline, "reads did not resume");
        let index = answered % keys.len();
        match cache.get::<u32>(keys[index]).await {
            Ok(found) => {
                assert_eq!(
                    found,
                    Some(index as u32),
                    "{}: another read's reply",
                    keys[index]
                );
                answered += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// How long after its connection went silent (half-open, through [`SilentProxy`]) a cache
/// reads hits again, reading every 20 ms after `idle`; and the misses it read.
async fn hits_again_after_silence(
    health_checks: Duration,
    breaker_threshold: u32,
    idle: Duration,
) -> (Duration, u32) {
    let server = RedisServer::start_private().expect("start redis-server");
    let proxy = SilentProxy::start(server.port().expect("a private server")).expect("proxy");
    let mut config = config(&server);
    config.redis_url = Some(proxy.url());
    config.health_check_interval = health_checks;
    config.command_timeout = Duration::from_millis(500);
    let store = RedisStore::connect(&config).await.expect("connect");
    let cache = Cache::builder(store)
        .config(&config)
        .circuit_breaker(breaker_threshold, COOLDOWN)
        .build();
    cache.set("silent", &7u32, None).await.expect("set");
    proxy.silence();
    let silenced = Instant::now();
    tokio::time::sleep(idle).await;
    let mut misses = 0;
    loop {
        if let Ok(Some(7)) = cache.get::<u32>("silent").await {
            break;
        }
        misses += 1;
        assert!(
            silenced.elapsed() < Duration::from_secs(10),
            "still no hit {:?} after the connection went silent ({misses} misses): {:?}",
            silenced.elapsed(),
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = silenced.elapsed();
    eprintln!(
        "health checks every {health_checks:?}, breaker after {breaker_threshold}: hits again \
         {took:?} after the connection went silent ({misses} misses)"
    );
    (took, misses)
}

/// No read during the silence: only the health check can find it.
#[tokio::test]
async fn a_timed_out_health_check_replaces_a_silent_connection() {
    let idle = Duration::from_millis(1500);
    let (_, misses) = hits_again_after_silence(Duration::from_millis(300), 5, idle).await;
    assert_eq!(
        misses, 0,
        "the first read after the health check timed out is a hit"
    );
}

/// No health check in time: the requests' own timeouts find it.
#[tokio::test]
async fn request_timeouts_in_a_row_replace_a_silent_connection() {
    let (took, misses) =
        hits_again_after_silence(Duration::from_secs(3600), 0, Duration::ZERO).await;
    assert!(misses <= 3, "{misses} misses, {took:?}");
}
