//! A Redis Cluster losing a node: `#[cache_result]` functions keep answering (degraded to
//! their bodies for the lost slots), and sessions whose slots live on other nodes keep working
//! while those on the lost node fail closed; the node lost is the one of the session registry,
//! so new sessions on live slots are created without it (only statistics need it).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_testing::RedisCluster;
use cachemere::cache_session::{
    SessionConfig, SessionData, SessionManager, SessionPatch, SessionToken,
};
use cachemere::{Cache, RedisStore, cache_result};

const MINUTE: Duration = Duration::from_secs(60);

#[cache_result("profile:{id}", cache = cache, expire = 60)]
async fn profile(cache: &Cache, calls: &AtomicUsize, id: u32) -> String {
    calls.fetch_add(1, Ordering::SeqCst);
    format!("profile {id}")
}

fn node_of_session(cluster: &RedisCluster, token: &SessionToken) -> usize {
    let tag = &token.expose()[5..37];
    cluster.node_of(&format!("{{{tag}}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_degrades_cached_calls_and_spares_sessions_on_other_slots() {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    let cache = Cache::builder(store.clone()).build();
    let sessions = SessionManager::new(store, SessionConfig::default());
    let calls = AtomicUsize::new(0);
    let lost = cluster.node_of("session:users");

    for id in 0..30 {
        profile(&cache, &calls, id).await;
    }
    let mut tokens = Vec::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let token = sessions
            .create_session(&user, SessionData::new(), None)
            .await
            .expect("create a session");
        tokens.push((user, token));
    }
    let lost_ids: HashSet<u32> = (0..30)
        .filter(|id| cluster.node_of(&format!("profile:{id}")) == lost)
        .collect();
    let lost_users = tokens
        .iter()
        .filter(|(_, token)| node_of_session(&cluster, token) == lost)
        .count();
    assert!(!lost_ids.is_empty() && lost_ids.len() < 30, "{lost_ids:?}");
    assert!(
        lost_users > 0 && lost_users < 20,
        "{lost_users} of 20 users"
    );

    cluster
        .kill(lost)
        .expect("kill the node of the session registry");

    let (live_ids, dead_ids): (Vec<u32>, Vec<u32>) = (0..30).partition(|id| !lost_ids.contains(id));
    let before = calls.load(Ordering::SeqCst);
    let mut slowest = [Duration::ZERO; 2];
    for &id in &live_ids {
        let started = Instant::now();
        assert_eq!(profile(&cache, &calls, id).await, format!("profile {id}"));
        slowest[0] = slowest[0].max(started.elapsed());
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "values on live nodes are still served from the cache"
    );
    for &id in &dead_ids {
        let started = Instant::now();
        assert_eq!(profile(&cache, &calls, id).await, format!("profile {id}"));
        slowest[1] = slowest[1].max(started.elapsed());
    }
    println!(
        "node {lost} down: slowest of {} cached calls on live slots {:?}, of {} on lost slots {:?}",
        live_ids.len(),
        slowest[0],
        dead_ids.len(),
        slowest[1]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before + dead_ids.len(),
        "lost slots: the body answers"
    );
    assert!(cache.stats().errors > 0);

    for (user, token) in &tokens {
        let read = sessions.get_session(token).await;
        if node_of_session(&cluster, token) == lost {
            let err = read.expect_err("a lost session is an error, never a session or none");
            assert!(err.is_store_failure(), "{err}");
            continue;
        }
        let session = read.expect("read").expect("a live session");
        assert_eq!(&session.user_id, user);
        let patch = SessionPatch::new().set("seen", &true).expect("patch");
        assert!(sessions.update_session(token, patch).await.expect("update"));
        sessions
            .extend_session(token, Duration::from_secs(60))
            .await
            .expect("extend (its script is loaded on its own node only)");
        let rotated = sessions
            .rotate_session(token)
            .await
            .expect("rotate")
            .expect("rotated");
        assert!(
            sessions
                .get_session(&rotated)
                .await
                .expect("read")
                .is_some()
        );
    }

    let mut created = 0;
    for user in 0..10 {
        match sessions
            .create_session(&format!("late-{user}"), SessionData::new(), None)
            .await
        {
            Ok(token) => {
                assert_ne!(node_of_session(&cluster, &token), lost);
                assert!(sessions.get_session(&token).await.expect("read").is_some());
                created += 1;
            }
            Err(err) => assert!(err.is_store_failure(), "{err}"),
        }
    }
    assert!(
        created > 0,
        "sessions are created on live slots though the registry is lost"
    );
    assert!(
        sessions.get_session_stats().await.is_err(),
        "statistics need the registry"
    );
}

/// The latency of `durations` at `quantile` (0.5: the median), zero when there is none.
fn quantile(durations: &mut [Duration], quantile: f64) -> Duration {
    if durations.is_empty() {
        return Duration::ZERO;
    }
    durations.sort_unstable();
    let at = ((durations.len() - 1) as f64 * quantile).round() as usize;
    durations[at]
}

#[cache_result("load:{id}", cache = cache, expire = 60)]
async fn load_profile(cache: &Cache, lost_runs: &AtomicUsize, lost: bool, id: u32) -> u32 {
    if lost {
        lost_runs.fetch_add(1, Ordering::Relaxed);
    }
    id * 3
}

/// One of three primaries (no replica) killed under load: four tasks call a cached function
/// over keys on every node for 3 s. The dead node's own breaker opens after its first
/// failures, and from then its keys skip Redis at once; the live nodes' keys stay hits
/// throughout (their breakers never see a failure). Before breakers per node, a shared
/// breaker tripped and closed again over and over: every lost-slot call waited for the
/// cluster client's retries (p50 107 ms) and the trips short-circuited the live slots too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_under_load_fails_fast_for_its_keys_and_the_others_keep_their_hits() {
    a_lost_node_under_load(Fault::Kill).await;
}

