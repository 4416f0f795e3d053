//! What only a Redis Cluster can show: multi-key work split by node (counted on the nodes),
//! pattern and tag invalidation over every primary, and a killed node.

use cache_core::error::one_line;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cache_core::{Cache, RedisStore, SetOptions, Store, Ttl};
use cache_testing::RedisCluster;

const MINUTE: Duration = Duration::from_secs(60);

/// A connection to each node, for reading its statistics.
struct Probe(Vec<redis::aio::MultiplexedConnection>);

impl Probe {
    async fn new(ports: &[u16]) -> Probe {
        let mut connections = Vec::new();
        for port in ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect to a node");
            connections.push(connection);
        }
        Probe(connections)
    }

    /// `field` of `INFO <section>` (up to a comma) on every node.
    async fn field(&mut self, section: &str, field: &str) -> Vec<u64> {
        let mut values = Vec::new();
        for connection in &mut self.0 {
            let info: String = redis::cmd("INFO")
                .arg(section)
                .query_async(connection)
                .await
                .expect("INFO");
            let value = info
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{field}:")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|value| value.strip_prefix("calls=").unwrap_or(value).parse().ok());
            values.push(value.unwrap_or(0));
        }
        values
    }

    /// Calls of `command` on every node (`INFO commandstats`).
    async fn calls(&mut self, command: &str) -> Vec<u64> {
        self.field("commandstats", &format!("cmdstat_{command}"))
            .await
    }

    /// Socket reads each node served while `work` ran: the requests that reached it, whatever
    /// their number of commands (the probe's own second `INFO` is one of them).
    async fn reads_during<F: Future<Output = ()>>(&mut self, work: F) -> Vec<u64> {
        let before = self.field("stats", "total_reads_processed").await;
        work.await;
        let after = self.field("stats", "total_reads_processed").await;
        after.iter().zip(before).map(|(a, b)| a - b - 1).collect()
    }
}

async fn connected(cluster: &RedisCluster) -> (RedisStore, Cache) {
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    while store.last_health().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cache = Cache::builder(store.clone()).build();
    (store, cache)
}

#[tokio::test]
async fn multi_key_operations_cost_one_request_per_primary() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let ports = cluster.ports();
    let (_store, cache) = connected(&cluster).await;
    let mut probe = Probe::new(&ports).await;
    let keys: Vec<String> = (0..300).map(|i| format!("item:{i}")).collect();
    let mut on_node = vec![0; ports.len()];
    let mut slots_on_node: Vec<HashSet<u16>> = vec![HashSet::new(); ports.len()];
    for key in &keys {
        let node = cluster.node_of(key);
        on_node[node] += 1;
        slots_on_node[node].insert(cache_core::key::hash_slot(key));
    }
    assert!(
        on_node.iter().all(|&n| n > 50),
        "keys on every node: {on_node:?}"
    );
    let items: Vec<(&str, u32)> = keys
        .iter()
        .zip(0u32..)
        .map(|(k, i)| (k.as_str(), i))
        .collect();

    let reads = probe
        .reads_during(async {
            cache.set_multi(&items, Ttl::Long).await.expect("set_multi");
        })
        .await;
    assert_eq!(reads, vec![1; ports.len()], "set_multi: requests per node");

    let mut found = Vec::new();
    let reads = probe
        .reads_during(async {
            found = cache.get_multi::<u32, _>(&keys).await.expect("get_multi");
        })
        .await;
    assert_eq!(reads, vec![1; ports.len()], "get_multi: requests per node");
    let expected: Vec<Option<u32>> = (0..300).map(Some).collect();
    assert_eq!(found, expected, "values in the keys' order");
    let slots: Vec<u64> = slots_on_node.iter().map(|s| s.len() as u64).collect();
    assert_eq!(probe.calls("mget").await, slots, "one MGET per slot");
    assert_eq!(probe.calls("get").await, vec![0; ports.len()]);

    // The store's first invalidation loads the fence script on every primary (one request
    // each); from then on a delete_multi is two pipelines per primary, sent at once: the
    // fence scripts (one per slot) and the UNLINK of the keys' tag records (which live in
    // other slots). A node may read them in one go.
    cache.delete("warm-up").await.expect("delete");
    let mut removed = 0;
    let reads = probe
        .reads_during(async {
            removed = cache.delete_multi(&keys).await.expect("delete_multi");
        })
        .await;
    assert!(
        reads.iter().all(|&reads| (1..=2).contains(&reads)),
        "delete_multi: requests per node {reads:?}"
    );
    assert_eq!(removed, 300);
}

