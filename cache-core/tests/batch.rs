//! `get_or_set_multi`: one read, one loader call, one write, counted (not timed), against a
//! private `redis-server`, a private Redis Cluster and the in-process store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::encryption::EncryptionKeys;
use cache_core::{Cache, RedisStore, SetOptions, Ttl};
use cache_testing::{RedisServer, TestStore};

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

/// What a test loader returns.
type Load = std::pin::Pin<Box<dyn Future<Output = HashMap<u32, u64>> + Send>>;

/// A loader over an in-memory "database" (`id * 10` for ids below `known`) that records the
/// ids of each call.
#[derive(Clone, Default)]
struct Database {
    calls: Arc<Mutex<Vec<Vec<u32>>>>,
    delay: Duration,
    known: u32,
}

impl Database {
    fn new(known: u32, delay: Duration) -> Database {
        Database {
            known,
            delay,
            ..Database::default()
        }
    }

    fn loader(&self) -> impl Fn(Vec<u32>) -> Load + Send + Sync + use<> {
        let database = self.clone();
        move |ids| {
            let database = database.clone();
            Box::pin(async move {
                database.calls.lock().expect("calls").push(ids.clone());
                tokio::time::sleep(database.delay).await;
                ids.into_iter()
                    .filter(|id| *id < database.known)
                    .map(|id| (id, u64::from(id) * 10))
                    .collect()
            })
        }
    }

    fn calls(&self) -> Vec<Vec<u32>> {
        self.calls.lock().expect("calls").clone()
    }

    /// How many times each id was loaded.
    fn loads(&self) -> HashMap<u32, usize> {
        let mut loads = HashMap::new();
        for id in self.calls().into_iter().flatten() {
            *loads.entry(id).or_default() += 1;
        }
        loads
    }
}

fn key(id: &u32) -> String {
    format!("item:{id}")
}

macro_rules! batch_suite {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn cached_ids_are_not_loaded_and_loaded_ones_are_cached() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone()).build();
                let cached: Vec<(String, u64)> =
                    (0..100).step_by(10).map(|id| (key(&id), 7)).collect();
                cache
                    .set_multi(&cached, Ttl::Default)
                    .await
                    .expect("set_multi");
                let database = Database::new(90, Duration::ZERO);
                let found = cache
                    .get_or_set_multi(0..100, key, Ttl::Default, database.loader())
                    .await
                    .expect("batch");
                let mut asked = database.calls();
                assert_eq!(asked.len(), 1, "one loader call");
                asked[0].sort_unstable();
                let missing: Vec<u32> = (0..100).filter(|id| id % 10 != 0).collect();
                assert_eq!(asked[0], missing, "only the missing ids");
                assert_eq!(found.len(), 90 + 1, "the cached ids and the known ones");
                assert_eq!(found[&0], 7, "a cached value is not reloaded");
                assert_eq!(found[&5], 50);
                assert!(!found.contains_key(&95), "an id the loader left out");
                let stats = cache.stats();
                assert_eq!((stats.hits, stats.misses), (10, 90));
                assert_eq!(cache.get::<u64>("item:5").await.expect("get"), Some(50));
                assert_eq!(
                    cache.get::<u64>("item:95").await.expect("get"),
                    None,
                    "absent: not cached"
                );

                let again = cache
                    .get_or_set_multi(0..90, key, Ttl::Default, database.loader())
                    .await
                    .expect("batch");
                assert_eq!(
                    again,
                    found.into_iter().filter(|(id, _)| *id < 90).collect()
                );
                assert_eq!(
                    database.calls().len(),
                    1,
                    "everything cached: no loader call"
                );
                let none = cache
                    .get_or_set_multi(Vec::<u32>::new(), key, Ttl::Default, database.loader())
                    .await
                    .expect("empty batch");
                assert!(none.is_empty());
                assert_eq!(database.calls().len(), 1);
            }

            #[tokio::test]
            async fn duplicate_ids_are_asked_for_once_and_none_values_are_negative_cached() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone()).build();
                let calls = Arc::new(Mutex::new(Vec::new()));
                let load = |calls: Arc<Mutex<Vec<Vec<u32>>>>| {
                    move |ids: Vec<u32>| {
                        calls.lock().expect("calls").push(ids.clone());
                        async move {
                            ids.into_iter()
                                .map(|id| (id, (id % 2 == 0).then_some(format!("é-{id}-😀"))))
                                .collect::<Vec<_>>()
                        }
                    }
                };
                let found = cache
                    .get_or_set_multi([1, 2, 2, 3, 1], key, Ttl::Default, load(calls.clone()))
                    .await
                    .expect("batch");
                assert_eq!(calls.lock().expect("calls").len(), 1);
                assert_eq!(calls.lock().expect("calls")[0].len(), 3, "each id once");
                assert_eq!(found[&1], None);
                assert_eq!(found[&2].as_deref(), Some("é-2-😀"));
                let again = cache
                    .get_or_set_multi([1, 2, 3], key, Ttl::Default, load(calls.clone()))
                    .await
                    .expect("batch");
                assert_eq!(again, found);
                assert_eq!(
                    calls.lock().expect("calls").len(),
                    1,
                    "a cached None is a hit"
                );
            }

            #[tokio::test]
            async fn tags_encryption_and_the_prefix_apply_per_key() {
                let f = $fixture().await;
                let cache = Cache::builder_shared(f.store.clone())
                    .prefix("app:")
                    .encryption(EncryptionKeys::new([[9u8; 32]]))
                    .build();
                let database = Database::new(1000, Duration::ZERO);
                let tagged = SetOptions::new(Ttl::Default).tags(["items"]);
                let found = cache
                    .get_or_set_multi(0..50, key, tagged, database.loader())
                    .await
                    .expect("batch");
                assert_eq!(found.len(), 50);
                let plain = Cache::builder_shared(f.store.clone())
                    .prefix("plain:")
                    .build();
                plain
                    .set("item:7", &70u64, Ttl::Default)
                    .await
                    .expect("set");
                let sealed = f
                    .store
                    .get("app:item:7")
                    .await
                    .expect("GET")
                    .expect("stored");
                let open = f
                    .store
                    .get("plain:item:7")
                    .await
                    .expect("GET")
                    .expect("stored");
                assert!(
                    sealed.len() >= open.len() + 28,
                    "sealed: nonce and tag ({sealed:?})"
                );
                assert_eq!(cache.get::<u64>("item:7").await.expect("get"), Some(70));
                assert_eq!(cache.invalidate_tag("items").await.expect("tag"), 50);
                assert_eq!(cache.get::<u64>("item:7").await.expect("get"), None);
            }
        }
    };
}