/// The same with the node frozen (`SIGSTOP`): it answers nothing, so each lost-slot call
/// waits for the cache's deadline (200 ms) until the node's circuit opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_under_load_fails_fast_for_its_keys_and_the_others_keep_their_hits() {
    a_lost_node_under_load(Fault::Freeze).await;
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Freeze,
}

async fn a_lost_node_under_load(fault: Fault) {
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let mut config = cluster.config();
    config.cache_breaker_cooldown = Duration::from_millis(300);
    config.cache_operation_timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&config)
        .await
        .expect("connect to the test cluster");
    let cache = Arc::new(Cache::builder(store).config(&config).build());
    let lost_node = 1;
    let ids: Arc<Vec<(u32, bool)>> = Arc::new(
        (0..60)
            .map(|id| (id, cluster.node_of(&format!("load:{id}")) == lost_node))
            .collect(),
    );
    assert!(ids.iter().any(|(_, lost)| *lost) && ids.iter().any(|(_, lost)| !*lost));
    let lost_runs = Arc::new(AtomicUsize::new(0));
    for &(id, lost) in ids.iter() {
        assert_eq!(load_profile(&cache, &lost_runs, lost, id).await, id * 3);
    }
    lost_runs.store(0, Ordering::SeqCst);
    let hits_before = cache.stats().hits;

    match fault {
        Fault::Kill => cluster.kill(lost_node).expect("kill node 1"),
        Fault::Freeze => cluster.pause(lost_node).expect("freeze node 1"),
    }
    let killed = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tripped_at = {
        let (cache, stop) = (Arc::clone(&cache), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if cache.stats().circuit_trips > 0 {
                    return Some(killed.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        })
    };
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (cache, ids, lost_runs, stop) = (
                Arc::clone(&cache),
                Arc::clone(&ids),
                Arc::clone(&lost_runs),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut calls: Vec<(Duration, Duration, bool)> = Vec::new();
                let mut next = task;
                while !stop.load(Ordering::Relaxed) {
                    let (id, lost) = ids[next % ids.len()];
                    next += 7;
                    let started = Instant::now();
                    let value = load_profile(&cache, &lost_runs, lost, id).await;
                    calls.push((killed.elapsed(), started.elapsed(), lost));
                    assert_eq!(value, id * 3, "a wrong value");
                }
                calls
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.expect("a load task"));
    }
    let tripped_at = tripped_at
        .await
        .expect("the trip watcher")
        .expect("the dead node's circuit opened");

    let stats = cache.stats();
    let runs = lost_runs.load(Ordering::SeqCst);
    let (lost_calls, live_calls): (Vec<_>, Vec<_>) = calls.iter().partition(|(_, _, lost)| *lost);
    let (mut before, mut after): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (at, took, _) in &lost_calls {
        match *at < tripped_at {
            true => before.push(*took),
            false => after.push(*took),
        }
    }
    let mut live: Vec<Duration> = live_calls.iter().map(|(_, took, _)| *took).collect();
    let open_circuits = cache.health_check().await.open_circuits;
    let repaired = Instant::now();
    match fault {
        Fault::Kill => {
            tokio::task::block_in_place(|| cluster.restart(lost_node)).expect("restart node 1")
        }
        Fault::Freeze => cluster.resume(lost_node).expect("unfreeze node 1"),
    }
    let repaired_in = repaired.elapsed();
    // back: the node's circuit closes, and its keys are cached again
    let (lost_id, _) = *ids.iter().find(|(_, lost)| *lost).expect("a lost key");
    let back = Instant::now();
    loop {
        // a miss computes and writes; the next call hits if the write landed
        load_profile(&cache, &lost_runs, true, lost_id).await;
        let before = lost_runs.load(Ordering::SeqCst);
        load_profile(&cache, &lost_runs, true, lost_id).await;
        if lost_runs.load(Ordering::SeqCst) == before
            && cache.health_check().await.open_circuits.is_empty()
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the node's keys were never cached again: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let back_in = back.elapsed();
    println!(
        "node {lost_node} {fault:?}: repaired (restart or SIGCONT) in {repaired_in:?}, then its \
         keys were cached again (circuit closed, a read hit) after {back_in:?}"
    );
    println!(
        "node {lost_node} {fault:?} under load: circuit open {tripped_at:?} after the kill; \
         lost-slot calls before it: {} (p50 {:?}, max {:?}), after it: {} (p50 {:?}, p99 {:?}, \
         max {:?}); live-slot calls: {} (p50 {:?}, p99 {:?}, max {:?}), all hits; trips {}, \
         short circuits {}, store errors {}",
        before.len(),
        quantile(&mut before, 0.5),
        quantile(&mut before, 1.0),
        after.len(),
        quantile(&mut after, 0.5),
        quantile(&mut after, 0.99),
        quantile(&mut after, 1.0),
        live.len(),
        quantile(&mut live, 0.5),
        quantile(&mut live, 0.99),
        quantile(&mut live, 1.0),
        stats.circuit_trips,
        stats.short_circuits,
        stats.errors,
    );
    assert_eq!(
        stats.hits - hits_before,
        live_calls.len() as u64,
        "every live-slot call was a hit, none short-circuited: {stats:?}"
    );
    assert!(
        runs <= lost_calls.len() && runs as u64 + stats.stampede_joins >= lost_calls.len() as u64,
        "every lost-slot call ran the body or joined a concurrent call of its key: {runs} runs, \
         {} calls, {stats:?}",
        lost_calls.len()
    );
    assert_eq!(
        stats.circuit_trips, 1,
        "the dead node's circuit opened once and stayed open (its probe keeps failing): {stats:?}"
    );
    assert!(
        stats.errors <= 2 * 5 + 8,
        "after the trip, lost-slot calls skip the store (errors counted only until it opened, \
         by calls in flight and by the probe's let-through): {stats:?}"
    );
    assert!(
        stats.short_circuits as usize >= after.len(),
        "each lost-slot call after the trip skipped the store: {stats:?}"
    );
    assert_eq!(
        open_circuits,
        vec![format!("127.0.0.1:{}", cluster.ports()[lost_node])]
    );
}