/// `get_or_set_multi` of 300 ids at a 90% hit rate: one request per primary for the read
/// (an `MGET` per slot, pipelined), one loader call, one per primary for the write.
#[tokio::test]
async fn a_batch_costs_one_request_per_primary_to_read_and_one_to_write() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let ports = cluster.ports();
    let (_store, cache) = connected(&cluster).await;
    let mut probe = Probe::new(&ports).await;
    let key = |id: &u32| format!("batch:{id}");
    let hits: Vec<(String, u32)> = (0..300)
        .filter(|id| id % 10 != 0)
        .map(|id| (key(&id), id))
        .collect();
    cache.set_multi(&hits, Ttl::Long).await.expect("set_multi");
    let misses: Vec<String> = (0..300)
        .filter(|id| id % 10 == 0)
        .map(|id| key(&id))
        .collect();
    let mut missing_on = vec![0u64; ports.len()];
    for missed in &misses {
        missing_on[cluster.node_of(missed)] += 1;
    }
    assert!(missing_on.iter().all(|&n| n > 0), "misses on every node");

    let (gets, sets) = (probe.calls("get").await, probe.calls("set").await);
    let mut calls = Vec::new();
    let mut loaded = std::collections::HashMap::new();
    let reads = probe
        .reads_during(async {
            loaded = cache
                .get_or_set_multi(0..300u32, key, Ttl::Long, |ids: Vec<u32>| {
                    calls.push(ids.len());
                    async move { ids.into_iter().map(|id| (id, id)).collect::<Vec<_>>() }
                })
                .await
                .expect("get_or_set_multi");
        })
        .await;
    assert_eq!(loaded.len(), 300);
    assert_eq!(calls, vec![30], "one loader call with the missing ids");
    assert_eq!(
        reads,
        vec![2; ports.len()],
        "requests per node: the read, then the write"
    );
    let since = |after: Vec<u64>, before: &[u64]| -> Vec<u64> {
        after.iter().zip(before).map(|(a, b)| a - b).collect()
    };
    assert_eq!(since(probe.calls("get").await, &gets), vec![0; ports.len()]);
    assert_eq!(
        since(probe.calls("set").await, &sets),
        missing_on,
        "one SET NX per missing key"
    );
}

#[tokio::test]
async fn pattern_and_tag_invalidation_reach_every_primary() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let (_store, cache) = connected(&cluster).await;
    let tagged = SetOptions::new(Ttl::Long).tags(["class:7"]);
    let mut nodes = HashSet::new();
    for user in 0..60 {
        let profile = format!("user:{user}:profile");
        nodes.insert(cluster.node_of(&profile));
        cache.set(&profile, &user, Ttl::Long).await.expect("set");
        cache
            .set(&format!("user:{user}:grades"), &user, tagged.clone())
            .await
            .expect("set tagged");
        cache
            .set(&format!("user:{user}:classes"), &user, Ttl::Long)
            .await
            .expect("set");
    }
    assert_eq!(nodes.len(), 3, "profiles on every node");
    assert_eq!(
        cache.invalidate_pattern("user:*:profile").await.unwrap(),
        60
    );
    assert_eq!(cache.invalidate_tag("class:7").await.unwrap(), 60);
    let left: Vec<String> = (0..60).map(|u| format!("user:{u}:classes")).collect();
    let left = cache.get_multi::<u32, _>(&left).await.unwrap();
    assert!(left.iter().all(Option::is_some), "other keys untouched");
    let gone: Vec<String> = (0..60)
        .flat_map(|u| [format!("user:{u}:profile"), format!("user:{u}:grades")])
        .collect();
    let gone = cache.get_multi::<u32, _>(&gone).await.unwrap();
    assert!(gone.iter().all(Option::is_none));
}

