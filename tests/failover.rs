//! High availability: killing the primary of a Sentinel-managed pair, or a Redis Cluster
//! primary that has a replica, under load. Cached calls never surface an error and always
//! return the right value; sessions fail closed during the switch (an error, never another
//! user's session or a stale grant) and work after it, with the same objects; the time to
//! recover is measured and printed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_testing::{RedisCluster, RedisSentinel};
use cachemere::cache_session::{SessionConfig, SessionData, SessionManager, SessionToken};
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
    async fn finish(&mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let mut slowest = Duration::ZERO;
        for task in std::mem::take(&mut self.tasks) {
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

/// An application under load: a cache and a session manager on `config`'s Redis, one live
/// session (user `u`), and four tasks calling the cached function.
struct Scene {
    store: RedisStore,
    cache: Cache,
    sessions: SessionManager,
    token: SessionToken,
    load: Load,
}

/// A failover as the application saw it (times since the fault).
struct Switch {
    promoted: usize,
    failover: Duration,
    /// Cached calls answered between the fault and the promotion.
    during: u64,
    /// Session reads denied (with an error) before one was answered.
    denied: u32,
    sessions_back: Duration,
    cached: Duration,
}

impl Scene {
    async fn start(config: &Config) -> Scene {
        let store = RedisStore::connect(config).await.expect("connect");
        let cache = Cache::builder(store.clone()).config(config).build();
        let sessions = SessionManager::new(store.clone(), SessionConfig::from_config(config));
        let token = sessions
            .create_session("u", SessionData::new(), None)
            .await
            .expect("create");
        let load = Load::start(&cache, &Arc::new(AtomicU64::new(0)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        Scene {
            store,
            cache,
            sessions,
            token,
            load,
        }
    }

    /// Runs `fault` (a kill or a freeze of the primary), then waits out `promotion`
    /// (blocking) while sessions and the cache (writing keys `probes` accepts) are polled.
    async fn switch(
        &self,
        fault: impl FnOnce(),
        promotion: impl FnOnce() -> cachemere::Result<usize>,
        probes: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Switch {
        let since = Instant::now();
        fault();
        let before = self.load.calls.load(Ordering::Relaxed);
        let session_poll = {
            let (sessions, token) = (self.sessions.clone(), self.token.clone());
            tokio::spawn(async move { until_session_reads(&sessions, &token, since).await })
        };
        let cache_poll = {
            let (cache, store) = (self.cache.clone(), self.store.clone());
            tokio::spawn(async move { until_cached(&cache, &store, probes, since).await })
        };
        let promoted = tokio::task::block_in_place(promotion).expect("a replica is promoted");
        let failover = since.elapsed();
        let during = self.load.calls.load(Ordering::Relaxed) - before;
        let (denied, sessions_back) = session_poll.await.expect("session poll");
        let cached = cache_poll.await.expect("cache poll");
        assert!(during > 0, "cached calls were answered during the switch");
        Switch {
            promoted,
            failover,
            during,
            denied,
            sessions_back,
            cached,
        }
    }

    /// Stops the load; prints the switch as `what` with the slowest call and the cache's
    /// error counts.
    async fn report(&mut self, what: &str, switch: &Switch) {
        let slowest = self.load.finish().await;
        let stats = self.cache.stats();
        let Switch {
            failover,
            during,
            denied,
            sessions_back,
            cached,
            ..
        } = switch;
        println!(
            "{what}: promoted after {failover:?}; {during} cached calls during it, 0 errors \
             surfaced, slowest {slowest:?}; sessions denied {denied} reads then answered at \
             {sessions_back:?}; caching resumed at {cached:?} (store errors {}, trips {})",
            stats.errors, stats.circuit_trips
        );
    }
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
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut store.connection())
        .await
        .expect("ROLE");
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "commands go to the primary"
    );
    common::cache_local_tier_and_sessions_work(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sentinel_primary_under_load_surfaces_no_error_and_sessions_fail_closed() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let mut scene = Scene::start(&tuned(sentinel.config())).await;
    replicated(&scene.store, "the session").await;
    let old = sentinel.primary().expect("the primary");
    let switch = scene
        .switch(
            || sentinel.kill(old).expect("SIGKILL the primary"),
            || sentinel.wait_for_failover(old, Duration::from_secs(30)),
            |_| true,
        )
        .await;
    assert_ne!(switch.promoted, old);
    scene.report("sentinel failover (kill)", &switch).await;
    let after = scene
        .sessions
        .create_session("u", SessionData::new(), None)
        .await
        .expect("sessions work after the switch, same manager");
    assert!(
        scene
            .sessions
            .get_session(&after)
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sentinel_primary_is_left_for_the_promoted_replica() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = tuned(sentinel.config());
    let mut scene = Scene::start(&config).await;
    replicated(&scene.store, "the session").await;
    let old = sentinel.primary().expect("the primary");
    let switch = scene
        .switch(
            || sentinel.pause(old).expect("SIGSTOP the primary"),
            || sentinel.wait_for_failover(old, Duration::from_secs(30)),
            |_| true,
        )
        .await;
    scene.report("sentinel failover (freeze)", &switch).await;
    sentinel.resume(old).expect("SIGCONT");
    assert_ne!(switch.promoted, old);
    // Nothing answers from a frozen server: the store must leave it on a timeout, not on
    // the next health check (`REDIS_HEALTH_CHECK_INTERVAL`, 30 s here).
    assert_eq!(config.health_check_interval, Duration::from_secs(30));
    assert!(
        switch.cached < switch.failover + Duration::from_secs(10),
        "the store stayed on the frozen primary: caching resumed {:?} after the freeze, \
         the replica was promoted after {:?}",
        switch.cached,
        switch.failover
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_cluster_primary_with_a_replica_under_load_surfaces_no_error() {
    let cluster = RedisCluster::start_with_replicas().expect("start a cluster with replicas");
    let mut scene = Scene::start(&tuned(cluster.config())).await;
    // The node to kill holds the session (a user's sessions share a slot) and some of the
    // cached keys.
    let old = cluster.node_of(&format!("{{{}}}", &scene.token.expose()[5..37]));
    assert!(
        (0..50).any(|id| cluster.node_of(&format!("failover:{id}")) == old),
        "cached keys live on the node killed"
    );
    tokio::task::block_in_place(|| cluster.wait_replicated(Duration::from_secs(10)))
        .expect("the replicas catch up");
    let on_old: std::collections::HashSet<String> = (0..2000)
        .map(|n| format!("failover:probe:{n}"))
        .filter(|key| cluster.node_of(key) == old)
        .collect();
    let switch = scene
        .switch(
            || cluster.kill(old).expect("SIGKILL the primary"),
            || cluster.wait_for_failover(old, Duration::from_secs(30)),
            move |key| on_old.contains(key),
        )
        .await;
    assert_ne!(switch.promoted, old);
    scene.report("cluster failover (kill)", &switch).await;
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

/// `ROLE` calls the primary has answered: redis-rs checks with `ROLE` that the server the
/// Sentinels name is a primary, once per search (the Sentinels themselves use `INFO`).
fn primary_searches(sentinel: &RedisSentinel) -> u64 {
    role_calls(sentinel.ports()[sentinel.primary().expect("the primary")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_ask_the_sentinels_once() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let before = primary_searches(&sentinel);
    let store = RedisStore::connect_lazy(&sentinel.config()).expect("a lazy store");
    let cache = Cache::builder(store).build();
    let writes: Vec<_> = (0..32u32)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.set(&format!("k{i}"), &i, Ttl::Short).await })
        })
        .collect();
    for write in writes {
        write.await.expect("no panic").expect("written");
    }
    let searches = primary_searches(&sentinel) - before;
    println!("32 concurrent first requests: {searches} ROLE checks");
    // One search checks the primary once per Sentinel it heard from at most (three here);
    // 32 searches would check it at least 32 times.
    assert!(
        (1..=3).contains(&searches),
        "one caller searches, the others wait for its answer: {searches} checks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_still_reachable_loses_no_write_and_the_store_follows_the_switch() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let config = sentinel.config();
    let store = RedisStore::connect(&config).await.expect("connect");
    let cache = Cache::builder(store.clone())
        .config(&config)
        .strict(true)
        .build();
    cache.set("before", &1u32, Ttl::Long).await.expect("set");
    replicated(&store, "before").await;
    let old = sentinel.primary().expect("the primary");
    let since = Instant::now();
    sentinel.failover().expect("SENTINEL FAILOVER");
    let new =
        tokio::task::block_in_place(|| sentinel.wait_for_failover(old, Duration::from_secs(30)))
            .expect("the replica is promoted");
    let promoted = since.elapsed();
    // The old primary still runs as a primary until the Sentinels reconfigure it (seconds
    // later); a write it acknowledged meanwhile would be lost. The store follows the
    // Sentinels' `+switch-master` announcement instead of waiting for a failure.
    let new_port = sentinel.ports()[new].to_string();
    let followed = loop {
        let port: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("port")
            .query_async(&mut store.connection())
            .await
            .unwrap_or_default();
        if port.get(1) == Some(&new_port) {
            break since.elapsed();
        }
        assert!(
            since.elapsed() < promoted + Duration::from_secs(2),
            "the store still talks to the old primary {:?} after the promotion",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    cache
        .set("between", &3u32, Ttl::Long)
        .await
        .expect("a write between the promotion and the demotion");
    // The old primary runs on, demoted: it answers writes with READONLY.
    let demoted = sentinel.ports()[old];
    let started = Instant::now();
    loop {
        let role = std::process::Command::new("redis-cli")
            .args(["-p", &demoted.to_string(), "ROLE"])
            .output()
            .expect("redis-cli");
        if String::from_utf8_lossy(&role.stdout).starts_with("slave") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never demoted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let demoted_after = since.elapsed();
    let demoted_at = Instant::now();
    let mut refused = Vec::new();
    let written = loop {
        match cache.set("after", &2u32, Ttl::Long).await {
            Ok(()) => break demoted_at.elapsed(),
            Err(err) => refused.push(cachemere::error::one_line(&err)),
        }
        assert!(
            demoted_at.elapsed() < Duration::from_secs(10),
            "writes kept failing on the demoted primary: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut store.connection())
        .await
        .expect("ROLE");
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "the store talks to the new primary"
    );
    assert_eq!(cache.get::<u32>("after").await.expect("get"), Some(2));
    assert_eq!(cache.get::<u32>("before").await.expect("get"), Some(1));
    assert!(refused.len() <= 2, "{refused:?}");
    assert_eq!(
        cache.get::<u32>("between").await.expect("get"),
        Some(3),
        "a write acknowledged between the promotion and the demotion was lost"
    );
    println!(
        "demoted primary (SENTINEL FAILOVER): promoted after {promoted:?}, the store on the \
         new primary at {followed:?}, the old primary demoted after {demoted_after:?}; {} \
         write(s) refused ({refused:?}), writing again {written:?} after the demotion",
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_timeout_on_a_frozen_primary_does_not_drop_its_successor() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let mut config = sentinel.config();
    // Longer than the failover, so that the first request times out after the store has
    // already moved to the promoted replica.
    config.command_timeout = Duration::from_secs(8);
    let store = RedisStore::connect(&config).await.expect("connect");
    let client_id = |store: RedisStore| async move {
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async::<u64>(&mut store.connection())
            .await
            .expect("CLIENT ID")
    };
    client_id(store.clone()).await;
    let old = sentinel.primary().expect("the primary");
    sentinel.pause(old).expect("SIGSTOP the primary");
    let hanging = {
        let store = store.clone();
        tokio::spawn(async move { store.get("k").await })
    };
    let since = Instant::now();
    let new =
        tokio::task::block_in_place(|| sentinel.wait_for_failover(old, Duration::from_secs(30)))
            .expect("the replica is promoted");
    let promoted = since.elapsed();
    // Until the store has moved (the Sentinels' announcement, or a short request timing out
    // on the silent connection), a request would wait out the 8 s timeout on the frozen
    // server: probe through a 300 ms handle on the same connections.
    let quick = store
        .with_deadline(Duration::from_millis(300))
        .expect("a bounded handle");
    while quick.exists("probe").await.is_err() {
        assert!(
            since.elapsed() < promoted + Duration::from_secs(5),
            "the store never moved to the new primary"
        );
    }
    let successor = client_id(store.clone()).await;
    assert!(
        !hanging.is_finished(),
        "the first request ended before the switch"
    );
    let late = hanging.await.expect("task");
    assert!(
        matches!(late, Err(cachemere::Error::Timeout { .. })),
        "{late:?}"
    );
    let after = client_id(store.clone()).await;
    sentinel.resume(old).expect("SIGCONT");
    assert_eq!(
        after, successor,
        "the late timeout dropped the connection to the new primary"
    );
    println!(
        "frozen primary: promoted after {promoted:?}; the request on it timed out after {:?}, \
         when the store was on the new primary ({new}), which kept its connection",
        config.command_timeout
    );
}

/// Clients subscribed to a channel on the Sentinels (`CLIENT LIST`, `sub=` above 0).
fn sentinel_subscribers(sentinel: &RedisSentinel) -> usize {
    sentinel
        .sentinel_ports()
        .iter()
        .map(|port| {
            let list = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "CLIENT", "LIST"])
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&list.stdout)
                .lines()
                .filter(|line| {
                    line.split(' ')
                        .any(|field| field.starts_with("sub=") && field != "sub=0")
                })
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_watch_ends_with_the_store() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let baseline = sentinel_subscribers(&sentinel);
    let mut config = sentinel.config();
    config.health_check_interval = Duration::from_millis(200);
    let store = RedisStore::connect(&config).await.expect("connect");
    let started = Instant::now();
    while sentinel_subscribers(&sentinel) == baseline {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no +switch-master watch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(store);
    let dropped = Instant::now();
    while sentinel_subscribers(&sentinel) > baseline {
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "the watch outlived its store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "the +switch-master watch ended {:?} after its store",
        dropped.elapsed()
    );
}

/// `ROLE` calls a server has answered (a primary search checks the named server with it).
fn role_calls(port: u16) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_role:calls="))
        .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The README's claim: a `READONLY` reply (a primary demoted behind the Sentinels' back and
/// still reachable: its clients stay connected) makes the link search for the primary
/// again, instead of writing to a replica on the same connection for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_reply_makes_the_link_search_for_the_primary_again() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let store = RedisStore::connect(&sentinel.config())
        .await
        .expect("connect through the Sentinels");
    store
        .set("readonly", b"1", Duration::from_secs(60))
        .await
        .expect("the primary takes it");
    let ports = sentinel.ports();
    let primary = sentinel.primary().expect("the primary");
    let replica = (0..ports.len())
        .find(|&index| index != primary)
        .expect("a replica");
    let cli = |port: u16, args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("OK"),
            "{args:?}: {out:?}"
        );
    };
    // what an operator's manual switch does, without a Sentinel failover (no announcement)
    cli(ports[replica], &["REPLICAOF", "NO", "ONE"]);
    let replica_port = ports[replica].to_string();
    cli(ports[primary], &["REPLICAOF", "127.0.0.1", &replica_port]);
    let before = role_calls(ports[primary]);

    let err = store
        .set("readonly", b"2", Duration::from_secs(60))
        .await
        .expect_err("the demoted server refuses the write");
    assert!(
        matches!(&err, cachemere::Error::Redis { source, .. } if source.code() == Some("READONLY")),
        "{err:?}"
    );
    // the next request asks the Sentinels again (who still name the demoted server: its
    // role check then fails, and the search with it)
    let next = store.get("readonly").await;
    let searched = role_calls(ports[primary]) - before;
    println!(
        "after READONLY: {searched} ROLE checks of the demoted server; next request: {next:?}"
    );
    assert!(
        searched >= 1,
        "the link kept its connection to the demoted server: no new search"
    );
}

/// The first Sentinel frozen (it accepts connections and answers nothing), then the primary
/// killed, with a cache deadline of 200 ms: the search for the new primary runs as its own
/// task under its own timeout, so the requests' deadlines do not cancel it, and caching
/// resumes within about a second of the promotion (it took 30 s, until the health check,
/// when each request ran and cancelled its own search).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sentinel_does_not_starve_the_search_for_the_new_primary() {
    let sentinel = RedisSentinel::start().expect("start a primary, a replica and Sentinels");
    let store = RedisStore::connect(&tuned(sentinel.config()))
        .await
        .expect("connect through the Sentinels");
    let cache = Cache::builder(store)
        .config(&tuned(sentinel.config()))
        .strict(true)
        .build();
    cache
        .set("resume", &0u32, Ttl::Long)
        .await
        .expect("primary");
    let old = sentinel.primary().expect("the primary");
    sentinel
        .pause_sentinel(0)
        .expect("freeze the first Sentinel");
    let killed = Instant::now();
    sentinel.kill(old).expect("kill the primary");
    // The failover is done when a Sentinel that answers names the replica (asking the
    // frozen one would wait).
    let replica_port = sentinel.ports()[1 - old].to_string();
    let answering = sentinel.sentinel_ports()[1].to_string();
    let promoted = tokio::task::spawn_blocking(move || {
        while killed.elapsed() < Duration::from_secs(60) {
            let named = std::process::Command::new("redis-cli")
                .args([
                    "-p",
                    &answering,
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    "cachemere",
                ])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&named.stdout).lines().nth(1) == Some(replica_port.as_str())
            {
                return Ok(killed.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("the Sentinels did not name the replica within 60 s")
    });
    let mut i = 0u32;
    let resumed = loop {
        i += 1;
        if cache.set("resume", &i, Ttl::Long).await.is_ok()
            && cache.get::<u32>("resume").await.ok().flatten() == Some(i)
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "caching never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let promoted = promoted
        .await
        .expect("the watcher")
        .expect("the Sentinels promote the replica");
    sentinel.resume_sentinel(0).expect("unfreeze");
    println!(
        "first Sentinel frozen: the Sentinels named the replica {promoted:?} after the kill, caching resumed {resumed:?} after it"
    );
    assert!(
        resumed <= promoted + Duration::from_secs(1),
        "caching resumed {:?} after the promotion",
        resumed.saturating_sub(promoted)
    );
}
