//! A Redis Cluster losing a node: `#[cache_result]` functions keep answering (degraded to
//! their bodies for the lost slots), and sessions whose slots live on other nodes keep working
//! while those on the lost node fail closed; the node lost is the one of the session registry,
//! so new sessions on live slots are created without it (only statistics need it).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_testing::RedisCluster;
use cachemere::cache_session::{
    SessionConfig, SessionData, SessionManager, SessionPatch, SessionToken,
};
use cachemere::{Cache, RedisStore, cache_result};

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