#[tokio::test]
async fn keys_of_one_hash_tag_and_commands_over_many_slots() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let (store, cache) = connected(&cluster).await;
    let same_slot = ["{user:1}:a", "{user:1}:b", "{user:1}:c"];
    for key in same_slot {
        cache.set(key, &key.len(), Ttl::Long).await.unwrap();
    }
    assert_eq!(
        cache.get_multi::<usize, _>(&same_slot).await.unwrap(),
        [Some(10); 3]
    );
    let commands: Vec<(String, redis::Cmd)> = (0..50)
        .map(|i| {
            let key = format!("counter:{i}");
            let cmd = redis::cmd("INCRBY").arg(&key).arg(i).to_owned();
            (key, cmd)
        })
        .collect();
    let totals: Vec<i64> = store.pipeline_by_key("INCRBY", &commands).await.unwrap();
    assert_eq!(totals, (0..50).collect::<Vec<i64>>());
    let mut pipe = redis::pipe();
    for i in 0..20 {
        pipe.cmd("INCRBY")
            .arg(format!("counter:{i}"))
            .arg(1)
            .ignore();
    }
    pipe.cmd("GET")
        .arg("counter:3")
        .cmd("GET")
        .arg("counter:19");
    let (three, nineteen): (i64, i64) = store
        .pipeline("INCRBY", "counter:0", &pipe)
        .await
        .expect("a pipeline over many slots");
    assert_eq!((three, nineteen), (4, 20));
    let through_connection: (i64, i64) = pipe
        .query_async(&mut store.connection())
        .await
        .expect("the raw connection takes it too");
    assert_eq!(through_connection, (5, 21));
    let value = cache
        .get_or_set("locked", SetOptions::new(MINUTE).lock(true), || async {
            5u8
        })
        .await
        .unwrap();
    assert_eq!(
        value, 5,
        "the lock key and the value key may be on different nodes"
    );
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test]
async fn a_killed_node_fails_its_own_slots_only() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let (store, cache) = connected(&cluster).await;
    let keys: Vec<String> = (0..30).map(|i| format!("report:{i}")).collect();
    let by_node: HashMap<usize, Vec<&String>> = keys.iter().fold(HashMap::new(), |mut map, key| {
        map.entry(cluster.node_of(key)).or_default().push(key);
        map
    });
    for key in &keys {
        store.set(key, b"cached", MINUTE).await.unwrap();
    }
    cluster.kill(1).expect("kill node 1");

    for key in &keys {
        let read = store.get(key).await;
        if cluster.node_of(key) == 1 {
            let err = read.expect_err("the node is down");
            assert!(err.is_transient(), "{}", cache_core::error::one_line(&err));
        } else {
            let read =
                read.unwrap_or_else(|err| panic!("{key}: {}", cache_core::error::one_line(&err)));
            assert_eq!(read.as_deref(), Some(&b"cached"[..]), "{key}");
        }
    }
    let live: Vec<&String> = by_node
        .iter()
        .filter(|(node, _)| **node != 1)
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect();
    let err = store
        .delete_matching("report:*")
        .await
        .expect_err("one primary could not be swept");
    assert!(err.is_transient(), "{err}");
    for key in &live {
        assert_eq!(
            store.get(key).await.unwrap(),
            None,
            "swept on a live node: {key}"
        );
    }
    assert!(!store.health_check().await.healthy);

    let computed = cache
        .get_or_set(by_node[&1][0], MINUTE, || async { 1u8 })
        .await
        .expect("degraded, not failed");
    assert_eq!(computed, 1);

    cluster.restart(1).expect("restart node 1");
    let started = std::time::Instant::now();
    while store.get(by_node[&1][0]).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.set(by_node[&1][0], b"again", MINUTE).await.unwrap();
    assert_eq!(
        store.get(by_node[&1][0]).await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

#[tokio::test]
async fn a_frozen_node_does_not_stall_scripts_on_other_slots() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let (store, _cache) = connected(&cluster).await;
    let key = (0..)
        .map(|i| format!("visits:{i}"))
        .find(|key| cluster.node_of(key) != 1)
        .expect("a key on another node");
    let frozen = (0..)
        .map(|i| format!("visits:{i}"))
        .find(|key| cluster.node_of(key) == 1)
        .expect("a key on node 1");
    store
        .set(&frozen, b"1", MINUTE)
        .await
        .expect("reach node 1");
    cluster.pause(1).expect("freeze node 1");
    let never_loaded = redis::Script::new(&format!(
        "return redis.call('INCRBY', KEYS[1], {})",
        std::process::id()
    ));
    let total: i64 = store
        .invoke("INCRBY", &key, &never_loaded.key(&key))
        .await
        .expect("loaded and run on the key's own node");
    assert_eq!(total, i64::from(std::process::id()));
    cluster.resume(1).expect("unfreeze node 1");
}