batch_suite!(redis, redis_fixture);
batch_suite!(memory, memory_fixture);
batch_suite!(cluster, cluster_fixture);

#[tokio::test]
async fn a_thousand_ids_at_ninety_percent_hits_cost_one_mget_one_load_and_one_write() {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = Cache::builder(store.clone()).build();
    let cached: Vec<(String, u64)> = (0..1000)
        .filter(|id| id % 10 != 3)
        .map(|id| (key(&id), u64::from(id) * 10))
        .collect();
    cache
        .set_multi(&cached, Ttl::Default)
        .await
        .expect("set_multi");
    let count = |command| server.command_calls(command).expect("INFO commandstats");
    let (mgets, gets, sets) = (count("mget"), count("get"), count("set"));
    let database = Database::new(1000, Duration::ZERO);
    let found = cache
        .get_or_set_multi(0..1000, key, Ttl::Default, database.loader())
        .await
        .expect("batch");
    assert_eq!(found.len(), 1000);
    assert!(
        found
            .iter()
            .all(|(id, value)| *value == u64::from(*id) * 10)
    );
    assert_eq!(database.calls().len(), 1, "one loader call");
    assert_eq!(database.calls()[0].len(), 100, "with the 100 missing ids");
    assert_eq!(count("mget") - mgets, 1, "one MGET");
    assert_eq!(count("get") - gets, 0, "no GET per key");
    assert_eq!(
        count("set") - sets,
        100,
        "a SET per loaded value, pipelined"
    );
    println!("1,000 ids at 90% hits: 1 MGET, 1 loader call (100 ids), 100 SETs in one pipeline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_load_each_shared_id_once() {
    let server = RedisServer::start_private().expect("start redis-server");
    let cache = Cache::builder(
        RedisStore::connect(&server.config())
            .await
            .expect("connect"),
    )
    .build();
    let database = Database::new(1000, Duration::from_millis(200));
    let (a, b) = (cache.clone(), cache.clone());
    let (first, second) = (database.loader(), database.loader());
    let (left, right) = tokio::join!(
        tokio::spawn(async move { a.get_or_set_multi(0..600, key, Ttl::Default, first).await }),
        tokio::spawn(async move {
            b.get_or_set_multi(400..1000, key, Ttl::Default, second)
                .await
        }),
    );
    let (left, right) = (
        left.expect("task").expect("batch"),
        right.expect("task").expect("batch"),
    );
    assert_eq!((left.len(), right.len()), (600, 600));
    assert_eq!(left[&500], right[&500]);
    let loads = database.loads();
    assert_eq!(loads.len(), 1000, "every id loaded");
    assert!(
        loads.values().all(|&count| count == 1),
        "an id was loaded twice: {loads:?}"
    );
    assert!(cache.stats().stampede_joins >= 200, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_calls_and_batches_share_their_flights() {
    let server = RedisServer::start_private().expect("start redis-server");
    let cache = Cache::builder(
        RedisStore::connect(&server.config())
            .await
            .expect("connect"),
    )
    .build();

    // A batch waits for a key that a single-key call is computing.
    let single = cache.clone();
    let computing = tokio::spawn(async move {
        single
            .get_or_set("item:5", Ttl::Default, || async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                555u64
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let database = Database::new(1000, Duration::ZERO);
    let found = cache
        .get_or_set_multi(0..10, key, Ttl::Default, database.loader())
        .await
        .expect("batch");
    assert_eq!(found[&5], 555, "the single-key call's value");
    assert!(!database.loads().contains_key(&5), "not loaded twice");
    assert_eq!(computing.await.expect("task").expect("get_or_set"), 555);

    // A single-key call waits for a key that a batch is loading; an id the batch's loader
    // leaves out is computed by the single-key call itself.
    let database = Database::new(15, Duration::from_millis(300));
    let batch = cache.clone();
    let loader = database.loader();
    let loading = tokio::spawn(async move {
        batch
            .get_or_set_multi(10..20, key, Ttl::Default, loader)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let factory_calls = Arc::new(Mutex::new(0));
    let factory = |value: u64| {
        let calls = factory_calls.clone();
        move || async move {
            *calls.lock().expect("calls") += 1;
            value
        }
    };
    assert_eq!(
        cache
            .get_or_set("item:12", Ttl::Default, factory(1))
            .await
            .expect("follow"),
        120
    );
    assert_eq!(
        *factory_calls.lock().expect("calls"),
        0,
        "the batch's value, not the factory's"
    );
    assert_eq!(
        cache
            .get_or_set("item:17", Ttl::Default, factory(17))
            .await
            .expect("alone"),
        17
    );
    assert_eq!(
        *factory_calls.lock().expect("calls"),
        1,
        "absent from the batch: computed alone"
    );
    let loaded = loading.await.expect("task").expect("batch");
    assert_eq!(loaded.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_strands_no_waiting_caller() {
    let server = RedisServer::start_private().expect("start redis-server");
    let cache = Cache::builder(
        RedisStore::connect(&server.config())
            .await
            .expect("connect"),
    )
    .build();
    let batch = cache.clone();
    let hanging = tokio::spawn(async move {
        batch
            .get_or_set_multi(0..10, key, Ttl::Default, |_ids: Vec<u32>| async {
                std::future::pending::<Vec<(u32, u64)>>().await
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = cache.clone();
    let follower = tokio::spawn(async move {
        waiting
            .get_or_set("item:3", Ttl::Default, || async { 33u64 })
            .await
    });
    let other = cache.clone();
    let database = Database::new(1000, Duration::ZERO);
    let loader = database.loader();
    let batch_follower = tokio::spawn(async move {
        other
            .get_or_set_multi([3, 4, 50], key, Ttl::Default, loader)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    hanging.abort();
    let value = tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("the waiting caller was stranded")
        .expect("task")
        .expect("get_or_set");
    assert!(value == 33 || value == 30, "{value}");
    let found = tokio::time::timeout(Duration::from_secs(2), batch_follower)
        .await
        .expect("the waiting batch was stranded")
        .expect("task")
        .expect("batch");
    assert_eq!(found.len(), 3);
    // Each retries once the leader is gone: one leads and the other follows, or (if the
    // first finished before the second joined) both compute, as two single-key callers do.
    assert!(found[&3] == 33 || found[&3] == 30, "{found:?}");
}

#[tokio::test]
async fn store_errors_degrade_to_loads_unless_strict() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = server.config();
    let lenient = Cache::builder(RedisStore::connect(&config).await.expect("connect")).build();
    let strict = Cache::builder(RedisStore::connect(&config).await.expect("connect"))
        .strict(true)
        .build();
    server.stop().expect("stop the server");
    let database = Database::new(1000, Duration::ZERO);
    let found = lenient
        .get_or_set_multi(0..5, key, Ttl::Default, database.loader())
        .await
        .expect("degraded to the loader's values");
    assert_eq!(found.len(), 5);
    assert!(lenient.stats().errors > 0);
    let refused = strict
        .get_or_set_multi(0..5, key, Ttl::Default, database.loader())
        .await;
    assert!(
        refused.is_err(),
        "strict mode returns the store's error: {refused:?}"
    );
}

#[tokio::test]
async fn a_thousand_concurrent_loads_cost_one_mget_and_one_loader_call() {
    let server = RedisServer::start_private().expect("start redis-server");
    let cache = Cache::builder(
        RedisStore::connect(&server.config())
            .await
            .expect("connect"),
    )
    .build();
    let cached: Vec<(String, u64)> = (0..1000)
        .filter(|id| id % 10 != 3)
        .map(|id| (key(&id), u64::from(id) * 10))
        .collect();
    cache
        .set_multi(&cached, Ttl::Default)
        .await
        .expect("set_multi");
    let database = Database::new(1000, Duration::ZERO);
    let loader = cache.loader(key, Ttl::Default, database.loader());
    let mgets = server.command_calls("mget").expect("INFO");
    let sets = server.command_calls("set").expect("INFO");
    let values = futures_util::future::join_all((0..1000).map(|id| loader.load(id))).await;
    for (id, value) in (0u32..).zip(values) {
        assert_eq!(value.expect("load"), Some(u64::from(id) * 10));
    }
    assert_eq!(
        server.command_calls("mget").expect("INFO") - mgets,
        1,
        "one MGET"
    );
    assert_eq!(database.calls().len(), 1, "one loader call");
    assert_eq!(database.calls()[0].len(), 100, "with the 100 missing ids");
    assert_eq!(
        server.command_calls("set").expect("INFO") - sets,
        100,
        "a SET per loaded value"
    );
    assert_eq!(
        loader.load(1000).await.expect("load"),
        None,
        "an id without a value"
    );
    println!("1,000 concurrent load(id): 1 MGET, 1 loader call (100 ids)");
}

#[tokio::test]
async fn a_dropped_load_does_not_cancel_its_batch_and_failures_reach_every_load() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = server.config();
    let cache = Cache::builder(RedisStore::connect(&config).await.expect("connect")).build();
    let database = Database::new(1000, Duration::from_millis(50));
    let loader = cache.loader(key, Ttl::Default, database.loader());
    // Polled once (it joins the batch), then dropped.
    let _ = tokio::time::timeout(Duration::ZERO, loader.load(1)).await;
    assert_eq!(loader.load(2).await.expect("load"), Some(20));
    assert!(
        database.loads().get(&1) == Some(&1),
        "the dropped load's batch ran: {:?}",
        database.calls()
    );
    assert_eq!(cache.get::<u64>("item:1").await.expect("get"), Some(10));

    let panicking = cache.loader(key, Ttl::Default, |_ids: Vec<u32>| async {
        panic!("the database driver panicked");
        #[allow(unreachable_code)]
        Vec::<(u32, u64)>::new()
    });
    let failed = panicking.load(7).await;
    assert!(
        matches!(&failed, Err(cache_core::Error::ComputationFailed { key }) if key == "item:7"),
        "{failed:?}"
    );

    let strict = Cache::builder(RedisStore::connect(&config).await.expect("connect"))
        .strict(true)
        .build();
    let strict_loader = strict.loader(key, Ttl::Default, database.loader());
    server.stop().expect("stop the server");
    let (a, b) = tokio::join!(strict_loader.load(3), strict_loader.load(4));
    for failed in [a, b] {
        let Err(cache_core::Error::BatchFailed { source }) = &failed else {
            panic!("every load of the batch fails: {failed:?}");
        };
        assert!(
            source.is_transient() || matches!(**source, cache_core::Error::Redis { .. }),
            "{source}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_loader_caches_nothing_and_strands_no_waiting_caller() {
    let server = RedisServer::start_private().expect("start redis-server");
    let cache = Cache::builder(
        RedisStore::connect(&server.config())
            .await
            .expect("connect"),
    )
    .build();
    let batch = cache.clone();
    let failing = tokio::spawn(async move {
        batch
            .try_get_or_set_multi(0..3, key, Ttl::Default, |_ids: Vec<u32>| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err::<Vec<(u32, u64)>, _>("database down".to_owned())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = cache.clone();
    let follower = tokio::spawn(async move {
        waiting
            .get_or_set("item:1", Ttl::Default, || async { 11u64 })
            .await
    });
    assert_eq!(
        failing.await.expect("task"),
        Err("database down".to_owned())
    );
    assert_eq!(
        follower.await.expect("task").expect("get_or_set"),
        11,
        "the waiting caller computed on its own"
    );
    assert_eq!(
        cache.get::<u64>("item:0").await.expect("get"),
        None,
        "nothing cached"
    );
    let loaded = cache
        .try_get_or_set_multi(0..3, key, Ttl::Default, |ids: Vec<u32>| async move {
            Ok::<_, String>(
                ids.into_iter()
                    .map(|id| (id, u64::from(id)))
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .expect("loaded");
    assert_eq!(
        loaded[&1], 1,
        "a follower computing on its own does not write"
    );
    assert_eq!(loaded[&2], 2);
    assert_eq!(cache.get::<u64>("item:2").await.expect("get"), Some(2));
}
