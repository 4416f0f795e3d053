//! No invalidation is lost to an outage: a write's invalidation that cannot reach Redis
//! (frozen with the circuit open, or killed and restarted with persistence on) is replayed
//! once Redis answers, so that another instance reads the new value, and the writer never
//! serves the replaced one meanwhile. Figures are printed (`--nocapture`) for RELIABILITY.md.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cache_testing::RedisServer;
use cachemere::{Cache, Config, RedisStore, SetOptions, Ttl, cache_result, invalidate_cache};

const DEADLINE: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(300);
/// What the issue promises: another instance reads the new value this soon after Redis answers.
const CONVERGENCE: Duration = Duration::from_secs(2);

fn config(server: &RedisServer) -> Config {
    let mut config = server.config();
    config.cache_operation_timeout = DEADLINE;
    config.cache_breaker_cooldown = COOLDOWN;
    config
}

/// An instance: its own connection and cache, as another process has.
async fn instance(config: &Config, prefix: &str) -> Cache {
    let store = RedisStore::connect(config).await.expect("connect");
    Cache::builder(store).config(config).prefix(prefix).build()
}

/// The database the cached functions read.
struct Db(Mutex<String>);

impl Db {
    fn name(&self) -> String {
        self.0.lock().expect("db lock").clone()
    }
}

#[cache_result("profile:{id}", cache = cache)]
async fn profile(cache: &Cache, db: &Db, id: u32) -> String {
    let _ = id;
    db.name()
}

#[invalidate_cache("profile:{id}", cache = cache)]
async fn rename(cache: &Cache, db: &Db, id: u32, name: &str) -> Result<(), String> {
    let _ = id;
    *db.0.lock().expect("db lock") = name.to_owned();
    Ok(())
}