/// A frozen node answers nothing, and the cluster client retries each attempt (3 times,
/// each bounded by the command timeout). A cache operation is bounded by the cache's
/// deadline as a whole, retries included; the store on its own by its command timeout as a
/// whole (redis-rs's overall response timeout), not by one timeout per attempt.
#[tokio::test]
async fn a_deadline_bounds_the_whole_operation_on_a_frozen_node() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let mut config = cluster.config();
    config.command_timeout = Duration::from_secs(2);
    config.cache_operation_timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&config).await.expect("connect");
    let cache = Cache::builder(store.clone())
        .config(&config)
        .strict(true)
        .build();
    let frozen = (0..)
        .map(|i| format!("pupil:{i}"))
        .find(|key| cluster.node_of(key) == 1)
        .expect("a key on node 1");
    cache
        .set(&frozen, &1u8, MINUTE)
        .await
        .expect("reach node 1");
    cluster.pause(1).expect("freeze node 1");

    let started = std::time::Instant::now();
    let err = cache.get::<u8>(&frozen).await.expect_err("frozen");
    let cache_took = started.elapsed();
    assert!(matches!(err, cache_core::Error::Timeout { .. }), "{err:?}");
    let started = std::time::Instant::now();
    let err = store.get(&frozen).await.expect_err("frozen");
    let store_took = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    cluster.resume(1).expect("unfreeze node 1");
    println!("frozen node: cache get failed after {cache_took:?}, store get after {store_took:?}");
    assert!(
        cache_took < Duration::from_millis(200) * 3,
        "the cache's 200 ms deadline bounds the operation: {cache_took:?}"
    );
    assert!(
        store_took < Duration::from_secs(2) * 2,
        "the 2 s command timeout bounds the whole store operation, not each of its 3 retries: {store_took:?}"
    );
}

#[tokio::test]
async fn a_dead_node_trips_its_own_breaker_and_the_live_slots_keep_their_hits() {
    a_dead_node_trips_its_own_breaker(false).await;
}

/// A delete of a key on the dead node is queued for replay, and the replay cannot land while
/// the node is down: the live slots are served all the same, and the replay lands once the
/// node is back. (The restarted node has lost its script cache: the fence script's
/// `NOSCRIPT` used to come back as a failed conversion, not recognised, and the replay failed
/// for as long as the process lived.)
#[tokio::test]
async fn a_queued_invalidation_for_a_dead_node_is_replayed_when_it_is_back() {
    a_dead_node_trips_its_own_breaker(true).await;
}

