//! Bad input, on Redis, on a Redis Cluster and in process: each gets a clear error or a
//! documented safe behaviour, and nothing is lost or widened.

use cache_testing::{ClusterLease, RedisCluster, RedisServer};
use cachemere::{Cache, Error, Json, MemoryStore, RedisStore, Ttl, cache_result};

async fn caches() -> (Vec<(&'static str, Cache)>, (RedisServer, ClusterLease)) {
    let server = RedisServer::start_private().expect("start redis-server");
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let mut caches = vec![];
    for (backend, config) in [("redis", server.config()), ("cluster", cluster.config())] {
        let store = RedisStore::connect(&config).await.expect("connect");
        caches.push((
            backend,
            Cache::builder(store).max_value_bytes(8 << 20).build(),
        ));
    }
    let memory = Cache::builder(MemoryStore::new())
        .max_value_bytes(8 << 20)
        .build();
    caches.push(("memory", memory));
    (caches, (server, cluster))
}

/// Bytes lz4 cannot shrink, so that the size limit applies to about `n` bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn awkward_keys_round_trip_and_patterns_never_widen() {
    let (caches, _server) = caches().await;
    let long = "k".repeat(10 * 1024);
    let keys = [
        "user:*:[a-z]?",
        "with space",
        "new\nline",
        "ключ:ü:🦀",
        long.as_str(),
        "",
        "{user:1}:profile",
        "half{open",
        "empty{}tag",
    ];
    for (backend, cache) in &caches {
        for key in keys {
            cache.set(key, &key.len(), Ttl::Short).await.expect("set");
            assert_eq!(
                cache.get::<usize>(key).await.expect("get"),
                Some(key.len()),
                "{backend} {key:.20}"
            );
        }
        cache.set("user:1:a", &1u8, Ttl::Short).await.expect("set");
        let escaped = cachemere::key::escape_glob("user:*:[a-z]?");
        assert_eq!(
            cache.invalidate_pattern(&escaped).await.expect("pattern"),
            1,
            "{backend}"
        );
        assert!(
            cache.exists("user:1:a").await.expect("exists"),
            "{backend}: the pattern did not widen"
        );
        for key in keys.iter().skip(1) {
            assert!(
                cache.delete(key).await.expect("delete"),
                "{backend} {key:.20}"
            );
        }
    }
}

#[tokio::test]
async fn oversized_values_are_refused_and_nothing_is_written() {
    let (caches, _server) = caches().await;
    let huge = noise(50 << 20);
    for (backend, cache) in &caches {
        let err = cache
            .set("huge", &huge, Ttl::Short)
            .await
            .expect_err("over the maximum");
        assert!(
            matches!(&err, Error::ValueTooLarge { key, .. } if key == "huge"),
            "{backend}: {err}"
        );
        assert!(err.to_string().contains("huge"), "{err}");
        assert!(
            !cache.exists("huge").await.expect("exists"),
            "{backend}: nothing written"
        );
    }
}

#[tokio::test]
async fn empty_corrupt_and_foreign_values_are_misses_and_removed() {
    let (caches, _server) = caches().await;
    for (backend, cache) in &caches {
        let store = cache.store();
        store
            .set("empty", b"", std::time::Duration::from_secs(60))
            .await
            .expect("raw set");
        store
            .set(
                "corrupt",
                b"\xCA\x01\x01\x00\xFF\xFF\xFF",
                std::time::Duration::from_secs(60),
            )
            .await
            .expect("raw set");
        store
            .set(
                "future",
                b"\xCA\x09\x01\x00",
                std::time::Duration::from_secs(60),
            )
            .await
            .expect("raw set");
        // a string whose length prefix claims 2^62 bytes: bincode would allocate that much
        // before reading, and the failed allocation aborted the process
        let mut claim = b"\xCA\x01\x01\x00\xFD".to_vec();
        claim.extend_from_slice(&(1u64 << 62).to_le_bytes());
        store
            .set("exabytes", &claim, std::time::Duration::from_secs(60))
            .await
            .expect("raw set");
        for key in ["empty", "corrupt", "future", "exabytes"] {
            assert_eq!(
                cache
                    .get::<String>(key)
                    .await
                    .expect("a miss, not an error"),
                None,
                "{backend} {key}"
            );
            assert!(
                !store.exists(key).await.expect("exists"),
                "{backend}: {key} removed"
            );
        }
        assert_eq!(cache.stats().decode_failures, 4, "{backend}");

        let json = Cache::builder_shared(store.clone()).codec(Json).build();
        cache
            .set("bincode-written", &vec![1u32, 2, 3], Ttl::Short)
            .await
            .expect("set");
        assert_eq!(
            json.get::<Vec<u32>>("bincode-written").await.expect("miss"),
            None,
            "{backend}: another codec is a miss"
        );
        json.set("json-written", &vec![1u32, 2, 3], Ttl::Short)
            .await
            .expect("set");
        assert_eq!(
            cache.get::<Vec<u32>>("json-written").await.expect("get"),
            Some(vec![1, 2, 3]),
            "{backend}: plain JSON is readable by any cache"
        );
    }
}

#[cache_result("bad-input:{name}", cache = cache)]
async fn sized(cache: &Cache, name: &str, bytes: usize) -> Vec<u8> {
    let _ = name;
    noise(bytes)
}

#[tokio::test]
async fn a_cached_function_returns_values_it_cannot_cache() {
    let (caches, _server) = caches().await;
    for (backend, cache) in &caches {
        assert_eq!(
            sized(cache, "big", 9 << 20).await.len(),
            9 << 20,
            "{backend}"
        );
        assert!(
            !cache.exists("bad-input:big").await.expect("exists"),
            "{backend}"
        );
        assert!(
            cache.stats().errors >= 1,
            "{backend}: the refused write is counted"
        );
        assert!(
            sized(cache, "", 0).await.is_empty(),
            "{backend}: empty name, empty value"
        );
        assert!(sized(cache, "", 0).await.is_empty());
        assert_eq!(
            cache.stats().hits,
            1,
            "{backend}: the empty value was cached"
        );
    }
}
