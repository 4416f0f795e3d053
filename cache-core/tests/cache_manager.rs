//! Cache manager behaviour, counted (not timed), against a private `redis-server`, a private
//! Redis Cluster and the in-process store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::key::escape_glob;
use cache_core::{Cache, KeyTtl, MemoryStore, RedisStore, SetOptions, Store, Ttl};
use cache_testing::RedisServer;

struct Fixture {
    cache: Cache,
    store: Arc<dyn Store>,
    _server: Option<Box<dyn std::any::Any + Send>>,
}

async fn redis_fixture() -> Fixture {
    let server = RedisServer::start_private().expect("start redis-server");
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.config())
            .await
            .expect("connect to the test server"),
    );
    Fixture {
        cache: Cache::builder_shared(store.clone()).build(),
        store,
        _server: Some(Box::new(server)),
    }
}

async fn cluster_fixture() -> Fixture {
    let cluster = cache_testing::RedisCluster::lease().expect("start a redis cluster");
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&cluster.config())
            .await
            .expect("connect to the test cluster"),
    );
    Fixture {
        cache: Cache::builder_shared(store.clone()).build(),
        store,
        _server: Some(Box::new(cluster)),
    }
}

async fn memory_fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Fixture {
        cache: Cache::builder_shared(store.clone()).build(),
        store,
        _server: None,
    }
}

fn counting_factory(
    calls: &Arc<AtomicUsize>,
    value: u64,
    delay: Duration,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> + Send + 'static
{
    let calls = calls.clone();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            value
        })
    }
}

/// What a run of readers on one hot key saw.
struct Hammered {
    /// Factory runs.
    calls: usize,
    /// The most factory runs at one time, across every cache.
    max_concurrent: usize,
    /// Values the readers received.
    values: Vec<u64>,
}