async fn a_dead_node_trips_its_own_breaker(queue_an_invalidation: bool) {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    let cache = Cache::builder(store)
        .circuit_breaker(3, Duration::from_millis(200))
        .build();
    let cluster = &cluster;
    let on = |node: usize| {
        (0..)
            .map(|i| format!("k{i}"))
            .filter(move |key| cluster.node_of(key) == node)
    };
    let live: Vec<String> = on(0).take(5).chain(on(2).take(5)).collect();
    let lost: Vec<String> = on(1).take(5).collect();
    for key in live.iter().chain(&lost) {
        cache.set(key, &1u8, MINUTE).await.expect("set");
    }
    cluster.kill(1).expect("kill node 1");
    if queue_an_invalidation {
        cache
            .delete(&lost[0])
            .await
            .expect_err("the key's node is down");
        assert_eq!(cache.stats().pending_invalidations, 1);
    }
    // lost[0] may be hidden by the pending invalidation; three failures (the failed delete
    // is one) trip the circuit
    for key in &lost[1..4] {
        let err = cache.get::<u8>(key).await.expect_err("node 1 is down");
        assert!(
            err.is_transient() || matches!(err, cache_core::Error::CircuitOpen { .. }),
            "{}",
            one_line(&err)
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.circuit_trips, 1, "lost slots opened their circuit");
    let report = cache.health_check().await;
    assert!(report.circuit_open);
    assert_eq!(
        report.open_circuits,
        vec![format!("127.0.0.1:{}", cluster.ports()[1])],
        "the dead node's circuit, and only it"
    );

    // the lost slots skip the store; the live ones are read as if nothing happened
    let stats = cache.stats();
    let err = cache.get::<u8>(&lost[4]).await.expect_err("skipped");
    assert!(
        matches!(err, cache_core::Error::CircuitOpen { .. }),
        "{}",
        one_line(&err)
    );
    assert_eq!(cache.stats().short_circuits, stats.short_circuits + 1);
    for key in &live {
        assert_eq!(cache.get::<u8>(key).await.expect("live"), Some(1), "{key}");
    }
    let loaded = std::sync::Mutex::new(Vec::new());
    let many = cache
        .get_or_set_multi(
            [0usize, 9, 2],
            |&i| match i {
                2 => lost[2].clone(),
                _ => live[i].clone(),
            },
            MINUTE,
            |ids: Vec<usize>| {
                loaded
                    .lock()
                    .expect("not poisoned")
                    .extend(ids.iter().copied());
                async move { ids.into_iter().map(|id| (id, 7u8)) }
            },
        )
        .await
        .expect("degraded");
    assert_eq!(
        (many[&0], many[&9], many[&2]),
        (1, 1, 7),
        "a batch across nodes: the live keys hit, the lost one is loaded"
    );
    assert_eq!(
        *loaded.lock().expect("not poisoned"),
        vec![2],
        "only the lost key was loaded"
    );
    let after = cache.stats();
    assert_eq!(
        after.hits,
        stats.hits + 12,
        "every live read hit: {after:?}"
    );
    assert_eq!(after.circuit_trips, 1, "{after:?}");
    assert_eq!(
        after.short_circuits,
        stats.short_circuits + 3,
        "only lost-slot calls were skipped (the single read, the batch's read and write of \
         its lost key): {after:?}"
    );

    cluster.restart(1).expect("restart node 1");
    let started = std::time::Instant::now();
    while !cache.health_check().await.open_circuits.is_empty()
        || cache.stats().pending_invalidations > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node's circuit never closed: {:?} {:?}",
            cache.stats(),
            cache.health_check().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "queued invalidation: {queue_an_invalidation}; the node's circuit closed {:?} after its restart",
        started.elapsed()
    );
    cache.set(&lost[1], &2u8, MINUTE).await.expect("set again");
    assert_eq!(cache.get::<u8>(&lost[1]).await.expect("back"), Some(2));
    if queue_an_invalidation {
        assert_eq!(cache.stats().recovered_invalidations, 1);
    }
}

