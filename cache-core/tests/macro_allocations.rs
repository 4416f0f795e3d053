//! A `#[cache_result]` hit on the in-process store allocates no more than a hand-written
//! `Cache::get` of the same value: it formats the key, but copies the decoded value the store
//! keeps where `get` copies the bytes and decodes them; and a hit on a Redis Cluster no more
//! than a `GET` through redis-rs's cluster client. Counted with a per-thread counting
//! allocator, not timed.

use cache_core::{Cache, MemoryStore, cache_result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    scores: Vec<u32>,
}

#[cache_result("user:profile:{user_id}", crate = "cache_core", cache = cache)]
async fn profile(cache: &Cache, user_id: u64) -> Profile {
    Profile {
        id: user_id,
        name: format!("user {user_id}"),
        scores: vec![85, 92, 78],
    }
}

/// Allocations made while polling `future` to completion. The future is pinned on the heap
/// before counting: `Runtime::block_on` boxes futures over a size threshold (2 KiB in debug
/// builds), which would count as the code's allocation.
fn allocations(runtime: &tokio::runtime::Runtime, future: impl std::future::Future) -> u64 {
    let mut future = Box::pin(future);
    allocation_counter::measure(|| {
        runtime.block_on(future.as_mut());
    })
    .count_total
}

#[test]
fn a_macro_hit_allocates_no_more_than_a_hand_written_get() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cache = Cache::builder(MemoryStore::new()).build();
    let expected = runtime.block_on(profile(&cache, 42));
    // the first hit decodes and keeps the value
    runtime.block_on(profile(&cache, 42));
    let key = String::from("user:profile:42");

    for _ in 0..3 {
        let by_hand = allocations(&runtime, async {
            let hit: Option<Profile> = cache.get(&key).await.expect("memory store");
            assert_eq!(hit.as_ref(), Some(&expected));
        });
        let by_macro = allocations(&runtime, async {
            assert_eq!(profile(&cache, 42).await, expected);
        });
        assert!(by_hand > 0, "the counting allocator is active");
        println!("allocations per hit: by hand {by_hand}, macro {by_macro}");
        // the macro: the key and the two heap fields of the copy, nothing else
        assert_eq!(by_macro, 3, "by hand {by_hand}");
        assert!(by_macro < by_hand, "macro {by_macro} vs by hand {by_hand}");
    }
    assert_eq!(cache.stats().misses, 1);
}

/// A cache hit on a Redis Cluster against the same `GET` through redis-rs's cluster client
/// by hand: the cache's store sends it through the same client and adds no allocation of
/// its own per request (18 each; a redirect-retry wrapper boxed each command once more, 19,
/// until the store's queries called it directly).
#[test]
fn a_cluster_hit_allocates_what_a_hand_written_cluster_get_does() {
    use redis::AsyncCommands;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = cache_testing::RedisCluster::start().expect("start a redis cluster");
    let (cache, mut by_hand_client) = runtime.block_on(async {
        let store = cache_core::RedisStore::connect(&cluster.config())
            .await
            .expect("connect");
        let client = redis::cluster::ClusterClient::new(
            cluster
                .ports()
                .iter()
                .map(|port| format!("redis://127.0.0.1:{port}"))
                .collect::<Vec<_>>(),
        )
        .expect("client");
        let connection = client.get_async_connection().await.expect("connect");
        (Cache::builder(store).build(), connection)
    });
    runtime.block_on(async {
        cache
            .set("alloc:k", &7u64, std::time::Duration::from_secs(60))
            .await
            .expect("set");
        // warm both paths
        let _: Option<u64> = cache.get("alloc:k").await.expect("get");
        let _: Option<Vec<u8>> = by_hand_client.get("alloc:k").await.expect("get");
    });
    let mut counts = Vec::new();
    for _ in 0..5 {
        let by_hand = allocations(&runtime, async {
            let bytes: Option<Vec<u8>> = by_hand_client.get("alloc:k").await.expect("get");
            assert!(bytes.is_some());
        });
        let by_cache = allocations(&runtime, async {
            let hit: Option<u64> = cache.get("alloc:k").await.expect("get");
            assert_eq!(hit, Some(7));
        });
        counts.push((by_hand, by_cache));
    }
    println!("allocations per cluster hit (by hand, cache): {counts:?}");
    let (by_hand, by_cache) = counts.iter().copied().min().expect("runs");
    assert!(
        by_cache <= by_hand,
        "a cache hit allocates {by_cache}, a hand-written GET {by_hand}: {counts:?}"
    );
}