/// What the resharding test's tasks share.
struct Reshard {
    /// Keys written with `set`; `acked` holds each one's last acknowledged value.
    written: Vec<String>,
    acked: Vec<AtomicU64>,
    /// Keys read through from `database`, invalidated after each update.
    cached: Vec<String>,
    database: Vec<AtomicU64>,
    stop: AtomicBool,
    visible_errors: AtomicU64,
    operations: AtomicU64,
}

impl Reshard {
    fn failed(&self, operation: &str, err: &cachemere::Error) {
        eprintln!("{operation}: {}", cachemere::error::one_line(err));
        self.visible_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Slots moving between primaries (`CLUSTER SETSLOT … MIGRATING/IMPORTING`, `MIGRATE` key by
/// key, `ASK` then `MOVED` redirects) while two instances with local tiers read and write:
/// one writes values (`set`), another updates a "database" and invalidates (`delete`), and
/// readers on both instances read through `get_or_set` and `get`. Afterwards every
/// acknowledged write is there, every invalidation took effect (both instances read the
/// database's last version, local tiers included) and no call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_loses_no_write_and_no_invalidation() {
    let cluster = Arc::new(RedisCluster::start().expect("start a redis cluster"));
    let config = cluster.config();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&config).await.expect("connect");
        instances.push(Arc::new(
            Cache::builder(store)
                .config(&config)
                .local_cache(1 << 20, Duration::from_secs(60))
                .build(),
        ));
    }
    let started = Instant::now();
    while !instances
        .iter()
        .all(|cache| cache.local_cache_active() == Some(true))
    {
        assert!(started.elapsed() < Duration::from_secs(10), "subscriptions");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let load = Arc::new(Reshard {
        written: (0..20).map(|i| format!("reshard:set:{i}")).collect(),
        cached: (0..20).map(|i| format!("reshard:db:{i}")).collect(),
        database: (0..20).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..20).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        visible_errors: AtomicU64::new(0),
        operations: AtomicU64::new(0),
    });
    let (written, cached, database, acked) =
        (&load.written, &load.cached, &load.database, &load.acked);
    for key in written {
        instances[0].set(key, &0u64, MINUTE).await.expect("set");
    }
    for (i, key) in cached.iter().enumerate() {
        for cache in &instances {
            let value = cache
                .get_or_set(key, MINUTE, || async { database[i].load(Ordering::SeqCst) })
                .await
                .expect("read through");
            assert_eq!(value, 0);
        }
    }
    let mut slots: Vec<u16> = written
        .iter()
        .chain(cached.iter())
        .map(|key| cachemere::cache_core::key::hash_slot(key.as_bytes()))
        .collect();
    slots.sort_unstable();
    slots.dedup();

