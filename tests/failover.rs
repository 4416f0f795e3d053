//! High availability: killing the primary of a Sentinel-managed pair, or a Redis Cluster
//! primary that has a replica, under load. Cached calls never surface an error and always
//! return the right value; sessions fail closed during the switch (an error, never another
//! user's session or a stale grant) and work after it, with the same objects; the time to
//! recover is measured and printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachemere::cache_session::{SessionConfig, SessionData, SessionManager, SessionToken};
use cachemere::testing::{RedisCluster, RedisSentinel};
use cachemere::{Cache, Config, RedisStore, Store, Ttl, cache_result};

const DEADLINE: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(300);

fn tuned(mut config: Config) -> Config {
    config.cache_operation_timeout = DEADLINE;
    config.cache_breaker_cooldown = COOLDOWN;
    config
}

#[cache_result("failover:{id}", cache = cache)]
async fn lookup(cache: &Cache, runs: &AtomicU64, id: u32) -> u32 {
    runs.fetch_add(1, Ordering::Relaxed);
    id * 2
}

/// Four tasks calling the cached function until stopped.
struct Load {
    calls: Arc<AtomicU64>,
    wrong: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Duration>>,
}

impl Load {
    fn start(cache: &Cache, runs: &Arc<AtomicU64>) -> Load {
        let calls = Arc::new(AtomicU64::new(0));
        let wrong = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..4u32)
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
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    slowest
                })
            })
            .collect();
        Load {
            calls,
            wrong,
            stop,
            tasks,
        }
    }

    /// Stops the tasks; the slowest call any of them made.
    async fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let mut slowest = Duration::ZERO;
        for task in self.tasks {
            slowest = slowest.max(task.await.expect("no panic in a cached call"));
        }
        assert_eq!(self.wrong.load(Ordering::Relaxed), 0, "a wrong value");
        slowest
    }
}

