//! The in-process first tier over a shared private `redis-server` (and a private Redis
//! Cluster): two caches stand for two service instances; what one writes or invalidates the
//! other stops serving, within a measured delay.

use std::time::{Duration, Instant};

use cache_core::{Cache, Config, RedisStore, SetOptions, Ttl};
use cache_testing::{RedisCluster, RedisServer};

async fn instance(server: &RedisServer) -> Cache {
    instance_on(&server.config()).await
}

async fn instance_on(config: &Config) -> Cache {
    let store = RedisStore::connect(config).await.expect("connect");
    let cache = Cache::builder(store)
        .local_cache(1 << 20, Duration::from_secs(10))
        .build();
    let started = Instant::now();
    while cache.local_cache_active() != Some(true) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "subscription never became active"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
}

/// Reads `key` until a read is answered by the local tier (reads that start before a write's
/// notice arrives are not kept locally, so the first ones may go to the store).
async fn until_local_hit<T>(cache: &Cache, key: &str, expected: &T)
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let started = Instant::now();
    let before = cache.stats().local_hits;
    while cache.stats().local_hits == before {
        assert_eq!(
            cache.get::<T>(key).await.expect("GET").as_ref(),
            Some(expected)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never served locally"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `read` until it returns `expected`; the time it took.
async fn until<F, Fut>(expected: Option<u32>, read: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<u32>>,
{
    let started = Instant::now();
    while read().await != expected {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never saw {expected:?}"
        );
        tokio::task::yield_now().await;
    }
    started.elapsed()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_invalidations_on_one_instance_reach_the_others_local_tier() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (a, b) = (instance(&server).await, instance(&server).await);
    coherence("redis-server", &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_notices_cross_nodes() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let a = instance_on(&seeds(&cluster, &[0, 1, 2])).await;
    let b = instance_on(&seeds(&cluster, &[1, 2, 0])).await;
    coherence("cluster", &a, &b).await;
}

/// The cluster's seed list in the given node order.
fn seeds(cluster: &RedisCluster, order: &[usize]) -> Config {
    let ports = cluster.ports();
    let mut config = cluster.config();
    config.redis_url = Some(
        order
            .iter()
            .map(|&node| format!("redis://127.0.0.1:{}", ports[node]))
            .collect::<Vec<_>>()
            .join(","),
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_lost_nodes_neither_stop_notices_nor_leave_stale_copies() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let channel_node = cluster.node_of("__cachemere:invalidate");
    let subscribed = (channel_node + 1) % 3;
    let survivor = (channel_node + 2) % 3;
    let config = seeds(&cluster, &[subscribed, survivor, channel_node]);
    let (a, b) = (instance_on(&config).await, instance_on(&config).await);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|key| cluster.node_of(key) == survivor)
        .expect("a key on the surviving node");
    let read = || async { b.get::<u32>(&key).await.expect("get") };

    a.set(&key, &1u32, Ttl::Long).await.expect("set");
    until_local_hit(&b, &key, &1u32).await;
    cluster
        .kill(channel_node)
        .expect("kill the node of the channel's slot, where b listens first");
    a.set(&key, &2u32, Ttl::Long).await.expect("set");
    until(Some(2), read).await;

    until_local_hit(&b, &key, &2u32).await;
    cluster
        .kill(subscribed)
        .expect("kill the node b listens on now");
    a.set(&key, &3u32, Ttl::Long).await.expect("set");
    let delay = until(Some(3), read).await;
    println!("cluster, listener's node killed: the new value was read after {delay:?}");
    let started = Instant::now();
    while b.local_cache_active() != Some(true) {
        assert_eq!(
            read().await,
            Some(3),
            "once the new value is read, never the old"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never resubscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_local_hit(&b, &key, &3u32).await;
}

/// `a` writes and invalidates, `b` must stop serving its local copies; measures the delay.
async fn coherence(deployment: &str, a: &Cache, b: &Cache) {
    a.set("k", &1u32, Ttl::Long).await.expect("cache operation");
    until_local_hit(b, "k", &1u32).await;

    let mut delays = Vec::new();
    for i in 2..202u32 {
        b.get::<u32>("k").await.expect("get");
        a.set("k", &i, Ttl::Long).await.expect("cache operation");
        delays.push(until(Some(i), || async { b.get::<u32>("k").await.expect("get") }).await);
    }
    let (p50, p99) = (percentile(&mut delays, 0.5), percentile(&mut delays, 0.99));
    println!(
        "{deployment}: cross-instance invalidation after a write: p50 {p50:?}, p99 {p99:?} over 200 writes"
    );
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");

    b.get::<u32>("k").await.expect("get");
    a.delete("k").await.expect("cache operation");
    until(None, || async { b.get::<u32>("k").await.expect("get") }).await;

    a.set("user:1:a", &1u32, Ttl::Long)
        .await
        .expect("cache operation");
    a.set("user:2:a", &2u32, SetOptions::new(Ttl::Long).tags(["t"]))
        .await
        .expect("set");
    assert_eq!(
        b.get::<u32>("user:1:a").await.expect("cache operation"),
        Some(1)
    );
    assert_eq!(
        b.get::<u32>("user:2:a").await.expect("cache operation"),
        Some(2)
    );
    a.invalidate_pattern("user:1:*")
        .await
        .expect("cache operation");
    a.invalidate_tag("t").await.expect("cache operation");
    until(None, || async {
        b.get::<u32>("user:1:a").await.expect("cache operation")
    })
    .await;
    until(None, || async {
        b.get::<u32>("user:2:a").await.expect("cache operation")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_copy_never_outlives_the_store() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (a, b) = (instance(&server).await, instance(&server).await);
    a.set("short", &1u32, Duration::from_millis(300))
        .await
        .unwrap();
    until_local_hit(&b, "short", &1u32).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        b.get::<u32>("short").await.unwrap(),
        None,
        "the local ttl (10 s) is capped by the store's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_clears_the_local_tier() {
    let server = RedisServer::start_private().expect("start redis-server");
    let b = instance(&server).await;
    b.set("kept", &7u32, Ttl::Long).await.unwrap();
    assert_eq!(b.get::<u32>("kept").await.unwrap(), Some(7));
    server
        .restart()
        .expect("restart: an empty store, and notices may have been missed");
    let started = Instant::now();
    loop {
        let read = b.get::<u32>("kept").await.unwrap_or(None);
        if b.local_cache_active() == Some(true) && read.is_none() {
            break;
        }
        assert_ne!(
            (b.local_cache_active(), read),
            (Some(true), Some(7)),
            "a local copy survived the lost subscription"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_suspends_the_local_tier_until_it_answers() {
    let server = RedisServer::start_private().expect("start redis-server");
    let b = instance(&server).await;
    b.set("kept", &7u32, Ttl::Long).await.expect("set");
    until_local_hit(&b, "kept", &7u32).await;
    server.pause().expect("freeze the server");
    let frozen = Instant::now();
    while b.local_cache_active() == Some(true) {
        assert!(
            frozen.elapsed() < Duration::from_secs(5),
            "a silent subscription was trusted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "frozen server: local tier suspended after {:?}",
        frozen.elapsed()
    );
    server.resume().expect("unfreeze the server");
    let resumed = Instant::now();
    while b.local_cache_active() != Some(true) {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "never resubscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hits_against_store_hits() {
    let server = RedisServer::start_private().expect("start redis-server");
    local_against_store("redis-server", &server.config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_local_hits_against_store_hits() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    local_against_store("cluster", &cluster.config()).await;
}

/// Median hit latency of the local tier and of the store alone, taking turns.
async fn local_against_store(deployment: &str, config: &Config) {
    let local = instance_on(config).await;
    let store_only = Cache::builder(RedisStore::connect(config).await.expect("connect")).build();
    let value = vec![7u32; 64];
    local.set("v", &value, Ttl::Long).await.expect("set");
    until_local_hit(&local, "v", &value).await;
    let time = |samples: &mut Vec<Duration>, started: Instant| samples.push(started.elapsed());
    let (mut from_local, mut from_store) = (Vec::new(), Vec::new());
    for _ in 0..500 {
        let started = Instant::now();
        local.get::<Vec<u32>>("v").await.expect("local hit");
        time(&mut from_local, started);
        let started = Instant::now();
        store_only.get::<Vec<u32>>("v").await.expect("store hit");
        time(&mut from_store, started);
    }
    let (l, s) = (
        percentile(&mut from_local, 0.5),
        percentile(&mut from_store, 0.5),
    );
    println!(
        "{deployment}: median hit: local tier {l:?}, store {s:?}, ratio {:.3}",
        l.as_secs_f64() / s.as_secs_f64()
    );
    assert!(local.stats().local_hits >= 500);
    local.reset_stats();
    assert_eq!(local.stats().local_hits, 0, "reset_stats zeroes local hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_safe_value_past_its_ttl_is_not_served_fresh_from_the_local_tier() {
    let server = RedisServer::start_private().expect("start redis-server");
    let b = instance(&server).await;
    let options = SetOptions::new(Duration::from_millis(300)).stale_for(Duration::from_secs(30));
    b.set("fs", &1u32, options).await.expect("set");
    until_local_hit(&b, "fs", &1u32).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.get::<u32>("fs").await.expect("get"),
        None,
        "stale, though still in both tiers"
    );
    let value = b
        .get_or_set("fs", Duration::from_secs(60), || async { 2u32 })
        .await
        .expect("recompute");
    assert_eq!(value, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refresh_from_a_local_copy_reaches_the_other_instances() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (a, b) = (instance(&server).await, instance(&server).await);
    // beta 1e9 on a 20 ms computation: every read decides to refresh (one in a million
    // would not, with a 30 s ttl)
    let options = SetOptions::new(Duration::from_secs(30))
        .early_refresh(true)
        .beta(1e9);
    let hard = Duration::from_secs(5);
    let first = a
        .get_or_refresh("hot", options.clone(), hard, || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            1u32
        })
        .await;
    assert_eq!(first.unwrap(), 1);
    until_local_hit(&b, "hot", &1u32).await;
    let local_before = a.stats().local_hits;
    let served = a
        .get_or_refresh("hot", options, hard, || async { 2u32 })
        .await;
    assert_eq!(served.unwrap(), 1, "the current value, at once");
    assert_eq!(
        a.stats().local_hits,
        local_before + 1,
        "read from a's local tier"
    );
    let took = until(Some(2), || async {
        b.get::<u32>("hot").await.expect("GET")
    })
    .await;
    assert_eq!(a.stats().early_refreshes, 1);
    println!("refreshed value seen by the other instance after {took:?}");
}

/// Reads `keys` with `get_multi` until every one of them is answered by the local tier.
async fn until_all_local(cache: &Cache, keys: &[&str], expected: &[Option<u32>]) {
    let started = Instant::now();
    loop {
        let before = cache.stats().local_hits;
        let values = cache.get_multi::<u32, _>(keys).await.expect("MGET");
        assert_eq!(values, expected);
        if cache.stats().local_hits - before == keys.len() as u64 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "get_multi never served every key locally"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_multi_goes_through_the_local_tier() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (a, b) = (instance(&server).await, instance(&server).await);
    a.set_multi(&[("m1", 1u32), ("m2", 2), ("m3", 3)], Ttl::Long)
        .await
        .expect("set_multi");
    until_all_local(&b, &["m1", "m2", "m3"], &[Some(1), Some(2), Some(3)]).await;

    // Kept keys cost nothing; the store is asked only for the others, in one MGET.
    let calls = |command| server.command_calls(command).expect("INFO commandstats");
    let (mgets, gets) = (calls("mget"), calls("get"));
    let before = b.stats().local_hits;
    let values = b
        .get_multi::<u32, _>(&["m1", "m4", "m2", "m3"])
        .await
        .expect("MGET");
    assert_eq!(values, [Some(1), None, Some(2), Some(3)]);
    assert_eq!(b.stats().local_hits - before, 3);
    assert_eq!(calls("mget") - mgets, 1, "one MGET");
    assert_eq!(calls("get"), gets, "no GET per key");

    // Another instance's write reaches the copies get_multi keeps.
    a.set("m2", &20u32, Ttl::Long).await.expect("set");
    let took = until(Some(20), || async {
        b.get_multi::<u32, _>(&["m1", "m2"]).await.expect("MGET")[1]
    })
    .await;
    println!("get_multi saw another instance's write after {took:?}");
    a.delete("m3").await.expect("delete");
    until(None, || async {
        b.get_multi::<u32, _>(&["m3"]).await.expect("MGET")[0]
    })
    .await;

    // A copy kept by get_multi never outlives the store's ttl (10 s locally, 300 ms in Redis).
    a.set("short", &5u32, Duration::from_millis(300))
        .await
        .expect("set");
    until_all_local(&b, &["short"], &[Some(5)]).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        b.get_multi::<u32, _>(&["short"]).await.expect("MGET"),
        [None],
        "the local copy outlived the store's ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_get_multi_goes_through_the_local_tier() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let a = instance_on(&seeds(&cluster, &[0, 1, 2])).await;
    let b = instance_on(&seeds(&cluster, &[1, 2, 0])).await;
    let keys: Vec<String> = (0..30).map(|i| format!("spread:{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let items: Vec<(&str, u32)> = keys.iter().zip(0..).map(|(&k, i)| (k, i)).collect();
    a.set_multi(&items, Ttl::Long).await.expect("set_multi");
    let expected: Vec<Option<u32>> = (0..30).map(Some).collect();
    until_all_local(&b, &keys, &expected).await;
    a.set("spread:7", &700u32, Ttl::Long).await.expect("set");
    until(Some(700), || async {
        b.get_multi::<u32, _>(&keys).await.expect("MGET")[7]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_get_or_set_reads_and_fills_the_local_tier() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (a, b) = (instance(&server).await, instance(&server).await);
    let key = |id: &u32| format!("batch:{id}");
    let load =
        |ids: Vec<u32>| async move { ids.into_iter().map(|id| (id, id * 10)).collect::<Vec<_>>() };
    let first = b
        .get_or_set_multi([1u32, 2, 3], key, Ttl::Long, load)
        .await
        .expect("batch");
    assert_eq!(first[&2], 20);
    // What the batch wrote is kept locally: the next batch is answered without Redis.
    let started = Instant::now();
    loop {
        let before = b.stats().local_hits;
        let again = b
            .get_or_set_multi([1u32, 2, 3], key, Ttl::Long, |_ids: Vec<u32>| async {
                Vec::<(u32, u32)>::new()
            })
            .await
            .expect("batch");
        assert_eq!(again, first, "no id reloaded");
        if b.stats().local_hits - before == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never served locally"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another instance's write reaches the batch's local copies.
    a.set("batch:2", &200u32, Ttl::Long).await.expect("set");
    until(Some(200), || async {
        b.get_or_set_multi([2u32], key, Ttl::Long, load)
            .await
            .expect("batch")
            .get(&2)
            .copied()
    })
    .await;
}