    let mut tasks = Vec::new();
    // the writer of values: each acknowledged write is recorded
    let (cache, shared) = (Arc::clone(&instances[0]), Arc::clone(&load));
    tasks.push(tokio::spawn(async move {
        let mut version = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            version += 1;
            let i = version as usize % shared.written.len();
            match cache.set(&shared.written[i], &version, MINUTE).await {
                Ok(()) => shared.acked[i].store(version, Ordering::SeqCst),
                Err(err) => shared.failed("set", &err),
            }
            shared.operations.fetch_add(1, Ordering::Relaxed);
        }
    }));
    // the database writer: update, then invalidate (cache-aside)
    let (cache, shared) = (Arc::clone(&instances[1]), Arc::clone(&load));
    tasks.push(tokio::spawn(async move {
        let mut round = 0usize;
        while !shared.stop.load(Ordering::Relaxed) {
            let i = round % shared.cached.len();
            round += 1;
            shared.database[i].fetch_add(1, Ordering::SeqCst);
            if let Err(err) = cache.delete(&shared.cached[i]).await {
                shared.failed("delete", &err);
            }
            shared.operations.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }));
    // a reader on each instance
    for (reader, cache) in instances.iter().enumerate() {
        let (cache, shared) = (Arc::clone(cache), Arc::clone(&load));
        tasks.push(tokio::spawn(async move {
            let mut round = reader;
            while !shared.stop.load(Ordering::Relaxed) {
                let i = round % shared.cached.len();
                round += 3;
                let database = &shared.database;
                let _ = cache
                    .get_or_set(&shared.cached[i], MINUTE, || async move {
                        database[i].load(Ordering::SeqCst)
                    })
                    .await;
                if let Err(err) = cache.get::<u64>(&shared.written[i]).await {
                    shared.failed("get", &err);
                }
                shared.operations.fetch_add(2, Ordering::Relaxed);
                // local-tier hits never wait: let the writers and the timers run
                tokio::task::yield_now().await;
            }
        }));
    }

    // every slot of the test's keys moves to the next primary, key by key
    let migrating = Instant::now();
    let migration = {
        let (cluster, slots) = (Arc::clone(&cluster), slots.clone());
        tokio::task::spawn_blocking(move || {
            for &slot in &slots {
                let to = (cluster.node_of_slot(slot) + 1) % 3;
                cluster
                    .migrate_slot(slot, to, Duration::from_millis(2))
                    .expect("migrate a slot");
            }
        })
    };
    migration.await.expect("the migration");
    let migrated_in = migrating.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task");
    }

    let started = Instant::now();
    while instances
        .iter()
        .any(|cache| cache.stats().pending_invalidations > 0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pending invalidations never replayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a third instance, without a local tier, reads what Redis holds
    let fresh = Cache::builder(RedisStore::connect(&config).await.expect("connect"))
        .config(&config)
        .build();
    let mut lost_writes = 0;
    for (i, key) in written.iter().enumerate() {
        let stored = fresh.get::<u64>(key).await.expect("read back");
        if stored != Some(acked[i].load(Ordering::SeqCst)) {
            lost_writes += 1;
            eprintln!(
                "{key}: stored {stored:?}, acknowledged {}",
                acked[i].load(Ordering::SeqCst)
            );
        }
    }
    let mut stale = 0;
    for (i, key) in cached.iter().enumerate() {
        let current = database[i].load(Ordering::SeqCst);
        for cache in instances.iter().map(AsRef::as_ref).chain([&fresh]) {
            let read = cache
                .get_or_set(key, MINUTE, || async { current })
                .await
                .expect("read through");
            if read != current {
                stale += 1;
                eprintln!("{key}: read {read}, the database holds {current}");
            }
        }
    }
    let stats: Vec<_> = instances.iter().map(|cache| cache.stats()).collect();
    println!(
        "resharding: {} slots moved in {migrated_in:?} (keys one by one, 2 ms apart) under {} \
         operations; caller-visible errors {}; acknowledged writes lost {lost_writes} of 20; \
         stale reads after it {stale} of 60; store errors degraded {} and {}, recovered \
         invalidations {} and {}",
        slots.len(),
        load.operations.load(Ordering::Relaxed),
        load.visible_errors.load(Ordering::Relaxed),
        stats[0].errors,
        stats[1].errors,
        stats[0].recovered_invalidations,
        stats[1].recovered_invalidations,
    );
    assert_eq!(lost_writes, 0, "no acknowledged write lost");
    assert_eq!(stale, 0, "no invalidation lost, local tiers included");
    assert_eq!(
        load.visible_errors.load(Ordering::Relaxed),
        0,
        "no call failed while slots moved"
    );
}
