//! The local tier follows writes made by programs other than cachemere (Redis
//! `CLIENT TRACKING`), against a private `redis-server`: a plain redis-rs connection writes
//! the JSON values two instances cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, Config, Json, LocalMode, RedisStore};
use cache_testing::{RedisCluster, RedisServer};

const KEY: &str = "shared:counter";

async fn instance(config: &Config, stale_window: Duration) -> Cache {
    let store = RedisStore::connect(config).await.expect("connect");
    let cache = Cache::builder(store)
        .codec(Json)
        .local_cache(1 << 20, Duration::from_secs(60))
        .local_cache_stale_window(stale_window)
        .build();
    let started = Instant::now();
    while cache.local_mode() == Some(LocalMode::Disconnected) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
}

/// A plain redis-rs connection: the writer that is not cachemere.
async fn outsider(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// A plain redis-rs cluster connection.
async fn cluster_outsider(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.url().split(',').collect::<Vec<_>>())
        .expect("url")
        .get_async_connection()
        .await
        .expect("connect")
}

/// Writes `value` with a ttl (the local tier keeps only values that expire in the store).
async fn write(outsider: &mut impl redis::aio::ConnectionLike, value: u64) {
    redis::cmd("SET")
        .arg(KEY)
        .arg(value.to_string())
        .arg("PX")
        .arg(600_000)
        .query_async::<()>(outsider)
        .await
        .expect("SET");
}

