//! Cache-aside without stale refills (`CacheBuilder::fence`): a get-or-set whose computation
//! read the database before an invalidation does not store its value after it. Against a
//! private `redis-server`, a private Redis Cluster and the in-process store.
//!
//! The interleaving tests count the stale values served after an invalidation has returned,
//! with plain writes (`fence(None)`: the count must be above 0, which shows that the test
//! sees the race) and with fenced writes (the count must be 0).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::encryption::EncryptionKeys;
use cache_core::store::is_marker;
use cache_core::{Cache, KeyTtl, MemoryStore, SetOptions, Store, Ttl};
use cache_testing::TestStore;
use futures_util::future::join;
use tokio::sync::oneshot;

async fn redis_fixture() -> TestStore {
    TestStore::redis()
        .await
        .expect("a store on a private redis-server")
}

async fn cluster_fixture() -> TestStore {
    TestStore::cluster()
        .await
        .expect("a store on a Redis Cluster")
}

async fn memory_fixture() -> TestStore {
    TestStore::memory()
}

/// The database: one version number per key.
#[derive(Default)]
struct Database {
    versions: std::sync::Mutex<HashMap<String, u64>>,
}

impl Database {
    fn read(&self, key: &str) -> u64 {
        self.versions
            .lock()
            .expect("database lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn update(&self, key: &str) -> u64 {
        let mut versions = self.versions.lock().expect("database lock");
        let version = versions.entry(key.to_owned()).or_default();
        *version += 1;
        *version
    }
}

/// `iterations` forced interleavings, each on a key of its own: a get-or-set on `reader` reads
/// the database, then a writer updates it and invalidates the key through `writer` (another
/// instance on the same store), then the get-or-set returns. Counts the reads after the
/// invalidation returned (one on each instance) that served an older version.
async fn forced(reader: &Cache, writer: &Cache, run: &str, iterations: u32) -> u32 {
    let database = Database::default();
    let mut stale = 0;
    for i in 0..iterations {
        let key = format!("forced:{run}:{i}:ünï");
        let (read, has_read) = oneshot::channel();
        let (invalidated, was_invalidated) = oneshot::channel::<()>();
        let reading = reader.get_or_set(&key, Ttl::Long, || async {
            let version = database.read(&key);
            read.send(()).expect("the writer waits");
            was_invalidated.await.expect("the writer invalidates");
            version
        });
        let writing = async {
            has_read.await.expect("a miss computes");
            database.update(&key);
            writer.delete(&key).await.expect("delete");
            invalidated.send(()).expect("the miss waits");
        };
        let (computed, ()) = join(reading, writing).await;
        computed.expect("get_or_set");
        let current = database.read(&key);
        for cache in [reader, writer] {
            if cache
                .get::<u64>(&key)
                .await
                .expect("get")
                .is_some_and(|served| served < current)
            {
                stale += 1;
            }
        }
    }
    stale
}

/// Free-running readers and writers on 8 keys for `duration`: 4 readers call get-or-set
/// (their computation yields once after reading the database), 2 writers update the
/// database and invalidate. A read that began after an invalidation of version `v` returned
/// and served a version below `v` is stale. Returns (stale reads, reads).
async fn free_running(reader: &Cache, writer: &Cache, duration: Duration) -> (u64, u64) {
    let database = Arc::new(Database::default());
    // The highest version of each key whose invalidation has returned.
    let settled: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let (stale, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + duration;
    let mut tasks = Vec::new();
    for task in 0..6u64 {
        let (reader, writer) = (reader.clone(), writer.clone());
        let (database, settled) = (Arc::clone(&database), Arc::clone(&settled));
        let (stale, reads) = (Arc::clone(&stale), Arc::clone(&reads));
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while Instant::now() < until {
                i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let key = format!("free:{}", (i >> 33) % 8);
                if task < 2 {
                    let version = database.update(&key);
                    writer.delete(&key).await.expect("delete");
                    {
                        let mut settled = settled.lock().expect("settled lock");
                        let entry = settled.entry(key).or_default();
                        *entry = (*entry).max(version);
                    }
                    // (the in-process store never waits: let the readers run)
                    tokio::task::yield_now().await;
                    continue;
                }
                let floor = settled
                    .lock()
                    .expect("settled lock")
                    .get(&key)
                    .copied()
                    .unwrap_or(0);
                let served = reader
                    .get_or_set(&key, Ttl::Long, || async {
                        let version = database.read(&key);
                        tokio::task::yield_now().await;
                        version
                    })
                    .await
                    .expect("get_or_set");
                reads.fetch_add(1, Ordering::Relaxed);
                if served < floor {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    (stale.load(Ordering::Relaxed), reads.load(Ordering::Relaxed))
}

fn caches(store: &Arc<dyn Store>, fence: Option<Duration>) -> (Cache, Cache) {
    let build = || {
        Cache::builder_shared(Arc::clone(store))
            .fence(fence)
            .build()
    };
    (build(), build())
}

macro_rules! fence_suite {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_miss_that_read_before_an_invalidation_is_not_stored_after_it() {
                let f = $fixture().await;
                let (reader, writer) = caches(&f.store, None);
                let unfenced = forced(&reader, &writer, "plain", 200).await;
                assert!(
                    unfenced > 0,
                    "with plain writes the test must see the race"
                );

                let (reader, writer) = caches(&f.store, Some(Duration::from_secs(60)));
                let fenced = forced(&reader, &writer, "fenced", 2_000).await;
                assert_eq!(fenced, 0, "stale reads after an invalidation returned");
                assert_eq!(reader.stats().fenced_writes, 2_000);
                println!("forced interleavings: plain writes {unfenced}/400 stale reads, fenced 0/4000");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn free_running_readers_and_writers_serve_nothing_stale_once_fenced() {
                let f = $fixture().await;
                let (reader, writer) = caches(&f.store, Some(Duration::from_secs(60)));
                let (stale, reads) = free_running(&reader, &writer, Duration::from_secs(2)).await;
                assert!(reads > 100, "{reads} reads");
                assert_eq!(stale, 0, "stale reads of {reads}");
                let (reader, writer) = caches(&f.store, None);
                let (unfenced, unfenced_reads) =
                    free_running(&reader, &writer, Duration::from_secs(2)).await;
                println!(
                    "free running: fenced 0/{reads} stale reads, plain writes {unfenced}/{unfenced_reads}"
                );
            }

            #[tokio::test]
            async fn an_invalidated_key_reads_as_absent_and_the_next_miss_fills_it() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(Arc::clone(&f.store)).build();
                cache.set("user:7", &1u32, Ttl::Long).await.unwrap();
                assert!(cache.delete("user:7").await.unwrap());
                assert!(!cache.delete("user:7").await.unwrap(), "a marker is no value");
                let left = f.store.get("user:7").await.unwrap();
                assert!(left.as_deref().is_some_and(is_marker), "{left:?}");
                assert_eq!(cache.get::<u32>("user:7").await.unwrap(), None);
                assert!(!cache.exists("user:7").await.unwrap());
                assert_eq!(cache.ttl("user:7").await.unwrap(), KeyTtl::Missing);
                assert!(!cache.expire("user:7", Ttl::Long).await.unwrap());
                assert_eq!(cache.get_multi::<u32, _>(&["user:7"]).await.unwrap(), vec![None]);
                assert_eq!(cache.stats().decode_failures, 0, "a marker is not corrupt data");
                // a miss over the marker replaces it
                let filled = cache.get_or_set("user:7", Ttl::Long, || async { 2u32 });
                assert_eq!(filled.await.unwrap(), 2);
                assert_eq!(cache.get::<u32>("user:7").await.unwrap(), Some(2));
                assert!(cache.exists("user:7").await.unwrap());
                assert_eq!(cache.stats().fenced_writes, 0);
            }

            #[tokio::test]
            async fn a_pattern_invalidation_fences_what_it_finds_and_counts_values_only() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(Arc::clone(&f.store)).build();
                for id in 0..5u32 {
                    cache.set(&format!("pupil:{id}:ünï"), &id, Ttl::Long).await.unwrap();
                }
                assert!(cache.delete("pupil:0:ünï").await.unwrap());
                assert_eq!(cache.invalidate_pattern("pupil:*").await.unwrap(), 4, "markers are no values");
                for id in 0..5u32 {
                    let key = format!("pupil:{id}:ünï");
                    let left = f.store.get(&key).await.unwrap();
                    assert!(left.as_deref().is_some_and(is_marker), "{key}: {left:?}");
                }
                assert_eq!(cache.invalidate_pattern("pupil:*").await.unwrap(), 0);
                // a miss that read before the sweep does not store after it
                let computed = cache.get_or_set("pupil:1:ünï", Ttl::Long, || async {
                    cache.invalidate_pattern("pupil:*").await.unwrap();
                    7u32
                });
                assert_eq!(computed.await.unwrap(), 7);
                assert_eq!(cache.get::<u32>("pupil:1:ünï").await.unwrap(), None);
            }

            #[tokio::test]
            async fn an_encrypted_cache_reads_a_marker_as_absent_across_a_key_rotation() {
                let f = $fixture().await;
                let (old, new) = ([1u8; 32], [2u8; 32]);
                let before = Cache::builder_shared(Arc::clone(&f.store))
                    .encryption(EncryptionKeys::new([old]))
                    .build();
                let after = Cache::builder_shared(Arc::clone(&f.store))
                    .encryption(EncryptionKeys::new([new, old]))
                    .build();
                before.set("sealed:ünï", &1u32, Ttl::Long).await.unwrap();
                assert!(after.delete("sealed:ünï").await.unwrap(), "a sealed value is a value");
                for cache in [&before, &after] {
                    assert_eq!(cache.get::<u32>("sealed:ünï").await.unwrap(), None);
                    assert!(!cache.exists("sealed:ünï").await.unwrap());
                    assert_eq!(cache.stats().decode_failures, 0, "a marker is not a failed seal");
                }
                // a miss that read before another invalidation does not store after it
                let computed = before.get_or_set("sealed:ünï", Ttl::Long, || async {
                    after.delete("sealed:ünï").await.unwrap();
                    2u32
                });
                assert_eq!(computed.await.unwrap(), 2);
                assert_eq!(after.get::<u32>("sealed:ünï").await.unwrap(), None);
                let filled = after.get_or_set("sealed:ünï", Ttl::Long, || async { 3u32 });
                assert_eq!(filled.await.unwrap(), 3);
                assert_eq!(after.get::<u32>("sealed:ünï").await.unwrap(), Some(3));
            }

            #[tokio::test]
            async fn collections_replace_a_marker_and_read_it_as_empty() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(Arc::clone(&f.store)).build();
                for key in ["list", "set", "hash"] {
                    cache.delete(key).await.unwrap();
                }
                assert!(cache.lrange::<u8>("list", 0, -1).await.unwrap().is_empty());
                assert!(cache.smembers::<u8>("set").await.unwrap().is_empty());
                assert_eq!(cache.hget::<u8>("hash", "f").await.unwrap(), None);
                assert!(cache.hgetall::<u8>("hash").await.unwrap().is_empty());
                assert!(!cache.hdel("hash", "f").await.unwrap());
                assert_eq!(cache.srem("set", &[1u8]).await.unwrap(), 0);
                assert_eq!(cache.rpush("list", &[1u8, 2], Ttl::Long).await.unwrap(), 2);
                assert_eq!(cache.lpush("list", &[0u8], Ttl::Long).await.unwrap(), 3);
                assert_eq!(cache.sadd("set", &[5u8], Ttl::Long).await.unwrap(), 1);
                assert!(cache.hset("hash", "f", &9u8, Ttl::Long).await.unwrap());
                assert_eq!(cache.lrange::<u8>("list", 0, -1).await.unwrap(), vec![0, 1, 2]);
                assert_eq!(cache.smembers::<u8>("set").await.unwrap(), vec![5]);
                assert_eq!(cache.hget::<u8>("hash", "f").await.unwrap(), Some(9));
                // a collection is removed, not fenced
                assert!(cache.delete("list").await.unwrap());
                assert!(!f.store.exists("list").await.unwrap());
                assert_eq!(cache.stats().errors, 0);
            }

            #[tokio::test]
            async fn a_marker_lasts_the_window_and_a_slow_miss_does_not_write() {
                let f = $fixture().await;
                let window = Duration::from_millis(400);
                let cache = Cache::builder_shared(Arc::clone(&f.store))
                    .fence(Some(window))
                    .build();
                cache.delete("short").await.unwrap();
                assert!(f.store.exists("short").await.unwrap());
                tokio::time::sleep(window + Duration::from_millis(200)).await;
                assert!(!f.store.exists("short").await.unwrap(), "the marker expired");

                // A miss over nothing that computes for longer than half the window cannot
                // tell whether a marker came and went: it returns its value, unstored.
                let slow = cache.get_or_set("slow", Ttl::Long, || async {
                    tokio::time::sleep(window / 2 + Duration::from_millis(50)).await;
                    1u8
                });
                assert_eq!(slow.await.unwrap(), 1);
                assert_eq!(f.store.get("slow").await.unwrap(), None);
                assert_eq!(cache.stats().fenced_writes, 1);
                let quick = cache.get_or_set("quick", Ttl::Long, || async { 2u8 });
                assert_eq!(quick.await.unwrap(), 2);
                assert_eq!(cache.get::<u8>("quick").await.unwrap(), Some(2));
            }

            #[tokio::test]
            async fn a_batch_stores_every_value_but_the_invalidated_ones() {
                let f = $fixture().await;
                let (reader, writer) = caches(&f.store, Some(Duration::from_secs(60)));
                let ids: Vec<u32> = (0..20).collect();
                reader.set("item:3", &0u32, Ttl::Long).await.unwrap();
                reader.delete("item:3").await.unwrap();
                let loaded = reader
                    .get_or_set_multi(ids.clone(), |id| format!("item:{id}"), Ttl::Long, |missing| {
                        let writer = writer.clone();
                        async move {
                            // while the loader reads, two of the keys are invalidated
                            writer.delete_multi(&["item:3", "item:4"]).await.unwrap();
                            missing.into_iter().map(|id| (id, id * 10)).collect::<Vec<_>>()
                        }
                    })
                    .await
                    .unwrap();
                assert_eq!(loaded.len(), 20, "every caller gets its value");
                let stored = reader
                    .get_multi::<u32, _>(&ids.iter().map(|id| format!("item:{id}")).collect::<Vec<_>>())
                    .await
                    .unwrap();
                for (id, stored) in ids.iter().zip(stored) {
                    match id {
                        3 | 4 => assert_eq!(stored, None, "item:{id} was invalidated"),
                        _ => assert_eq!(stored, Some(id * 10), "item:{id}"),
                    }
                }
                assert_eq!(reader.stats().fenced_writes, 2);
            }

            #[tokio::test]
            async fn a_tag_invalidation_fences_the_keys_it_takes() {
                let f = $fixture().await;
                let (reader, writer) = caches(&f.store, Some(Duration::from_secs(60)));
                let tagged = SetOptions::new(Ttl::Long).tags(["class:7"]);
                reader.set("roster:7", &1u32, tagged.clone()).await.unwrap();
                assert_eq!(writer.invalidate_tag("class:7").await.unwrap(), 1);
                // a miss over that marker, overtaken by a write and another tag invalidation
                let computed = reader.get_or_set("roster:7", tagged.clone(), || async {
                    writer.set("roster:7", &3u32, tagged.clone()).await.unwrap();
                    writer.invalidate_tag("class:7").await.unwrap();
                    2u32
                });
                assert_eq!(computed.await.unwrap(), 2);
                assert_eq!(reader.get::<u32>("roster:7").await.unwrap(), None);
                assert_eq!(reader.stats().fenced_writes, 1);
            }
        }
    };
}

fence_suite!(memory, memory_fixture);
fence_suite!(redis, redis_fixture);
fence_suite!(cluster, cluster_fixture);

/// With the plain-JSON codec, whose keys other languages read, invalidations remove keys
/// unless the fence is asked for.
#[tokio::test]
async fn the_json_codec_removes_keys_unless_asked_to_fence() {
    let store = Arc::new(MemoryStore::new());
    let json = Cache::builder(MemoryStore::clone(&store))
        .codec(cache_core::Json)
        .build();
    json.set("j", &1u8, Ttl::Long).await.unwrap();
    json.delete("j").await.unwrap();
    assert_eq!(store.get("j").await.unwrap(), None);
    let fenced = Cache::builder(MemoryStore::clone(&store))
        .codec(cache_core::Json)
        .fence(Some(Duration::from_secs(1)))
        .build();
    fenced.delete("j").await.unwrap();
    assert!(
        store
            .get("j")
            .await
            .unwrap()
            .as_deref()
            .is_some_and(is_marker)
    );
}