/// `tasks` readers per cache call `read` on one key for `run`, 10 ms apart, once the first
/// cache has computed the key (value 0) and every cache's stats are reset; the factory
/// takes `compute` and returns its call number.
async fn hammer<R, Fut>(
    caches: &[Cache],
    tasks: usize,
    run: Duration,
    compute: Duration,
    read: R,
) -> Hammered
where
    R: Fn(
            Cache,
            Box<
                dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>
                    + Send,
            >,
        ) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let warm = read.clone()(
        caches[0].clone(),
        Box::new(move || {
            Box::pin(async move {
                tokio::time::sleep(compute).await;
                0
            })
        }),
    )
    .await;
    assert_eq!(warm, 0);
    for cache in caches {
        cache.reset_stats();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + run;
    let readers: Vec<_> = caches
        .iter()
        .flat_map(|cache| std::iter::repeat_n(cache.clone(), tasks))
        .map(|cache| {
            let (calls, running, max, read) =
                (calls.clone(), running.clone(), max.clone(), read.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while Instant::now() < until {
                    let (calls, running, max) = (calls.clone(), running.clone(), max.clone());
                    let factory = Box::new(move || {
                        Box::pin(async move {
                            let call = calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(compute).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            call
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>
                    });
                    seen.push(read(cache.clone(), factory).await);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                seen
            })
        })
        .collect();
    let mut values = Vec::new();
    for reader in readers {
        values.extend(reader.await.expect("a reader panicked"));
    }
    // let a refresh still running finish before counting
    tokio::time::sleep(compute * 3).await;
    Hammered {
        calls: calls.load(Ordering::SeqCst),
        max_concurrent: max.load(Ordering::SeqCst),
        values,
    }
}

macro_rules! manager_suite {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn internal_keys_stay_out_of_the_user_key_space() {
                let f = $fixture().await;
                let tagged = SetOptions::new(Ttl::Default).tags(["t"]);
                f.cache.set("user:1", &1u8, tagged).await.unwrap();
                f.store.set("user:1.__cachemere:lock", b"holder", Duration::from_secs(60)).await.unwrap();
                assert_eq!(f.cache.invalidate_pattern("user:*").await.unwrap(), 1);
                assert!(
                    f.store.exists("user:1.__cachemere:lock").await.unwrap(),
                    "a user's pattern removed a held lock"
                );
                f.cache.set("user:2", &2u8, SetOptions::new(Ttl::Default).tags(["t"])).await.unwrap();
                assert_eq!(f.cache.invalidate_pattern("*").await.unwrap(), 1);
                f.cache.set("user:3", &3u8, Ttl::Default).await.unwrap();
                f.cache.set("user:2", &2u8, Ttl::Default).await.unwrap();
                assert_eq!(f.cache.invalidate_tag("t").await.unwrap(), 1, "the tag index survived `*`");
                assert!(f.cache.exists("user:3").await.unwrap());
                for key in ["user:1.__cachemere:lock", "__cachemere:tag:t", "a__cachemere:b"] {
                    let refused = f.cache.set(key, &1u8, Ttl::Default).await;
                    assert!(matches!(refused, Err(cache_core::Error::InvalidKey { .. })), "{key}: {refused:?}");
                }
                let refused = f.cache.set_multi(&[("ok", 1u8), ("x__cachemere:y", 2)], Ttl::Default).await;
                assert!(refused.is_err());
                assert!(!f.cache.exists("ok").await.unwrap(), "nothing written");
            }

            #[tokio::test]
            async fn a_json_cache_stays_plain_json_with_the_fail_safe_asked_for() {
                let f = $fixture().await;
                let json = || {
                    Cache::builder_shared(f.store.clone())
                        .codec(cache_core::Json)
                        .fail_safe(Some(Duration::from_secs(60)))
                };
                let refused = json().try_build().unwrap_err();
                assert!(matches!(refused, cache_core::Error::Config { name: "fail_safe", .. }), "{refused}");
                let cache = json().build();
                cache.get_or_set("plain", Ttl::Default, || async { vec![1u32, 2] }).await.unwrap();
                let stored = f.store.get("plain").await.unwrap().expect("cached");
                assert_eq!(serde_json::from_slice::<Vec<u32>>(&stored).unwrap(), [1, 2], "plain JSON");
                let stale_for = SetOptions::new(Ttl::Default).stale_for(Duration::from_secs(60));
                let value = cache.get_or_set("stamped", stale_for.clone(), || async { 7u32 }).await.unwrap();
                assert_eq!(value, 7, "the value is returned");
                assert_eq!(f.store.get("stamped").await.unwrap(), None, "nothing non-JSON is written");
                assert!(cache.set("stamped", &7u32, stale_for).await.is_err());
                assert!(cache.stats().errors >= 1);
            }

            #[tokio::test]
            async fn set_multi_jitters_each_key_on_its_own() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .default_ttl(Duration::from_secs(1000))
                    .ttl_jitter(50)
                    .build();
                let items: Vec<(String, u32)> = (0..20).map(|i| (format!("j:{i}"), i)).collect();
                cache.set_multi(&items, Ttl::Default).await.unwrap();
                let mut ttls = Vec::new();
                for (key, _) in &items {
                    match cache.ttl(key).await.unwrap() {
                        KeyTtl::ExpiresIn(left) => ttls.push(left),
                        other => panic!("{key}: {other:?}"),
                    }
                }
                let spread = *ttls.iter().max().unwrap() - *ttls.iter().min().unwrap();
                assert!(
                    spread > Duration::from_secs(5),
                    "keys written together expire together: {ttls:?}"
                );
                assert!(ttls.iter().all(|ttl| *ttl <= Duration::from_secs(1500)));
            }

            #[tokio::test]
            async fn fail_safe_serves_stale_when_the_recomputation_fails() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .fail_safe(Some(Duration::from_secs(30)))
                    .build();
                let short = Duration::from_millis(300);
                let ok = cache
                    .try_get_or_set("fs", short, || async { Ok::<_, String>(1u32) })
                    .await;
                assert_eq!(ok, Ok(1));
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(cache.get::<u32>("fs").await.unwrap(), None, "a stale value is a miss to get");
                assert_eq!(
                    cache.get_multi::<u32, _>(&["fs"]).await.unwrap(),
                    [None],
                    "and to get_multi, which reads through the same stages"
                );
                let failed = cache
                    .try_get_or_set("fs", short, || async { Err::<u32, _>("db down".to_owned()) })
                    .await;
                assert_eq!(failed, Ok(1), "the stale value is served instead of the error");
                assert_eq!(cache.stats().stale_served, 1);
                let fresh = cache
                    .try_get_or_set("fs", short, || async { Ok::<_, String>(2u32) })
                    .await;
                assert_eq!(fresh, Ok(2), "a working recomputation replaces the stale value");
                let without = cache
                    .try_get_or_set("never-cached", short, || async { Err::<u32, _>("db down".to_owned()) })
                    .await;
                assert_eq!(without, Err("db down".to_owned()), "nothing stale: the error");
            }

            #[tokio::test]
            async fn factory_timeout_serves_stale_instead_of_waiting() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .fail_safe(Some(Duration::from_secs(30)))
                    .factory_timeout(Some(Duration::from_millis(100)))
                    .build();
                let short = Duration::from_millis(200);
                cache.get_or_set("slow", short, || async { 1u32 }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let started = std::time::Instant::now();
                let value = cache
                    .get_or_set("slow", short, || async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        2u32
                    })
                    .await
                    .unwrap();
                assert_eq!(value, 1);
                assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
                assert_eq!(cache.stats().stale_served, 1);
                let value = cache.get_or_set("cold", short, || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    3u32
                }).await.unwrap();
                assert_eq!(value, 3, "without a stale value the computation runs to the end");
            }

            #[tokio::test]
            async fn get_or_refresh_answers_stale_and_finishes_in_the_background() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .fail_safe(Some(Duration::from_secs(30)))
                    .factory_timeout(Some(Duration::from_millis(100)))
                    .build();
                let (short, hard) = (Duration::from_millis(200), Duration::from_secs(5));
                let first = cache.get_or_refresh("bg", short, hard, || async { 1u32 }).await;
                assert_eq!(first.unwrap(), 1);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let started = std::time::Instant::now();
                let value = cache
                    .get_or_refresh("bg", Duration::from_secs(5), hard, || async {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        2u32
                    })
                    .await
                    .unwrap();
                assert_eq!(value, 1, "the stale value, at the soft timeout");
                assert!(started.elapsed() < Duration::from_millis(350), "{:?}", started.elapsed());
                assert_eq!(cache.stats().stale_served, 1);
                tokio::time::sleep(Duration::from_millis(600)).await;
                assert_eq!(cache.get::<u32>("bg").await.unwrap(), Some(2), "the refresh landed in the background");
            }

            #[tokio::test]
            async fn get_or_refresh_hard_timeout_fails_then_the_value_lands() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone()).build();
                let err = cache
                    .get_or_refresh("cold", Duration::from_secs(60), Duration::from_millis(100), || async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        3u32
                    })
                    .await
                    .unwrap_err();
                assert!(err.is_timeout(), "{err}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert_eq!(cache.get::<u32>("cold").await.unwrap(), Some(3));
            }

            #[tokio::test]
            async fn set_with_stale_for_keeps_the_value_past_its_ttl() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone()).build();
                let options = SetOptions::new(Duration::from_secs(10)).stale_for(Duration::from_secs(50));
                cache.set("window", &1u8, options).await.unwrap();
                match cache.ttl("window").await.unwrap() {
                    KeyTtl::ExpiresIn(ttl) => assert!(ttl > Duration::from_secs(55), "{ttl:?}"),
                    other => panic!("{other:?}"),
                }
                assert_eq!(cache.get::<u8>("window").await.unwrap(), Some(1), "fresh for its ttl");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn early_refresh_recomputes_in_the_background_and_nobody_waits() {
                let f = $fixture().await;
                let options = SetOptions::new(Duration::from_millis(600)).early_refresh(true);
                let read = move |cache: Cache, factory| {
                    let options = options.clone();
                    async move {
                        cache.get_or_refresh("hot", options, Duration::from_secs(5), factory).await.unwrap()
                    }
                };
                let seen = hammer(std::slice::from_ref(&f.cache), 8, Duration::from_millis(2_500), Duration::from_millis(100), read).await;
                let stats = f.cache.stats();
                assert_eq!(stats.misses, 0, "no read waited for a computation: {stats:?}");
                assert!(seen.calls >= 4, "600 ms values over 2.5 s were refreshed: {} calls", seen.calls);
                assert_eq!(seen.max_concurrent, 1, "one refresh at a time in a process");
                assert_eq!(stats.early_refreshes as usize, seen.calls, "{stats:?}");
                assert!(seen.values.iter().any(|&v| v > 1), "readers received refreshed values");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn early_refresh_in_get_or_set_runs_in_the_deciding_call_only() {
                let f = $fixture().await;
                let options = SetOptions::new(Duration::from_millis(600)).early_refresh(true);
                let read = move |cache: Cache, factory: Box<dyn FnOnce() -> _ + Send>| {
                    let options = options.clone();
                    async move { cache.get_or_set("inline", options, factory).await.unwrap() }
                };
                let seen = hammer(std::slice::from_ref(&f.cache), 8, Duration::from_millis(2_500), Duration::from_millis(100), read).await;
                let stats = f.cache.stats();
                assert_eq!(stats.misses, 0, "{stats:?}");
                assert!(seen.calls >= 4, "{} calls", seen.calls);
                assert_eq!(seen.max_concurrent, 1);
                assert_eq!(stats.early_refreshes as usize, seen.calls, "{stats:?}");
                assert_eq!(stats.stampede_joins, 0, "nobody waited on the refreshing caller");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn early_refresh_with_lock_computes_once_across_processes() {
                let f = $fixture().await;
                let other = Cache::builder_shared(f.store.clone()).build();
                let options = SetOptions::new(Duration::from_millis(600)).early_refresh(true).beta(2.0).lock(true);
                let read = move |cache: Cache, factory| {
                    let options = options.clone();
                    async move {
                        cache.get_or_refresh("shared", options, Duration::from_secs(5), factory).await.unwrap()
                    }
                };
                let caches = [f.cache.clone(), other.clone()];
                let seen = hammer(&caches, 6, Duration::from_millis(2_500), Duration::from_millis(100), read).await;
                let refreshes = f.cache.stats().early_refreshes + other.stats().early_refreshes;
                assert!(seen.calls >= 4, "{} calls", seen.calls);
                assert_eq!(seen.max_concurrent, 1, "two processes refreshed one key at once");
                assert_eq!(refreshes as usize, seen.calls, "{:?} {:?}", f.cache.stats(), other.stats());
                assert_eq!(f.cache.stats().misses + other.stats().misses, 0);
            }

            #[tokio::test]
            async fn a_caller_dropped_during_its_early_refresh_leaves_no_lock_or_flight_behind() {
                let f = $fixture().await;
                // a lock left behind would block refreshes for lock_wait (10 s)
                let cache = Cache::builder_shared(f.store.clone()).lock_wait(Duration::from_secs(10)).build();
                let options = SetOptions::new(Duration::from_secs(30)).early_refresh(true).beta(1e9).lock(true);
                let slow = |value: u32, delay: Duration| {
                    move || async move {
                        tokio::time::sleep(delay).await;
                        value
                    }
                };
                let first = cache.get_or_set("k", options.clone(), slow(1, Duration::from_millis(20))).await;
                assert_eq!(first.unwrap(), 1);
                // every read decides (beta 1e9); get_or_set refreshes in the deciding call,
                // which gives up after 50 ms of a 10 s computation, holding lock and flight
                let dropped = tokio::time::timeout(
                    Duration::from_millis(50),
                    cache.get_or_set("k", options.clone(), slow(2, Duration::from_secs(10))),
                )
                .await;
                assert!(dropped.is_err(), "the caller was dropped mid-refresh");
                let started = Instant::now();
                let mut seen = 1;
                while seen != 3 && started.elapsed() < Duration::from_secs(1) {
                    seen = cache.get_or_set("k", options.clone(), slow(3, Duration::from_millis(20))).await.unwrap();
                    // the lock is released by a task the drop spawned: let it run (an
                    // in-process store never makes a read wait, so this loop alone never yields)
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                assert_eq!(seen, 3, "a later read refreshed within 1 s: lock and flight were released");
                assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(3));
                assert!(cache.stats().early_refreshes >= 2, "{:?}", cache.stats());
            }

            #[tokio::test]
            async fn a_failed_early_refresh_keeps_serving_the_current_value() {
                let f = $fixture().await;
                let options = SetOptions::new(Duration::from_millis(800)).early_refresh(true).beta(1e9);
                let first = f
                    .cache
                    .try_get_or_set("flaky", options.clone(), || async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<u32, String>(1)
                    })
                    .await;
                assert_eq!(first, Ok(1));
                // beta 1e9 on a 20 ms computation: every read decides to refresh
                for _ in 0..3 {
                    let read = f
                        .cache
                        .try_get_or_set("flaky", options.clone(), || async { Err::<u32, _>("db down".to_owned()) })
                        .await;
                    assert_eq!(read, Ok(1), "the current value, not the refresh's error");
                }
                let stats = f.cache.stats();
                assert_eq!((stats.early_refreshes, stats.early_refresh_failures), (3, 3), "{stats:?}");
                assert_eq!(f.cache.get::<u32>("flaky").await.unwrap(), Some(1), "still stored");
                tokio::time::sleep(Duration::from_millis(900)).await;
                let expired = f
                    .cache
                    .try_get_or_set("flaky", options.clone(), || async { Err::<u32, _>("db down".to_owned()) })
                    .await;
                assert_eq!(expired, Err("db down".to_owned()), "served until its ttl, not after");
                let refreshed = f
                    .cache
                    .try_get_or_set("flaky", options, || async { Ok::<u32, String>(2) })
                    .await;
                assert_eq!(refreshed, Ok(2));
            }

            #[tokio::test]
            async fn an_invalidation_during_an_early_refresh_is_not_undone_by_it() {
                let f = $fixture().await;
                let db = Arc::new(AtomicUsize::new(1));
                let options = SetOptions::new(Duration::from_secs(5)).early_refresh(true).beta(1e9);
                let read = |db: Arc<AtomicUsize>| {
                    let options = options.clone();
                    let cache = f.cache.clone();
                    async move {
                        cache
                            .get_or_refresh("grades", options, Duration::from_secs(5), move || async move {
                                let value = db.load(Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                value
                            })
                            .await
                            .unwrap()
                    }
                };
                assert_eq!(read(db.clone()).await, 1);
                // every read refreshes (beta 1e9): this one starts a refresh that reads 1
                assert_eq!(read(db.clone()).await, 1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                db.store(2, Ordering::SeqCst);
                f.cache.delete("grades").await.unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(f.cache.stats().early_refreshes, 1);
                assert_eq!(
                    f.cache.get::<usize>("grades").await.unwrap(),
                    None,
                    "the refresh computed before the invalidation wrote its old value back"
                );
                assert_eq!(read(db.clone()).await, 2, "the next read computes afresh");
            }

            #[tokio::test]
            async fn an_invalidation_during_a_refresh_that_outlives_its_hard_timeout_is_not_undone() {
                // get_or_refresh's computation outlives a hard timeout and caches its value
                // when done; for an early refresh, only over the value it refreshed
                let f = $fixture().await;
                let db = Arc::new(AtomicUsize::new(1));
                let options = SetOptions::new(Duration::from_secs(5)).early_refresh(true).beta(1e9);
                let read = |db: Arc<AtomicUsize>, hard: Duration| {
                    let options = options.clone();
                    let cache = f.cache.clone();
                    async move {
                        cache
                            .get_or_refresh("grades", options, hard, move || async move {
                                let value = db.load(Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                value
                            })
                            .await
                            .unwrap()
                    }
                };
                assert_eq!(read(db.clone(), Duration::from_secs(5)).await, 1);
                // this read starts a refresh that reads 1 and gives up on it after 50 ms
                assert_eq!(read(db.clone(), Duration::from_millis(50)).await, 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(f.cache.stats().early_refresh_failures, 1, "the refresh timed out");
                db.store(2, Ordering::SeqCst);
                f.cache.delete("grades").await.unwrap();
                // the computation ends about 200 ms after it started, and writes then
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(
                    f.cache.get::<usize>("grades").await.unwrap(),
                    None,
                    "the refresh's late write put its old value back over the invalidation"
                );
                assert_eq!(read(db.clone(), Duration::from_secs(5)).await, 2);
            }

            #[tokio::test]
            async fn early_refresh_is_refused_by_a_json_cache_and_checks_beta() {
                let f = $fixture().await;
                let json = Cache::builder_shared(f.store.clone()).codec(cache_core::Json).build();
                let early = SetOptions::new(Ttl::Default).early_refresh(true);
                let value = json.get_or_set("plain", early.clone(), || async { 7u32 }).await.unwrap();
                assert_eq!(value, 7);
                assert_eq!(f.store.get("plain").await.unwrap(), None, "nothing non-JSON is written");
                for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
                    let value = f.cache.get_or_set("beta", early.clone().beta(beta), || async { 1u32 }).await.unwrap();
                    assert_eq!(value, 1);
                    assert_eq!(f.store.get("beta").await.unwrap(), None, "beta {beta} refused");
                }
                let strict = Cache::builder_shared(f.store.clone()).strict(true).build();
                let refused = strict.get_or_set("beta", early.beta(0.0), || async { 1u32 }).await;
                assert!(matches!(refused, Err(cache_core::Error::Config { name: "beta", .. })), "{refused:?}");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stampede_of_100_runs_the_factory_once() {
                let f = $fixture().await;
                let calls = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..100)
                    .map(|_| {
                        let cache = f.cache.clone();
                        let factory = counting_factory(&calls, 7, Duration::from_millis(100));
                        tokio::spawn(async move { cache.get_or_set("hot", Ttl::Default, factory).await })
                    })
                    .collect();
                for task in tasks {
                    assert_eq!(task.await.unwrap().unwrap(), 7);
                }
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                assert!(f.cache.stats().stampede_joins >= 1);
                assert_eq!(f.cache.get::<u64>("hot").await.unwrap(), Some(7));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancelled_leader_does_not_strand_waiters() {
                let f = $fixture().await;
                let calls = Arc::new(AtomicUsize::new(0));
                let leader = {
                    let cache = f.cache.clone();
                    let factory = counting_factory(&calls, 1, Duration::from_secs(3600));
                    tokio::spawn(async move { cache.get_or_set("k", Ttl::Default, factory).await })
                };
                while calls.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let waiters: Vec<_> = (0..10)
                    .map(|_| {
                        let cache = f.cache.clone();
                        let factory = counting_factory(&calls, 2, Duration::from_millis(50));
                        tokio::spawn(async move { cache.get_or_set("k", Ttl::Default, factory).await })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(50)).await;
                leader.abort();
                for waiter in waiters {
                    let value = tokio::time::timeout(Duration::from_secs(10), waiter)
                        .await
                        .expect("a waiter was stranded")
                        .unwrap()
                        .unwrap();
                    assert_eq!(value, 2);
                }
                assert_eq!(calls.load(Ordering::SeqCst), 2, "the aborted leader plus one successor");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn different_keys_never_wait_on_each_other() {
                let f = $fixture().await;
                let calls = Arc::new(AtomicUsize::new(0));
                let _blocked = {
                    let cache = f.cache.clone();
                    let factory = counting_factory(&calls, 1, Duration::from_secs(3600));
                    tokio::spawn(async move { cache.get_or_set("slow", Ttl::Default, factory).await })
                };
                while calls.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let other = f.cache.get_or_set("fast", Ttl::Default, || async { 5u64 });
                let value = tokio::time::timeout(Duration::from_secs(10), other)
                    .await
                    .expect("another key's computation blocked this one")
                    .unwrap();
                assert_eq!(value, 5);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn factory_error_reaches_every_waiter_and_is_not_cached() {
                let f = $fixture().await;
                let calls = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..20)
                    .map(|_| {
                        let cache = f.cache.clone();
                        let calls = calls.clone();
                        tokio::spawn(async move {
                            cache
                                .try_get_or_set("fails", Ttl::Default, || async move {
                                    calls.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    Err::<u64, String>("database down".into())
                                })
                                .await
                        })
                    })
                    .collect();
                for task in tasks {
                    assert_eq!(task.await.unwrap(), Err("database down".to_owned()));
                }
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                assert!(!f.cache.exists("fails").await.unwrap());
            }

            #[tokio::test]
            async fn multi_key_round_trip() {
                let f = $fixture().await;
                let items: Vec<(String, u32)> = (0..50).map(|i| (format!("m:{i}"), i)).collect();
                f.cache.set_multi(&items, Ttl::Default).await.unwrap();
                let keys: Vec<String> = (0..60).map(|i| format!("m:{i}")).collect();
                let values = f.cache.get_multi::<u32, _>(&keys).await.unwrap();
                assert_eq!(values.len(), 60);
                for (i, value) in values.iter().enumerate() {
                    assert_eq!(*value, (i < 50).then_some(i as u32));
                }
                assert_eq!(f.cache.delete_multi(&keys).await.unwrap(), 50);
                assert_eq!(f.cache.get_multi::<u32, _>(&keys[..3]).await.unwrap(), [None, None, None]);
            }

            #[tokio::test]
            async fn pattern_invalidation_escapes_caller_segments() {
                let f = $fixture().await;
                for id in ["1", "2", "*", "[a]", "a"] {
                    for kind in ["profile", "classes"] {
                        f.cache.set(&format!("user:{kind}:{id}"), &1u8, Ttl::Default).await.unwrap();
                    }
                }
                let removed = f.cache.invalidate_pattern(&format!("user:*:{}", escape_glob("*"))).await.unwrap();
                assert_eq!(removed, 2);
                let removed = f.cache.invalidate_pattern(&format!("user:*:{}", escape_glob("[a]"))).await.unwrap();
                assert_eq!(removed, 2);
                for id in ["1", "2", "a"] {
                    assert!(f.cache.exists(&format!("user:profile:{id}")).await.unwrap(), "{id}");
                }
            }

            #[tokio::test]
            async fn prefix_is_applied_and_escaped_in_patterns() {
                let f = $fixture().await;
                let app = Cache::builder_shared(f.store.clone()).prefix("app[1]:").build();
                app.set("user:1", &1u8, Ttl::Default).await.unwrap();
                f.cache.set("app1:user:1", &1u8, Ttl::Default).await.unwrap();
                assert!(f.cache.exists("app[1]:user:1").await.unwrap());
                assert_eq!(app.invalidate_pattern("user:*").await.unwrap(), 1);
                assert!(f.cache.exists("app1:user:1").await.unwrap());
            }

            #[tokio::test]
            async fn tag_invalidation_removes_exactly_the_tagged_keys() {
                let f = $fixture().await;
                let tagged = SetOptions::new(Ttl::Default).tags(["user:42"]);
                f.cache.set("user:profile:42", &1u8, tagged.clone()).await.unwrap();
                f.cache.set_multi(&[("ai:context:42", 2u8), ("user:classes:42", 3)], tagged).await.unwrap();
                let short = SetOptions::new(Duration::from_millis(100)).tags(["user:42"]);
                f.cache.set("user:temp:42", &4u8, short).await.unwrap();
                f.cache.set("user:profile:7", &5u8, SetOptions::new(Ttl::Default).tags(["user:7"])).await.unwrap();
                f.cache.set("untagged", &6u8, Ttl::Default).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;

                assert_eq!(f.cache.invalidate_tag("user:42").await.unwrap(), 3);
                for key in ["user:profile:42", "ai:context:42", "user:classes:42", "user:temp:42"] {
                    assert!(!f.cache.exists(key).await.unwrap(), "{key}");
                }
                assert!(f.cache.exists("user:profile:7").await.unwrap());
                assert!(f.cache.exists("untagged").await.unwrap());
                assert_eq!(f.cache.invalidate_tag("user:42").await.unwrap(), 0);
            }

            #[tokio::test]
            async fn a_tagged_key_extended_past_its_first_expiry_stays_removable_by_its_tag() {
                let f = $fixture().await;
                let short = SetOptions::new(Duration::from_millis(300)).tags(["t", "u"]);
                f.cache.set("ext", &1u8, short).await.unwrap();
                assert!(f.cache.expire("ext", Duration::from_secs(60)).await.unwrap());
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert!(f.cache.exists("ext").await.unwrap(), "extended");
                assert_eq!(f.cache.invalidate_tag("t").await.unwrap(), 1, "escaped its tag");
                assert!(!f.cache.exists("ext").await.unwrap());
                assert!(f.cache.set("internal", &1u8, Ttl::Default).await.is_ok());
                assert!(!f.cache.expire("never-written", Duration::from_secs(60)).await.unwrap());
            }

            #[tokio::test]
            async fn tag_records_go_with_their_keys() {
                let f = $fixture().await;
                let tagged = |tag: &str| SetOptions::new(Ttl::Long).tags([tag.to_owned()]);
                for key in ["by-tag:1", "by-tag:2"] {
                    f.cache.set(key, &1u8, tagged("t")).await.unwrap();
                }
                for key in ["by-pattern:1", "by-pattern:2", "solo", "multi:1", "multi:2"] {
                    f.cache.set(key, &1u8, tagged("u")).await.unwrap();
                }
                let records = |keys: &[&str]| -> Vec<String> {
                    keys.iter().map(|key| format!("{key}.__cachemere:tags")).collect()
                };
                let all = records(&["by-tag:1", "by-tag:2", "by-pattern:1", "by-pattern:2", "solo", "multi:1", "multi:2"]);
                for record in &all {
                    assert!(f.store.exists(record).await.unwrap(), "{record} written");
                }
                assert_eq!(f.cache.invalidate_tag("t").await.unwrap(), 2);
                assert_eq!(f.cache.invalidate_pattern("by-pattern:*").await.unwrap(), 2);
                assert!(f.cache.delete("solo").await.unwrap());
                assert_eq!(f.cache.delete_multi(&["multi:1", "multi:2"]).await.unwrap(), 2);
                for record in &all {
                    assert!(!f.store.exists(record).await.unwrap(), "{record} outlived its key");
                }
            }

            /// Writers keep writing tagged values while the tag is invalidated: every value
            /// acknowledged before `invalidate_tag` started is gone when it returns.
            #[tokio::test]
            async fn a_value_acknowledged_before_invalidate_tag_is_never_served_after_it() {
                let f = $fixture().await;
                let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let writers: Vec<_> = (0..4)
                    .map(|writer| {
                        let (cache, acknowledged, stop) = (f.cache.clone(), acknowledged.clone(), stop.clone());
                        tokio::spawn(async move {
                            let mut i = 0u32;
                            while !stop.load(Ordering::Relaxed) {
                                let key = format!("live:{writer}:{i}");
                                let options = SetOptions::new(Ttl::Long).tags(["live"]);
                                cache.set(&key, &i, options).await.unwrap();
                                acknowledged.lock().unwrap().push(key);
                                i += 1;
                                // the in-process store never makes a writer wait
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let before: Vec<String> = acknowledged.lock().unwrap().clone();
                f.cache.invalidate_tag("live").await.unwrap();
                stop.store(true, Ordering::Relaxed);
                for writer in writers {
                    writer.await.unwrap();
                }
                assert!(!before.is_empty());
                for key in &before {
                    assert_eq!(f.cache.get::<u32>(key).await.unwrap(), None, "{key} survived");
                }
            }

            #[tokio::test]
            async fn tag_index_lives_as_long_as_its_longest_member() {
                let f = $fixture().await;
                let tag_key = "__cachemere:tag:t";
                let long = SetOptions::new(Duration::from_secs(60)).tags(["t"]);
                let short = SetOptions::new(Duration::from_millis(100)).tags(["t"]);
                f.cache.set("long", &1u8, long).await.unwrap();
                f.cache.set("short", &1u8, short.clone()).await.unwrap();
                match f.store.ttl(tag_key).await.unwrap() {
                    KeyTtl::ExpiresIn(left) => assert!(left > Duration::from_secs(50), "{left:?}"),
                    other => panic!("{other:?}"),
                }
                let only_short = Cache::builder_shared(f.store.clone()).prefix("s:").build();
                only_short.set("a", &1u8, short).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(!f.store.exists("s:__cachemere:tag:t").await.unwrap(), "an index of expired keys must expire");
            }

            #[tokio::test]
            async fn corrupt_values_are_misses_that_get_deleted() {
                let f = $fixture().await;
                f.store.set("bad", b"\xCA\x01\x09\x00junk", Duration::from_secs(60)).await.unwrap();
                f.store.set("worse", b"\x00\x01", Duration::from_secs(60)).await.unwrap();
                assert_eq!(f.cache.get::<u64>("bad").await.unwrap(), None);
                assert!(!f.store.exists("bad").await.unwrap());
                let value = f.cache.get_or_set("worse", Ttl::Default, || async { 9u64 }).await.unwrap();
                assert_eq!(value, 9);
                assert_eq!(f.cache.get::<u64>("worse").await.unwrap(), Some(9));
                assert_eq!(f.cache.stats().decode_failures, 2);
            }

            #[tokio::test]
            async fn json_values_interoperate_with_other_languages() {
                let f = $fixture().await;
                let json = Cache::builder_shared(f.store.clone()).codec(cache_core::Json).build();
                json.set("user:data", &serde_json::json!({"user_id": "123", "scores": [85, 92, 78]}), Ttl::Default).await.unwrap();
                assert_eq!(
                    f.store.get("user:data").await.unwrap().unwrap(),
                    br#"{"scores":[85,92,78],"user_id":"123"}"#
                );
                f.store.set("from:python", br#"{"user_id": "9", "scores": []}"#, Duration::from_secs(60)).await.unwrap();
                let read: serde_json::Value = f.cache.get("from:python").await.unwrap().unwrap();
                assert_eq!(read["user_id"], "9");
            }

            #[tokio::test]
            async fn large_values_are_compressed_in_the_store() {
                let f = $fixture().await;
                let text = "the same sentence again and again. ".repeat(1000);
                f.cache.set("essay", &text, Ttl::Default).await.unwrap();
                let raw = f.store.get("essay").await.unwrap().unwrap();
                assert!(raw.len() < text.len() / 5, "{} bytes stored", raw.len());
                assert_eq!(f.cache.get::<String>("essay").await.unwrap(), Some(text));
            }

            #[tokio::test]
            async fn oversized_values_are_refused_and_nothing_is_written() {
                let f = $fixture().await;
                let small = Cache::builder_shared(f.store.clone()).max_value_bytes(1024).compress_over(None).build();
                let err = small.set("big", &vec![7u8; 4096], Ttl::Default).await.unwrap_err();
                assert!(matches!(err, cache_core::Error::ValueTooLarge { .. }), "{err:?}");
                assert!(!f.store.exists("big").await.unwrap());
                let value = small.get_or_set("big", Ttl::Default, || async { vec![7u8; 4096] }).await.unwrap();
                assert_eq!(value.len(), 4096);
                assert!(!f.store.exists("big").await.unwrap());
                assert_eq!(small.stats().errors, 1);
            }

            #[tokio::test]
            async fn expiry_classes_and_jitter() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .short_ttl(Duration::from_secs(100))
                    .ttl_jitter(20)
                    .build();
                let mut longest = Duration::ZERO;
                for i in 0..20 {
                    cache.set(&format!("j:{i}"), &1u8, Ttl::Short).await.unwrap();
                    match f.store.ttl(&format!("j:{i}")).await.unwrap() {
                        KeyTtl::ExpiresIn(left) => {
                            assert!(left <= Duration::from_secs(120), "{left:?}");
                            assert!(left > Duration::from_secs(98), "{left:?}");
                            longest = longest.max(left);
                        }
                        other => panic!("{other:?}"),
                    }
                }
                assert!(longest > Duration::from_secs(102), "no jitter applied: {longest:?}");
                assert_eq!(cache.resolve_ttl(Ttl::Long), Duration::from_secs(86_400));
            }

            #[tokio::test]
            async fn distributed_lock_makes_two_processes_compute_once() {
                let f = $fixture().await;
                let a = Cache::builder_shared(f.store.clone()).build();
                let b = Cache::builder_shared(f.store.clone()).build();
                let calls = Arc::new(AtomicUsize::new(0));
                let locked = SetOptions::new(Ttl::Default).lock(true);
                let (x, y) = tokio::join!(
                    a.get_or_set("shared", locked.clone(), counting_factory(&calls, 3, Duration::from_millis(300))),
                    b.get_or_set("shared", locked, counting_factory(&calls, 3, Duration::from_millis(300))),
                );
                assert_eq!((x.unwrap(), y.unwrap()), (3, 3));
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                assert!(!f.store.exists("shared.__cachemere:lock").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_cancelled_lock_holder_hands_over_at_once() {
                let f = $fixture().await;
                let instance = || Cache::builder_shared(f.store.clone()).lock_wait(Duration::from_secs(10)).build();
                let (a, b) = (instance(), instance());
                let locked = SetOptions::new(Ttl::Default).lock(true);
                let leader = tokio::spawn({
                    let (a, locked) = (a.clone(), locked.clone());
                    async move {
                        a.get_or_set("held", locked, || async {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            1u32
                        })
                        .await
                    }
                });
                while !f.store.exists("held.__cachemere:lock").await.unwrap() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let waiter = |cache: Cache, value: u32| {
                    let locked = locked.clone();
                    tokio::spawn(async move {
                        let answer = cache.get_or_set("held", locked, || async move { value }).await;
                        (answer, Instant::now())
                    })
                };
                let (here, there) = (waiter(a.clone(), 2), waiter(b.clone(), 3));
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(!here.is_finished() && !there.is_finished(), "both wait for the holder");
                let dropped = Instant::now();
                leader.abort();
                let (here, there) = (here.await.unwrap(), there.await.unwrap());
                assert!(here.0.is_ok() && there.0.is_ok());
                let (a_wait, b_wait) = (here.1 - dropped, there.1 - dropped);
                println!("{}: waiters answered {a_wait:?} (same process) and {b_wait:?} (other) after the holder was dropped", stringify!($backend));
                assert!(
                    a_wait.max(b_wait) < Duration::from_secs(1),
                    "the waiters waited for the lock to expire: {a_wait:?}, {b_wait:?}"
                );
                assert!(!f.store.exists("held.__cachemere:lock").await.unwrap(), "the lock is gone");
            }

            #[tokio::test]
            async fn strict_write_failure_still_releases_the_lock() {
                let f = $fixture().await;
                let strict = Cache::builder_shared(f.store.clone())
                    .strict(true)
                    .max_value_bytes(16)
                    .build();
                let locked = SetOptions::new(Ttl::Default).lock(true);
                let err = strict
                    .get_or_set("big", locked, || async { vec![1u8; 64] })
                    .await
                    .unwrap_err();
                assert!(matches!(err, cache_core::Error::ValueTooLarge { .. }), "{err:?}");
                assert!(!f.store.exists("big.__cachemere:lock").await.unwrap());
            }

            #[tokio::test]
            async fn stats_count_and_reset() {
                let f = $fixture().await;
                f.cache.get::<u8>("nothing").await.unwrap();
                f.cache.set("k", &1u8, Ttl::Default).await.unwrap();
                f.cache.get::<u8>("k").await.unwrap();
                f.cache.delete("k").await.unwrap();
                let stats = f.cache.stats();
                assert_eq!((stats.hits, stats.misses, stats.sets, stats.deletes), (1, 1, 1, 1));
                assert_eq!(stats.hit_ratio(), 0.5);
                f.cache.reset_stats();
                assert_eq!(f.cache.stats(), cache_core::CacheStats::default());
            }
        }
    };
}

manager_suite!(redis, redis_fixture);
manager_suite!(memory, memory_fixture);
manager_suite!(cluster, cluster_fixture);

async fn command_calls(store: &RedisStore, command: &str) -> u64 {
    let mut connection = store.connection();
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

#[tokio::test]
async fn a_miss_costs_one_get_and_one_set_and_a_hit_one_get() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let cache = Cache::builder(store.clone()).build();
    let value = cache
        .get_or_set("rt", Ttl::Default, || async { 1u32 })
        .await
        .unwrap();
    assert_eq!(value, 1);
    assert_eq!(command_calls(&store, "get").await, 1, "a miss reads once");
    assert_eq!(command_calls(&store, "set").await, 1);
    cache
        .get_or_set("rt", Ttl::Default, || async { 2u32 })
        .await
        .unwrap();
    assert_eq!(command_calls(&store, "get").await, 2, "a hit reads once");
    assert_eq!(command_calls(&store, "set").await, 1);
}

#[tokio::test]
async fn get_multi_of_1000_keys_is_one_round_trip() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let cache = Cache::builder(store.clone()).build();
    let items: Vec<(String, u32)> = (0..1000).map(|i| (format!("k:{i}"), i)).collect();
    cache.set_multi(&items, Ttl::Default).await.unwrap();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();

    let mut connection = store.connection();
    ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let values = cache.get_multi::<u32, _>(&keys).await.unwrap();
    assert_eq!(values.iter().flatten().count(), 1000);
    assert_eq!(command_calls(&store, "mget").await, 1);
    assert_eq!(command_calls(&store, "get").await, 0);

    // loads the fence script (its first EVALSHA answers NOSCRIPT)
    cache.delete("another").await.unwrap();
    ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    assert_eq!(cache.delete_multi(&keys).await.unwrap(), 1000);
    // One fence script for the keys and one UNLINK for their tag records, sent together:
    // one round trip.
    assert_eq!(command_calls(&store, "evalsha").await, 1);
    assert_eq!(command_calls(&store, "unlink").await, 1);
}

#[tokio::test]
async fn redis_outage_degrades_then_caching_resumes() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let cache = Cache::builder(store)
        .circuit_breaker(5, Duration::from_millis(200))
        .build();
    assert_eq!(
        cache
            .get_or_set("k", Ttl::Default, || async { 1u32 })
            .await
            .unwrap(),
        1
    );

    server.kill().unwrap();
    for i in 0..5u32 {
        let value = cache
            .get_or_set(
                &format!("down:{i}"),
                Ttl::Default,
                || async move { 100 + i },
            )
            .await;
        assert_eq!(
            value.unwrap(),
            100 + i,
            "the factory's value is served while Redis is down"
        );
    }
    let during = cache.stats();
    assert!(
        during.errors >= 5,
        "errors counted during the outage: {during:?}"
    );
    assert_eq!(during.circuit_trips, 1, "{during:?}");
    assert!(during.short_circuits >= 1, "{during:?}");
    assert!(cache.health_check().await.circuit_open);
    cache.reset_stats();
    let reset = cache.stats();
    assert_eq!(
        (reset.errors, reset.circuit_trips, reset.short_circuits),
        (0, 0, 0),
        "reset_stats zeroes every counter it reports: {reset:?}"
    );

    server.restart().unwrap();
    let mut resumed = false;
    for _ in 0..50 {
        let _ = cache
            .get_or_set("after", Ttl::Default, || async { 7u32 })
            .await
            .unwrap();
        if cache.get::<u32>("after").await.ok().flatten() == Some(7) {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "caching did not resume after the restart");
}

#[tokio::test]
async fn fail_safe_serves_the_last_good_value_while_redis_is_down() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let cache = Cache::builder(store)
        .fail_safe(Some(Duration::from_secs(30)))
        .build();
    let ok = cache
        .try_get_or_set("lg", Ttl::Default, || async { Ok::<_, String>(5u32) })
        .await;
    assert_eq!(ok, Ok(5));
    server.kill().unwrap();
    let served = cache
        .try_get_or_set("lg", Ttl::Default, || async {
            Err::<u32, _>("db down".to_owned())
        })
        .await;
    assert_eq!(
        served,
        Ok(5),
        "store and database both down: the last good value"
    );
    assert_eq!(cache.stats().stale_served, 1);
    let fresh = cache
        .try_get_or_set("lg", Ttl::Default, || async { Ok::<_, String>(6u32) })
        .await;
    assert_eq!(fresh, Ok(6), "store down, database up: the fresh value");
}

#[tokio::test]
async fn strict_mode_surfaces_store_errors() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let cache = Cache::builder(store).strict(true).build();
    server.kill().unwrap();
    let err = cache
        .get_or_set("k", Ttl::Default, || async { 1u32 })
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_cleanly() {
    let server = RedisServer::start_private().unwrap();
    let config = server.config();
    server.kill().unwrap();
    let err = RedisStore::connect(&config).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let cache = Cache::from_config(&config).unwrap();
    assert!(!cache_core::check_redis_connection(&cache).await);
    let report = cache.health_check().await;
    assert!(report.error.is_some());
}

#[tokio::test]
async fn a_frozen_server_times_out_instead_of_hanging() {
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    server.pause().unwrap();
    let err = store.get("k").await.unwrap_err();
    server.resume().unwrap();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn the_raw_connection_keeps_the_command_timeout() {
    // The store bounds its own requests with one timer (redis-rs's response timeout is off):
    // the escape hatch must stay bounded all the same.
    let server = RedisServer::start_private().unwrap();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let mut connection = store.connection();
    server.pause().unwrap();
    let started = Instant::now();
    let reply: ::redis::RedisResult<Option<Vec<u8>>> = ::redis::cmd("GET")
        .arg("k")
        .query_async(&mut connection)
        .await;
    let waited = started.elapsed();
    server.resume().unwrap();
    let err = reply.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // command timeout 1 s; generous bound for a loaded CI machine, far below "hangs"
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
}

#[tokio::test]
async fn a_request_waiting_for_the_connection_is_bounded_by_the_command_timeout() {
    // The server accepts the connection (the kernel does, while it is frozen) but never
    // answers the handshake: the request waits for the connection itself, which the
    // connect timeout (30 s here) would allow; the command timeout must cut it short.
    let server = RedisServer::start_private().unwrap();
    let mut config = server.config();
    config.connect_timeout = Duration::from_secs(30);
    config.command_timeout = Duration::from_millis(300);
    server.pause().unwrap();
    let store = RedisStore::connect_lazy(&config).unwrap();
    let started = Instant::now();
    let read = store.get("k").await;
    let waited = started.elapsed();
    server.resume().unwrap();
    let err = read.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
}

#[tokio::test]
async fn a_cache_deadline_shorter_than_the_command_timeout_bounds_each_read() {
    let server = RedisServer::start_private().unwrap();
    let mut config = server.config();
    config.command_timeout = Duration::from_secs(30);
    let store = RedisStore::connect(&config).await.unwrap();
    let cache = Cache::builder(store)
        .operation_timeout(Some(Duration::from_millis(200)))
        .strict(true)
        .try_build()
        .unwrap();
    cache.set("k", &1u32, Ttl::Long).await.unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let read = cache.get::<u32>("k").await;
    let waited = started.elapsed();
    server.resume().unwrap();
    let err = read.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?} of a 30 s command timeout"
    );
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
}

#[test]
fn global_handle() {
    let cache = Cache::builder(MemoryStore::new()).prefix("global:").build();
    Cache::set_global(cache);
    assert_eq!(Cache::global().unwrap().full_key("k"), "global:k");
    assert!(Cache::clear_global().is_some());
    assert!(Cache::global().is_none());
}

#[tokio::test]
async fn background_health_checks_follow_the_server() {
    let server = RedisServer::start_private().unwrap();
    let mut config = server.config();
    config.health_check_interval = Duration::from_millis(50);
    let store = RedisStore::connect(&config).await.unwrap();
    let observed = |want: bool| {
        let store = store.clone();
        async move {
            for _ in 0..200 {
                if store.last_health() == Some(want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        }
    };
    assert!(observed(true).await, "never reported healthy");
    server.kill().unwrap();
    assert!(observed(false).await, "never noticed the server died");
    server.restart().unwrap();
    assert!(observed(true).await, "never noticed the server came back");
}

/// An early-refresh value whose ttl `expire()` lengthened is refreshed by its new expiry, not
/// its first stamp (the store's countdown decides, not the writer's clock).
async fn early_refresh_follows_a_lengthened_ttl(f: Fixture) {
    let calls = Arc::new(AtomicUsize::new(0));
    let options = || SetOptions::new(Duration::from_millis(800)).early_refresh(true);
    let read = || {
        f.cache.get_or_set(
            "stretched",
            options(),
            counting_factory(&calls, 7, Duration::from_millis(20)),
        )
    };
    assert_eq!(read().await.expect("read"), 7);
    assert!(
        f.cache
            .expire("stretched", Duration::from_secs(60))
            .await
            .expect("redis")
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..20 {
        assert_eq!(read().await.expect("read"), 7);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refreshed by its first stamp: {:?}",
        f.cache.stats()
    );
    match f.cache.ttl("stretched").await.expect("ttl") {
        KeyTtl::ExpiresIn(left) => assert!(left > Duration::from_secs(50), "{left:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn early_refresh_follows_a_lengthened_ttl_on_redis() {
    early_refresh_follows_a_lengthened_ttl(redis_fixture().await).await;
}

#[tokio::test]
async fn early_refresh_follows_a_lengthened_ttl_on_a_cluster() {
    early_refresh_follows_a_lengthened_ttl(cluster_fixture().await).await;
}