/// Until the writer's queue is empty (the replay pops an invalidation just after applying it).
async fn until_replayed(writer: &Cache) {
    let started = Instant::now();
    while writer.stats().pending_invalidations > 0 {
        assert!(started.elapsed() < CONVERGENCE, "{:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads through the writer until the circuit is open (each failed read costs a deadline).
async fn open_the_circuit(writer: &Cache) {
    for i in 0..50u32 {
        if writer.stats().circuit_trips > 0 {
            return;
        }
        let _ = writer.get::<u32>(&format!("probe:{i}")).await;
    }
    panic!("the circuit never opened: {:?}", writer.stats());
}

/// Until `reader` reads something other than `old` under `key`; the time it took.
async fn until_gone(reader: &Cache, key: &str, old: &str, writer: &Cache, db: &Db) -> Duration {
    let started = Instant::now();
    loop {
        assert_eq!(
            profile(writer, db, 1).await,
            "new",
            "the writer served the replaced value"
        );
        match reader.get::<String>(key).await {
            Ok(found) if found.as_deref() != Some(old) => return started.elapsed(),
            Ok(_) | Err(_) => {}
        }
        assert!(
            started.elapsed() < CONVERGENCE,
            "another instance still reads the replaced value after {CONVERGENCE:?}: {:?}",
            writer.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_freeze_with_the_circuit_open_is_invalidated_after_resume() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = config(&server);
    let (writer, reader) = (instance(&config, "").await, instance(&config, "").await);
    let db = Db(Mutex::new("old".into()));
    assert_eq!(profile(&writer, &db, 1).await, "old");
    assert_eq!(
        reader.get::<String>("profile:1").await.unwrap().as_deref(),
        Some("old")
    );

    server.pause().unwrap();
    open_the_circuit(&writer).await;
    rename(&writer, &db, 1, "new").await.unwrap();
    assert_eq!(writer.stats().pending_invalidations, 1);
    assert_eq!(profile(&writer, &db, 1).await, "new");
    server.resume().unwrap();

    let delay = until_gone(&reader, "profile:1", "old", &writer, &db).await;
    until_replayed(&writer).await;
    let stats = writer.stats();
    println!("freeze: another instance reads the new value {delay:?} after SIGCONT; {stats:?}");
    assert!(stats.recovered_invalidations >= 1, "{stats:?}");
    assert_eq!(profile(&reader, &db, 1).await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_a_persistent_server_is_down_is_invalidated_after_its_restart() {
    let server = RedisServer::start_persistent().expect("start redis-server");
    let config = config(&server);
    let (writer, reader) = (instance(&config, "").await, instance(&config, "").await);
    let db = Db(Mutex::new("old".into()));
    assert_eq!(profile(&writer, &db, 1).await, "old");

    server.kill().unwrap();
    rename(&writer, &db, 1, "new").await.unwrap();
    assert_eq!(writer.stats().pending_invalidations, 1);
    assert_eq!(profile(&writer, &db, 1).await, "new");
    server.restart().unwrap();

    let delay = until_gone(&reader, "profile:1", "old", &writer, &db).await;
    until_replayed(&writer).await;
    println!(
        "kill + restart (appendonly): another instance reads the new value {delay:?} after the restart; {:?}",
        writer.stats()
    );
    assert_eq!(writer.stats().recovered_invalidations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_and_tags_invalidated_during_a_freeze_are_applied_after_resume() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = config(&server);
    let (writer, reader) = (instance(&config, "").await, instance(&config, "").await);
    let tagged = SetOptions::new(Ttl::Default).tags(["class:7"]);
    for key in ["user:1:a", "user:1:b", "user:2:a"] {
        writer.set(key, &"old", Ttl::Default).await.unwrap();
    }
    for key in ["roster:1", "roster:2"] {
        writer.set(key, &"old", tagged.clone()).await.unwrap();
    }
    writer.set("untouched", &"old", Ttl::Default).await.unwrap();
    writer
        .hset("user:1:h", "f", &"old", Ttl::Default)
        .await
        .unwrap();

    server.pause().unwrap();
    open_the_circuit(&writer).await;
    assert!(writer.invalidate_pattern("user:1:*").await.is_err());
    assert!(writer.invalidate_tag("class:7").await.is_err());
    assert_eq!(writer.stats().pending_invalidations, 2);
    server.resume().unwrap();

    let started = Instant::now();
    while writer.stats().pending_invalidations > 0 {
        assert!(writer.get::<String>("user:1:a").await.unwrap().is_none());
        assert!(
            writer
                .hgetall::<String>("user:1:h")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(writer.get::<String>("roster:1").await.unwrap().is_none());
        assert!(started.elapsed() < CONVERGENCE, "{:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "pattern + tag replayed {:?} after SIGCONT",
        started.elapsed()
    );
    for gone in ["user:1:a", "user:1:b", "roster:1", "roster:2"] {
        assert_eq!(reader.get::<String>(gone).await.unwrap(), None, "{gone}");
    }
    assert!(
        reader
            .hgetall::<String>("user:1:h")
            .await
            .unwrap()
            .is_empty()
    );
    for kept in ["user:2:a", "untouched"] {
        assert_eq!(
            reader.get::<String>(kept).await.unwrap().as_deref(),
            Some("old"),
            "{kept}"
        );
    }
    assert_eq!(writer.stats().recovered_invalidations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_misses_every_read_then_sweeps_the_prefix() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = config(&server);
    let store = RedisStore::connect(&config).await.expect("connect");
    let writer = Cache::builder(store)
        .config(&config)
        .prefix("app:")
        .pending_invalidations(3)
        .build();
    let neighbour = instance(&config, "other:").await;
    for i in 0..6 {
        writer
            .set(&format!("k:{i}"), &i, Ttl::Default)
            .await
            .unwrap();
    }
    neighbour.set("k:0", &100, Ttl::Default).await.unwrap();

    server.pause().unwrap();
    open_the_circuit(&writer).await;
    for i in 0..5 {
        assert!(writer.delete(&format!("k:{i}")).await.is_err());
    }
    let stats = writer.stats();
    assert_eq!(stats.invalidation_overflows, 1, "{stats:?}");
    assert_eq!(
        stats.pending_invalidations, 1,
        "one sweep replaces the queue: {stats:?}"
    );
    server.resume().unwrap();

    let started = Instant::now();
    while writer.stats().pending_invalidations > 0 {
        assert_eq!(
            writer.get::<i32>("k:5").await.unwrap(),
            None,
            "every read is a miss until the sweep ran"
        );
        assert!(started.elapsed() < CONVERGENCE, "{:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while writer.health_check().await.circuit_open {
        assert!(started.elapsed() < CONVERGENCE, "{:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..6 {
        assert_eq!(
            writer.get::<i32>(&format!("k:{i}")).await.unwrap(),
            None,
            "k:{i}"
        );
    }
    assert_eq!(
        neighbour.get::<i32>("k:0").await.unwrap(),
        Some(100),
        "outside the prefix"
    );
    writer.set("k:9", &9, Ttl::Default).await.unwrap();
    assert_eq!(
        writer.get::<i32>("k:9").await.unwrap(),
        Some(9),
        "caching resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_prefix_an_overflow_misses_every_read_for_the_longest_ttl_and_sweeps_nothing() {
    let server = RedisServer::start_private().expect("start redis-server");
    let config = config(&server);
    let store = RedisStore::connect(&config).await.expect("connect");
    let lifetime = Duration::from_millis(800);
    let writer = Cache::builder(store)
        .config(&config)
        .default_ttl(lifetime)
        .short_ttl(lifetime)
        .long_ttl(lifetime)
        .pending_invalidations(2)
        .build();
    let neighbour = instance(&config, "").await;
    neighbour
        .set("session:someone", &"logged in", Duration::from_secs(60))
        .await
        .unwrap();
    for i in 0..3 {
        writer
            .set(&format!("k:{i}"), &i, Ttl::Default)
            .await
            .unwrap();
    }

    server.pause().unwrap();
    open_the_circuit(&writer).await;
    for i in 0..3 {
        assert!(writer.delete(&format!("k:{i}")).await.is_err());
    }
    let overflowed = Instant::now();
    assert_eq!(writer.stats().invalidation_overflows, 1);
    server.resume().unwrap();
    while writer.health_check().await.circuit_open {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.set("fresh", &7, Ttl::Default).await.unwrap();
    if overflowed.elapsed() < lifetime {
        assert_eq!(
            writer.get::<i32>("fresh").await.unwrap(),
            None,
            "every read is a miss while values written before the overflow may live"
        );
    }
    tokio::time::sleep(lifetime.saturating_sub(overflowed.elapsed()) + Duration::from_millis(50))
        .await;
    writer.set("fresh", &7, Ttl::Default).await.unwrap();
    assert_eq!(
        writer.get::<i32>("fresh").await.unwrap(),
        Some(7),
        "caching resumed"
    );
    assert_eq!(
        neighbour
            .get::<String>("session:someone")
            .await
            .unwrap()
            .as_deref(),
        Some("logged in"),
        "no sweep of a database the cache shares"
    );
}

/// `INFO commandstats` calls of `command` so far.
async fn calls(connection: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// A pattern invalidated again while its queued twin's sweep is being replayed is replayed
/// again: the twin's sweep may already have passed keys that another instance wrote since.
#[tokio::test]
async fn an_invalidation_made_while_its_twin_is_replayed_is_not_dropped() {
    let server = RedisServer::start_private().expect("start redis-server");
    let mut config = config(&server);
    config.cache_breaker_threshold = 1;
    config.cache_breaker_cooldown = Duration::from_secs(30);
    let writer = instance(&config, "p:").await;
    let other = instance(&config, "p:").await;
    let client = redis::Client::open(server.url()).expect("client");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Keys the sweep must scan past without matching, so that it lasts a while.
    let fill = redis::Script::new(
        "for i = ARGV[1], ARGV[1] + 19999 do redis.call('SET', 'unrelated:' .. i, '1') end",
    );
    for batch in 0..20 {
        let _: () = fill
            .arg(batch * 20_000)
            .invoke_async(&mut raw)
            .await
            .expect("fill");
    }

    server.pause().expect("freeze");
    writer
        .invalidate_pattern("item:*")
        .await
        .expect_err("frozen");
    server.resume().expect("resume");
    let started = Instant::now();
    while calls(&mut raw, "scan").await < 150 {
        assert!(started.elapsed() < CONVERGENCE, "the replay never swept");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for i in 0..60 {
        other
            .set(&format!("item:fresh:{i}"), &i, Ttl::Long)
            .await
            .expect("another instance writes");
    }
    assert_eq!(
        writer.stats().recovered_invalidations,
        0,
        "the replayed sweep ended before the second invalidation: the test proves nothing"
    );
    writer
        .invalidate_pattern("item:*")
        .await
        .expect_err("the circuit is still open");
    let started = Instant::now();
    while writer.stats().pending_invalidations > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            writer.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // (an invalidation leaves a fence marker in each key it finds: no value)
    let mut survivors = 0;
    for i in 0..60 {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("p:item:fresh:{i}"))
            .query_async(&mut raw)
            .await
            .expect("GET");
        survivors += u32::from(value.is_some_and(|value| !cachemere::store::is_marker(&value)));
    }
    assert_eq!(survivors, 0, "fresh keys survived the second invalidation");
}

/// Every read of a key whose delete waits for the store is absent, `exists` and `ttl`
/// included, and answers without going to the store.
#[tokio::test]
async fn every_read_of_a_key_with_a_pending_delete_is_absent() {
    let server = RedisServer::start_private().expect("start redis-server");
    let mut config = config(&server);
    config.cache_breaker_threshold = 1;
    config.cache_breaker_cooldown = Duration::from_secs(30);
    let cache = instance(&config, "p:").await;
    cache.set("k", &1u32, Ttl::Long).await.expect("set");
    cache.hset("h", "f", &1u32, Ttl::Long).await.expect("hset");
    server.pause().expect("freeze");
    cache.delete("k").await.expect_err("frozen");
    cache.delete("h").await.expect_err("the circuit is open");
    assert_eq!(cache.stats().pending_invalidations, 2);
    let started = Instant::now();
    assert!(!cache.exists("k").await.expect("hidden, not an error"));
    assert_eq!(
        cache.ttl("k").await.expect("hidden"),
        cachemere::KeyTtl::Missing
    );
    assert_eq!(cache.get::<u32>("k").await.expect("hidden"), None);
    assert_eq!(cache.hget::<u32>("h", "f").await.expect("hidden"), None);
    assert!(cache.hgetall::<u32>("h").await.expect("hidden").is_empty());
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
    server.resume().expect("resume");
}