/// Polls until a value written through the cache after the kill, under a new key that
/// `probes` accepts (on a cluster: one on the lost primary's slots), reads back from the
/// store; the time since `since`.
async fn until_cached(
    cache: &Cache,
    store: &dyn Store,
    probes: impl Fn(&str) -> bool,
    since: Instant,
) -> Duration {
    let mut keys = (0u64..)
        .map(|n| format!("failover:probe:{n}"))
        .filter(|key| probes(key));
    loop {
        let key = keys.next().expect("endless keys");
        if cache.set(&key, &1u8, Ttl::Short).await.is_ok()
            && store.get(&key).await.is_ok_and(|value| value.is_some())
        {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "caching never resumed after the failover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `token` until it is answered; every answer meanwhile must deny (an error), never
/// grant another user or report the session gone. Returns (errors seen, time to answer).
async fn until_session_reads(
    sessions: &SessionManager,
    token: &SessionToken,
    since: Instant,
) -> (u32, Duration) {
    let mut errors = 0;
    loop {
        match sessions.get_session(token).await {
            Ok(Some(session)) => {
                assert_eq!(session.user_id, "u");
                return (errors, since.elapsed());
            }
            Ok(None) => panic!("the replicated session was reported gone during the switch"),
            Err(_) => errors += 1,
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "sessions never worked again after the failover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the primary's replicas acknowledged every write so far (`WAIT`), so that a
/// failover loses nothing this test wrote.
async fn replicated(store: &RedisStore, key: &str) {
    let mut connection = store.connection();
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|err| panic!("WAIT for {key}: {err}"));
    assert_eq!(acknowledged, 1, "the replica acknowledged the writes");
}

/// Waits out a failover (`promotion`, blocking) while sessions and the cache are polled from
/// `killed`: (promoted, failover time, cached calls during it, (session reads denied,
/// sessions back at), caching back at).
#[allow(clippy::too_many_arguments)]
async fn switch(
    promotion: impl FnOnce() -> cachemere::Result<usize>,
    probes: impl Fn(&str) -> bool + Send + Sync + 'static,
    load: &Load,
    sessions: &SessionManager,
    token: &SessionToken,
    cache: &Cache,
    store: &RedisStore,
    killed: Instant,
    before: u64,
) -> (usize, Duration, u64, (u32, Duration), Duration) {
    let session_poll = {
        let (sessions, token) = (sessions.clone(), token.clone());
        tokio::spawn(async move { until_session_reads(&sessions, &token, killed).await })
    };
    let cache_poll = {
        let (cache, store) = (cache.clone(), store.clone());
        tokio::spawn(async move { until_cached(&cache, &store, probes, killed).await })
    };
    let promoted = tokio::task::block_in_place(promotion).expect("a replica is promoted");
    let failover = killed.elapsed();
    let during = load.calls.load(Ordering::Relaxed) - before;
    let sessions_back = session_poll.await.expect("session poll");
    let cached = cache_poll.await.expect("cache poll");
    (promoted, failover, during, sessions_back, cached)
}

#[tokio::test]
async fn a_sentinel_url_reaches_the_primary_for_cache_local_tier_and_sessions() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = sentinel.config();
    let store = RedisStore::connect(&config)
        .await
        .expect("connect through Sentinel");
    assert!(
        store.address().starts_with("sentinel:"),
        "{}",
        store.address()
    );
    let cache = Cache::builder(store.clone())
        .local_cache(1 << 20, Duration::from_secs(60))
        .build();
    let started = Instant::now();
    while cache.local_cache_active() != Some(true) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the local tier's subscription never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache.set("k", &7u32, Ttl::Long).await.expect("set");
    assert_eq!(cache.get::<u32>("k").await.expect("get"), Some(7));
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut store.connection())
        .await
        .expect("ROLE");
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "commands go to the primary"
    );
    let sessions = SessionManager::new(store, SessionConfig::default().secret("sentinel"));
    let token = sessions
        .create_session("42", SessionData::new(), None)
        .await
        .expect("create");
    let read = sessions.get_session(&token).await.expect("read");
    assert_eq!(read.map(|s| s.user_id), Some("42".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sentinel_primary_under_load_surfaces_no_error_and_sessions_fail_closed() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = tuned(sentinel.config());
    let store = RedisStore::connect(&config)
        .await
        .expect("connect through Sentinel");
    let cache = Cache::builder(store.clone()).config(&config).build();
    let sessions = SessionManager::new(store.clone(), SessionConfig::from_config(&config));
    let token = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("create");
    let runs = Arc::new(AtomicU64::new(0));
    let load = Load::start(&cache, &runs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicated(&store, "the session").await;

    let old = sentinel.primary().expect("the primary");
    let killed = Instant::now();
    sentinel.kill(old).expect("SIGKILL the primary");
    let before = load.calls.load(Ordering::Relaxed);
    let (promoted, failover, during, (denied, sessions_back), cached) = switch(
        || sentinel.wait_for_failover(old, Duration::from_secs(30)),
        |_| true,
        &load,
        &sessions,
        &token,
        &cache,
        &store,
        killed,
        before,
    )
    .await;
    let slowest = load.finish().await;
    assert_ne!(promoted, old);
    assert!(during > 0, "cached calls were answered during the switch");
    let after = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("sessions work after the switch, same manager");
    assert!(sessions.get_session(&after).await.expect("read").is_some());
    let stats = cache.stats();
    println!(
        "sentinel failover (kill): promoted after {failover:?}; {during} cached calls during it, 0 errors \
         surfaced, slowest {slowest:?}; sessions denied {denied} reads then answered at \
         {sessions_back:?}; caching resumed at {cached:?} (store errors {}, trips {})",
        stats.errors, stats.circuit_trips
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sentinel_primary_is_left_for_the_promoted_replica() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = tuned(sentinel.config());
    let store = RedisStore::connect(&config)
        .await
        .expect("connect through Sentinel");
    let cache = Cache::builder(store.clone()).config(&config).build();
    let sessions = SessionManager::new(store.clone(), SessionConfig::from_config(&config));
    let token = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("create");
    let runs = Arc::new(AtomicU64::new(0));
    let load = Load::start(&cache, &runs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicated(&store, "the session").await;

    let old = sentinel.primary().expect("the primary");
    let frozen = Instant::now();
    sentinel.pause(old).expect("SIGSTOP the primary");
    let before = load.calls.load(Ordering::Relaxed);
    let (promoted, failover, during, (denied, sessions_back), cached) = switch(
        || sentinel.wait_for_failover(old, Duration::from_secs(30)),
        |_| true,
        &load,
        &sessions,
        &token,
        &cache,
        &store,
        frozen,
        before,
    )
    .await;
    let slowest = load.finish().await;
    sentinel.resume(old).expect("SIGCONT");
    assert_ne!(promoted, old);
    // Nothing answers from a frozen server: the store must leave it on a timeout, not on
    // the next health check (`REDIS_HEALTH_CHECK_INTERVAL`, 30 s here).
    assert_eq!(config.health_check_interval, Duration::from_secs(30));
    assert!(
        cached < failover + Duration::from_secs(10),
        "the store stayed on the frozen primary: caching resumed {cached:?} after the freeze, \
         the replica was promoted after {failover:?}"
    );
    assert!(during > 0, "cached calls were answered during the switch");
    println!(
        "sentinel failover (freeze): promoted after {failover:?}; {during} cached calls during \
         it, 0 errors surfaced, slowest {slowest:?}; sessions denied {denied} reads then \
         answered at {sessions_back:?}; caching resumed at {cached:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_cluster_primary_with_a_replica_under_load_surfaces_no_error() {
    let cluster = RedisCluster::start_with_replicas().expect("start a cluster with replicas");
    let config = tuned(cluster.config());
    let store = RedisStore::connect(&config)
        .await
        .expect("connect to the cluster");
    let cache = Cache::builder(store.clone()).config(&config).build();
    let sessions = SessionManager::new(store.clone(), SessionConfig::from_config(&config));
    // The node to kill holds this session (a user's sessions share a slot) and some of the
    // cached keys.
    let token = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("create");
    let old = cluster.node_of(&format!("{{{}}}", &token.expose()[5..37]));
    assert!(
        (0..50).any(|id| cluster.node_of(&format!("failover:{id}")) == old),
        "cached keys live on the node killed"
    );
    let runs = Arc::new(AtomicU64::new(0));
    let load = Load::start(&cache, &runs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| cluster.wait_replicated(Duration::from_secs(10)))
        .expect("the replicas catch up");

    let killed = Instant::now();
    cluster.kill(old).expect("SIGKILL the primary");
    let before = load.calls.load(Ordering::Relaxed);
    let (promoted, failover, during, (denied, sessions_back), cached) = switch(
        || cluster.wait_for_failover(old, Duration::from_secs(30)),
        {
            let on_old: std::collections::HashSet<String> = (0..2000)
                .map(|n| format!("failover:probe:{n}"))
                .filter(|key| cluster.node_of(key) == old)
                .collect();
            move |key| on_old.contains(key)
        },
        &load,
        &sessions,
        &token,
        &cache,
        &store,
        killed,
        before,
    )
    .await;
    let slowest = load.finish().await;
    assert_ne!(promoted, old);
    assert!(during > 0, "cached calls were answered during the switch");
    let stats = cache.stats();
    println!(
        "cluster failover (kill): promoted after {failover:?}; {during} cached calls during it, \
         0 errors surfaced, slowest {slowest:?}; sessions denied {denied} reads then answered \
         at {sessions_back:?}; caching resumed at {cached:?} (store errors {}, trips {})",
        stats.errors, stats.circuit_trips
    );
}

#[tokio::test]
async fn an_unknown_sentinel_service_is_a_clear_error_not_a_hang() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let mut config = sentinel.config();
    let url = sentinel.url().replace("/cachemere", "/no-such-service");
    config.redis_url = Some(url);
    let started = Instant::now();
    let err = RedisStore::connect(&config)
        .await
        .expect_err("no primary is named no-such-service");
    println!("unknown service: {err} (after {:?})", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the connect timeout"
    );
    assert!(
        matches!(
            err,
            cachemere::Error::Config {
                name: "REDIS_URL",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-service"), "{err}");

    // No Sentinel answers: a transient error within the connect timeout.
    config.redis_url = Some("redis+sentinel://127.0.0.1:1/cachemere".into());
    let started = Instant::now();
    let err = RedisStore::connect(&config)
        .await
        .expect_err("no Sentinel listens on port 1");
    println!("no sentinel: {err} (after {:?})", started.elapsed());
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tiers_resubscribe_on_the_new_sentinel_primary() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = tuned(sentinel.config());
    // Two instances, each on its own store, each with a local tier.
    let mut caches = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&config).await.expect("connect");
        caches.push(
            Cache::builder(store)
                .config(&config)
                .local_cache(1 << 20, Duration::from_secs(60))
                .build(),
        );
    }
    let active = |caches: &[Cache]| caches.iter().all(|c| c.local_cache_active() == Some(true));
    let started = Instant::now();
    while !active(&caches) {
        assert!(started.elapsed() < Duration::from_secs(10), "subscriptions");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    caches[0]
        .set("shared", &1u32, Ttl::Long)
        .await
        .expect("set");
    assert_eq!(caches[1].get::<u32>("shared").await.expect("get"), Some(1));

    let old = sentinel.primary().expect("the primary");
    let killed = Instant::now();
    sentinel.kill(old).expect("SIGKILL the primary");
    tokio::task::block_in_place(|| sentinel.wait_for_failover(old, Duration::from_secs(30)))
        .expect("the Sentinels promote the replica");
    // The tiers were suspended when their subscriptions broke; they come back on the new
    // primary, and a write through one instance then reaches the other's tier.
    loop {
        let written = caches[0].set("shared", &2u32, Ttl::Long).await.is_ok();
        if written && active(&caches) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the local tiers never came back on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resubscribed = killed.elapsed();
    // The resubscription told the other instance's store that the primary changed, so its
    // next read goes to the new primary (no error from its old connection).
    assert_eq!(caches[1].get::<u32>("shared").await.expect("get"), Some(2));
    caches[0]
        .set("shared", &3u32, Ttl::Long)
        .await
        .expect("set");
    let written = Instant::now();
    while caches[1].get::<u32>("shared").await.expect("get") != Some(3) {
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "the invalidation did not reach the other instance's tier"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "local tiers back on the new primary {resubscribed:?} after the kill; an invalidation \
         reached the other instance in {:?}",
        written.elapsed()
    );
}