/// Reads until a read is answered by the local tier with `expected`.
async fn until_local(cache: &Cache, expected: u64) {
    let started = Instant::now();
    loop {
        let before = cache.stats().local_hits;
        let value = cache.get::<u64>(KEY).await.expect("GET");
        if value == Some(expected) && cache.stats().local_hits > before {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{expected} never served locally (read {value:?})"
        );
        tokio::task::yield_now().await;
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_another_program_reach_every_local_tier() {
    let server = RedisServer::start_private().expect("redis-server");
    let writer = outsider(&server).await;
    coherence("one server", &server.config(), writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_writes_by_another_program_reach_every_local_tier() {
    let cluster = RedisCluster::lease().expect("cluster");
    let writer = cluster_outsider(&cluster).await;
    coherence("cluster", &cluster.config(), writer).await;
}

/// 1,000 writes by a plain redis-rs connection, each when both instances serve the previous
/// value from their local tiers: how long from the write's reply until neither serves it.
async fn coherence(deployment: &str, config: &Config, mut writer: impl redis::aio::ConnectionLike) {
    let (a, b) = (
        instance(config, Duration::ZERO).await,
        instance(config, Duration::ZERO).await,
    );
    assert_eq!(a.local_mode(), Some(LocalMode::Tracking));
    assert_eq!(b.local_mode(), Some(LocalMode::Tracking));
    write(&mut writer, 0).await;
    let mut delays = Vec::with_capacity(1000);
    for value in 1..=1000 {
        until_local(&a, value - 1).await;
        until_local(&b, value - 1).await;
        write(&mut writer, value).await;
        let written = Instant::now();
        let mut seen = [false, false];
        while seen != [true, true] {
            for (instance, seen) in [&a, &b].into_iter().zip(seen.iter_mut()) {
                if !*seen {
                    *seen = instance.get::<u64>(KEY).await.expect("GET") == Some(value);
                }
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "write {value} never seen"
            );
        }
        delays.push(written.elapsed());
    }
    let (p50, p99) = (percentile(&mut delays, 0.50), percentile(&mut delays, 0.99));
    println!(
        "{deployment}, 1,000 writes by a plain redis-rs connection: from the write's reply \
         until no instance serves the old value, p50 {p50:?}, p99 {p99:?}, max {:?}",
        delays.last().expect("samples")
    );
}

/// Every read that starts later than `BOUND` after a write's reply returns that write's value
/// or a later one, while a writer outside cachemere races readers on two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_the_bound_returns_an_overwritten_value() {
    const BOUND: Duration = Duration::from_millis(50);
    let server = RedisServer::start_private().expect("redis-server");
    let instances = [
        instance(&server.config(), Duration::ZERO).await,
        instance(&server.config(), Duration::ZERO).await,
    ];
    let mut writer = outsider(&server).await;
    write(&mut writer, 0).await;
    let epoch = Instant::now();
    let replies = Arc::new(std::sync::Mutex::new(vec![Duration::ZERO]));
    let writing = {
        let replies = Arc::clone(&replies);
        tokio::spawn(async move {
            for value in 1..=300u64 {
                write(&mut writer, value).await;
                replies.lock().expect("lock").push(epoch.elapsed());
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let readers: Vec<_> = instances
        .into_iter()
        .map(|cache| {
            tokio::spawn(async move {
                let mut reads = Vec::new();
                let mut local = 0;
                loop {
                    let started = epoch.elapsed();
                    let before = cache.stats().local_hits;
                    let value = cache.get::<u64>(KEY).await.expect("GET").expect("a value");
                    local += cache.stats().local_hits - before;
                    reads.push((started, value));
                    if value == 300 {
                        return (reads, local);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writing.await.expect("writer");
    let replies = replies.lock().expect("lock").clone();
    for reader in readers {
        let (reads, local) = reader.await.expect("reader");
        assert!(local > 100, "the reads were served locally: {local}");
        for (started, value) in reads {
            let overwritten_before = replies
                .iter()
                .rposition(|reply| *reply + BOUND <= started)
                .unwrap_or(0) as u64;
            assert!(
                value >= overwritten_before,
                "a read started at {started:?} returned {value}, overwritten by the reply of \
                 {overwritten_before} at {:?}",
                replies[overwritten_before as usize]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_tracking_leaves_the_notices() {
    let server = RedisServer::start_private().expect("redis-server");
    let mut admin = outsider(&server).await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-client|tracking")
        .query_async::<()>(&mut admin)
        .await
        .expect("ACL");
    let (a, b) = (
        instance(&server.config(), Duration::ZERO).await,
        instance(&server.config(), Duration::ZERO).await,
    );
    assert_eq!(a.local_mode(), Some(LocalMode::Notices));
    a.set(KEY, &1u64, cache_core::Ttl::Default)
        .await
        .expect("SET");
    until_local(&b, 1).await;
    a.set(KEY, &2u64, cache_core::Ttl::Default)
        .await
        .expect("SET");
    let started = Instant::now();
    while b.get::<u64>(KEY).await.expect("GET") != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the notice never came"
        );
        tokio::task::yield_now().await;
    }
}

/// With a stale window, copies are still served (and counted) for at most that long after
/// the subscription is lost, then dropped: a killed server (noticed at once) and a frozen one
/// (noticed when its ping goes unanswered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_leaves_copies_for_at_most_the_stale_window() {
    const WINDOW: Duration = Duration::from_millis(300);
    for fault in ["killed", "frozen"] {
        let server = RedisServer::start_private().expect("redis-server");
        let cache = instance(&server.config(), WINDOW).await;
        let mut writer = outsider(&server).await;
        write(&mut writer, 7).await;
        until_local(&cache, 7).await;
        match fault {
            "killed" => server.kill().expect("kill"),
            _ => server.pause().expect("pause"),
        }
        let faulted = Instant::now();
        // reads answered locally, the last of them
        let mut last_local = None;
        let mut lost_at = None;
        while faulted.elapsed() < Duration::from_secs(5) {
            if lost_at.is_none() && cache.local_mode() == Some(LocalMode::Disconnected) {
                lost_at = Some(Instant::now());
            }
            let before = cache.stats().local_hits;
            let _ = cache.get::<u64>(KEY).await;
            if cache.stats().local_hits > before {
                last_local = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lost_at = lost_at.expect("the loss was noticed");
        let last_local = last_local.expect("copies were served");
        let stale = cache.stats().local_stale_hits;
        println!(
            "{fault} server: loss noticed after {:?}, copies served until {:?} after it ({stale} stale hits)",
            lost_at - faulted,
            last_local.saturating_duration_since(lost_at)
        );
        assert!(stale > 0, "{fault}: the window served copies");
        assert!(
            last_local <= lost_at + WINDOW + Duration::from_millis(50),
            "{fault}: a copy served {:?} after the loss",
            last_local - lost_at
        );
        if fault == "frozen" {
            server.resume().expect("resume");
        }
    }
}

/// A store connected lazily does not know the cluster's primaries until its first command:
/// the tier waits for them and tracks, rather than settling for notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_lazily_connected_cluster_the_tier_tracks_once_the_slots_are_known() {
    let cluster = RedisCluster::lease().expect("cluster");
    let store = RedisStore::connect_lazy(&cluster.config()).expect("store");
    let cache = Cache::builder(store)
        .codec(Json)
        .local_cache(1 << 20, Duration::from_secs(60))
        .build();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = cache.get::<u64>(KEY).await;
    let started = Instant::now();
    while cache.local_mode() != Some(LocalMode::Tracking) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {:?}",
            cache.local_mode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