/// A delete of a key on a live node whose tag record lives on a dead one, once the dead
/// node's circuit is open: the key is removed at once (its node's circuit is closed), the
/// record's failure is counted and nothing waits for the dead node.
#[tokio::test]
async fn a_delete_does_not_wait_for_its_tag_record_on_a_dead_node() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    let cache = Cache::builder(store.clone())
        .circuit_breaker(3, Duration::from_millis(200))
        .build();
    let key = (0..)
        .map(|i| format!("tagged:{i}"))
        .find(|key| {
            cluster.node_of(key) == 0 && cluster.node_of(&format!("{key}.__cachemere:tags")) == 1
        })
        .expect("a key on node 0 with its record on node 1");
    let lost: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|key| cluster.node_of(key) == 1)
        .take(5)
        .collect();
    cache
        .set(&key, &1u8, SetOptions::new(MINUTE).tags(["t"]))
        .await
        .expect("set");
    cluster.kill(1).expect("kill node 1");
    for lost in &lost {
        let _ = cache.get::<u8>(lost).await;
    }
    assert_eq!(cache.stats().circuit_trips, 1);
    let errors = cache.stats().errors;
    assert!(cache.delete(&key).await.expect("node 0 answers"));
    assert_eq!(cache.stats().pending_invalidations, 0);
    assert_eq!(
        cache.stats().errors,
        errors,
        "the record's removal was skipped by the open circuit, not failed"
    );
    let left = store.get(&key).await.expect("node 0 answers");
    assert!(
        left.as_deref().is_none_or(cache_core::store::is_marker),
        "the value is gone (an invalidation's marker may stand): {left:?}"
    );
}

/// A primary with a replica killed, its circuit open with a 30 s cool-down: the node's
/// probe (every second at most) notices the replica's takeover, so its keys are cached
/// again about a second after the promotion, not a cool-down later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_takeover_is_noticed_by_the_open_circuit_within_a_second() {
    let cluster = RedisCluster::start_with_replicas().expect("start a cluster with replicas");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    let cache = Cache::builder(store)
        .circuit_breaker(3, Duration::from_secs(30))
        .build();
    let lost: Vec<String> = (0..)
        .map(|i| format!("takeover:{i}"))
        .filter(|key| cluster.node_of(key) == 1)
        .take(4)
        .collect();
    for key in &lost {
        cache.set(key, &1u8, MINUTE).await.expect("set");
    }
    tokio::task::block_in_place(|| cluster.wait_replicated(Duration::from_secs(10)))
        .expect("the replicas catch up");
    cluster.kill(1).expect("kill node 1");
    let started = std::time::Instant::now();
    while cache.stats().circuit_trips == 0 {
        let _ = cache.set(&lost[0], &2u8, MINUTE).await;
        assert!(started.elapsed() < Duration::from_secs(10), "never tripped");
    }
    tokio::task::block_in_place(|| cluster.wait_for_failover(1, Duration::from_secs(30)))
        .expect("a replica takes over");
    let promoted = std::time::Instant::now();
    loop {
        if cache.set(&lost[1], &3u8, MINUTE).await.is_ok()
            && cache.get::<u8>(&lost[1]).await.ok().flatten() == Some(3)
        {
            break;
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(15),
            "the lost slots were never served again: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = promoted.elapsed();
    eprintln!(
        "takeover: the lost slots were cached again {resumed:?} after the promotion was seen"
    );
    assert!(
        resumed < Duration::from_secs(4),
        "noticed by the node's probe (every second), not after the 30 s cool-down: {resumed:?}"
    );
    assert_eq!(
        cache.get::<u8>(&lost[2]).await.expect("replicated"),
        Some(1),
        "a value written before the kill, read from the promoted replica"
    );
}
