//! One suite, run against a private `redis-server`, a private Redis Cluster and the in-process
//! store.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use cache_core::encryption::EncryptionKeys;
use cache_session::{
    Error, MemoryStore, RedisStore, SessionConfig, SessionData, SessionManager, SessionPatch,
    SessionService, SessionState, SessionStore, SessionToken, ValidationError,
};
use cache_testing::{ClusterLease, RedisCluster, RedisServer};

struct Fixture {
    store: Box<dyn Fn() -> SessionStore + Send + Sync>,
    server: Option<RedisServer>,
    _cluster: Option<ClusterLease>,
}

impl Fixture {
    fn manager(&self, config: SessionConfig) -> SessionManager {
        SessionManager::new((self.store)(), config)
    }
}

async fn redis_fixture() -> Fixture {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    Fixture {
        store: Box::new(move || store.clone().into()),
        server: Some(server),
        _cluster: None,
    }
}

async fn cluster_fixture() -> Fixture {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect");
    Fixture {
        store: Box::new(move || store.clone().into()),
        server: None,
        _cluster: Some(cluster),
    }
}

async fn memory_fixture() -> Fixture {
    let store = MemoryStore::new();
    Fixture {
        store: Box::new(move || store.clone().into()),
        server: None,
        _cluster: None,
    }
}

fn data(role: &str) -> SessionData {
    SessionData::new()
        .with("role", role)
        .and_then(|data| data.with("permissions", &["read", "write"]))
        .expect("encode")
}

fn short(ttl_ms: u64) -> SessionConfig {
    SessionConfig::default()
        .ttl(Duration::from_millis(ttl_ms))
        .touch_after(Duration::from_secs(3600))
}

/// `n` concurrent updates of `token`'s session, update `i` setting `field<i>` to `i`,
/// spread over `managers`; each must find the session live.
async fn update_distinct_fields_at_once(managers: &[SessionManager], token: &SessionToken, n: u32) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let sessions = managers[i as usize % managers.len()].clone();
            let token = token.clone();
            tokio::spawn(async move {
                let patch = SessionPatch::new()
                    .set(&format!("field{i}"), &i)
                    .expect("a patch");
                sessions.update_session(&token, patch).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("no panic").expect("no error"), "live");
    }
}

/// Every field [`update_distinct_fields_at_once`] set is in `data`.
fn assert_distinct_fields(data: &SessionData, n: u32) {
    for i in 0..n {
        assert_eq!(
            data.get::<u32>(&format!("field{i}")).expect("a number"),
            Some(i)
        );
    }
}

macro_rules! session_suite {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn create_then_get_returns_the_seed_record() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let before = SystemTime::now() - Duration::from_secs(1);
                let token = sessions
                    .create_session("user-1", data("student"), None)
                    .await
                    .unwrap();
                let session = sessions.get_session(&token).await.unwrap().expect("live");
                assert_eq!(session.user_id, "user-1");
                assert_eq!(session.data.role(), Some("student"));
                assert_eq!(session.data.permissions(), ["read", "write"]);
                assert!(session.created_at >= before);
                assert_eq!(session.created_at, session.last_accessed);
                let lifetime = session
                    .expires_at
                    .duration_since(session.created_at)
                    .unwrap();
                assert_eq!(lifetime, Duration::from_secs(86_400));
                let json = serde_json::to_value(&session).unwrap();
                for field in [
                    "user_id",
                    "created_at",
                    "last_accessed",
                    "expires_at",
                    "data",
                ] {
                    assert!(json.get(field).is_some(), "{field} missing from {json}");
                }
            }

            #[tokio::test]
            async fn custom_ttl_and_activity_tracking_are_throttled() {
                let f = $fixture().await;
                let sessions = f.manager(
                    SessionConfig::default()
                        .ttl(Duration::from_secs(60))
                        .touch_after(Duration::from_millis(300)),
                );
                let token = sessions
                    .create_session("u", SessionData::new(), Some(Duration::from_secs(30)))
                    .await
                    .unwrap();
                let first = sessions.get_session(&token).await.unwrap().unwrap();
                assert_eq!(
                    first.expires_at.duration_since(first.created_at).unwrap(),
                    Duration::from_secs(30)
                );
                let again = sessions.get_session(&token).await.unwrap().unwrap();
                assert_eq!(
                    again.last_accessed, first.last_accessed,
                    "a fresh read does not rewrite"
                );
                tokio::time::sleep(Duration::from_millis(400)).await;
                let touched = sessions.get_session(&token).await.unwrap().unwrap();
                assert!(touched.last_accessed > first.last_accessed);
                assert!(
                    touched.expires_at > first.expires_at,
                    "the idle timeout slides"
                );
                assert_eq!(
                    touched
                        .expires_at
                        .duration_since(touched.last_accessed)
                        .unwrap(),
                    Duration::from_secs(30),
                    "the session keeps its own ttl"
                );
            }

            #[tokio::test]
            async fn idle_timeout_expires_unused_sessions() {
                let f = $fixture().await;
                let sessions = f.manager(short(500));
                let token = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                assert!(sessions.get_session(&token).await.unwrap().is_some());
                tokio::time::sleep(Duration::from_millis(700)).await;
                assert_eq!(
                    sessions.session_state(&token).await.unwrap(),
                    SessionState::Expired
                );
                assert!(sessions.get_session(&token).await.unwrap().is_none());
                assert!(
                    !sessions
                        .update_session(&token, SessionPatch::new().set("x", &1).unwrap())
                        .await
                        .unwrap()
                );
                assert_eq!(
                    sessions
                        .extend_session(&token, Duration::from_secs(60))
                        .await
                        .unwrap(),
                    None
                );
                assert_eq!(sessions.rotate_session(&token).await.unwrap(), None);
            }

            #[tokio::test]
            async fn absolute_timeout_ends_even_active_sessions() {
                let f = $fixture().await;
                let sessions = f.manager(
                    SessionConfig::default()
                        .ttl(Duration::from_millis(600))
                        .absolute_ttl(Duration::from_millis(1000))
                        .touch_after(Duration::from_millis(1)),
                );
                let token = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert!(
                        sessions.get_session(&token).await.unwrap().is_some(),
                        "use keeps it alive"
                    );
                }
                let extended = sessions
                    .extend_session(&token, Duration::from_secs(3600))
                    .await
                    .unwrap();
                let session = sessions.get_session(&token).await.unwrap().unwrap();
                assert_eq!(extended, Some(session.expires_at), "extension is capped");
                assert!(
                    session
                        .expires_at
                        .duration_since(session.created_at)
                        .unwrap()
                        <= Duration::from_millis(1000)
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(sessions.get_session(&token).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn extend_slides_the_idle_timeout() {
                let f = $fixture().await;
                let sessions = f.manager(short(500));
                let token = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                let until = sessions
                    .extend_session(&token, Duration::from_secs(5))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(until > SystemTime::now() + Duration::from_secs(4));
                tokio::time::sleep(Duration::from_millis(700)).await;
                assert!(sessions.get_session(&token).await.unwrap().is_some());
                let shorter = sessions
                    .extend_session(&token, Duration::from_millis(10))
                    .await
                    .unwrap();
                assert_eq!(shorter, Some(until), "extend never shortens");
            }

            #[tokio::test]
            async fn update_merges_fields_and_never_resurrects() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let token = sessions
                    .create_session("u", data("teacher"), None)
                    .await
                    .unwrap();
                let patch = SessionPatch::new()
                    .set("department", "Math")
                    .unwrap()
                    .remove("permissions");
                assert!(sessions.update_session(&token, patch).await.unwrap());
                let session = sessions.get_session(&token).await.unwrap().unwrap();
                assert_eq!(session.data.role(), Some("teacher"));
                assert_eq!(
                    session.data.get::<String>("department").unwrap().as_deref(),
                    Some("Math")
                );
                assert!(session.data.permissions().is_empty());

                assert!(sessions.delete_session(&token).await.unwrap());
                assert!(!sessions.delete_session(&token).await.unwrap());
                let patch = SessionPatch::new().set("late", &true).unwrap();
                assert!(!sessions.update_session(&token, patch).await.unwrap());
                assert_eq!(
                    sessions.session_state(&token).await.unwrap(),
                    SessionState::Unknown
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_hundred_concurrent_updates_of_distinct_fields_all_land() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let token = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                update_distinct_fields_at_once(std::slice::from_ref(&sessions), &token, 100).await;
                let session = sessions.get_session(&token).await.unwrap().unwrap();
                assert_distinct_fields(&session.data, 100);
            }

            #[tokio::test]
            async fn rotate_keeps_the_session_under_a_new_token() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let old = sessions
                    .create_session("u", data("admin"), None)
                    .await
                    .unwrap();
                let before = sessions.get_session(&old).await.unwrap().unwrap();
                let new = sessions.rotate_session(&old).await.unwrap().expect("live");
                assert_ne!(new, old);
                let after = sessions.get_session(&new).await.unwrap().unwrap();
                assert!(sessions.get_session(&old).await.unwrap().is_none());
                assert_eq!(after.created_at, before.created_at);
                assert_eq!(after.data, before.data);
                let listed = sessions.get_user_sessions("u").await.unwrap();
                assert_eq!(listed.len(), 1, "the index follows the rotation");
            }

            #[tokio::test]
            async fn list_and_revoke_all_of_a_user() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let mut mine = Vec::new();
                for _ in 0..3 {
                    mine.push(
                        sessions
                            .create_session("alice", data("student"), None)
                            .await
                            .unwrap(),
                    );
                }
                let theirs = sessions
                    .create_session("bob", data("student"), None)
                    .await
                    .unwrap();
                let listed = sessions.get_user_sessions("alice").await.unwrap();
                assert_eq!(listed.len(), 3);
                assert_eq!(
                    listed.iter().map(|s| &s.id).collect::<HashSet<_>>().len(),
                    3
                );
                assert!(listed.iter().all(|s| s.session.user_id == "alice"));
                assert!(
                    sessions
                        .delete_user_session("alice", &listed[0].id)
                        .await
                        .unwrap()
                );
                assert!(
                    !sessions
                        .delete_user_session("bob", &listed[1].id)
                        .await
                        .unwrap(),
                    "not bob's"
                );
                assert_eq!(sessions.get_user_sessions("alice").await.unwrap().len(), 2);
                assert_eq!(sessions.delete_user_sessions("alice").await.unwrap(), 2);
                for token in &mine {
                    assert!(sessions.get_session(token).await.unwrap().is_none());
                }
                assert!(sessions.get_session(&theirs).await.unwrap().is_some());
                assert!(
                    sessions
                        .get_user_sessions("alice")
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revoke_all_racing_fifty_creates_leaves_no_hidden_session() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let creates: Vec<_> = (0..50)
                    .map(|_| {
                        let sessions = sessions.clone();
                        tokio::spawn(async move {
                            sessions
                                .create_session("racer", SessionData::new(), None)
                                .await
                        })
                    })
                    .collect();
                let revoked = sessions.delete_user_sessions("racer").await.unwrap();
                let mut tokens = Vec::new();
                for create in creates {
                    tokens.push(create.await.unwrap().unwrap());
                }
                let mut live = 0;
                for token in &tokens {
                    live += usize::from(sessions.get_session(token).await.unwrap().is_some());
                }
                assert_eq!(
                    live as u64 + revoked,
                    50,
                    "every session was either revoked or is live"
                );
                assert_eq!(
                    sessions.get_user_sessions("racer").await.unwrap().len(),
                    live,
                    "no live session is unindexed"
                );
                assert_eq!(
                    sessions.delete_user_sessions("racer").await.unwrap(),
                    live as u64
                );
                for token in &tokens {
                    assert!(sessions.get_session(token).await.unwrap().is_none());
                }
            }

            #[tokio::test]
            async fn the_per_user_cap_ends_the_oldest_session() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default().max_sessions_per_user(Some(2)));
                let oldest = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let short_lived = sessions
                    .create_session("u", SessionData::new(), Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let newest = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                assert!(
                    sessions.get_session(&oldest).await.unwrap().is_none(),
                    "the earliest created is signed out"
                );
                assert!(sessions.get_session(&short_lived).await.unwrap().is_some());
                assert!(sessions.get_session(&newest).await.unwrap().is_some());
                assert_eq!(sessions.get_user_sessions("u").await.unwrap().len(), 2);
            }

            #[tokio::test]
            async fn awkward_user_ids_and_field_names_read_back_unchanged() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default().touch_after(Duration::ZERO));
                let user = "a \"quoted\" \\ user/é/名\n\u{1}";
                let data = SessionData::new()
                    .with("we\"ird/ü\\", &serde_json::json!({"nested": [1, "two", null], "s": "</script>"}))
                    .and_then(|data| data.with("d:prefix", &"x"))
                    .and_then(|data| data.with("", &-1.5))
                    .expect("data");
                let token = sessions.create_session(user, data.clone(), None).await.unwrap();
                for _ in 0..2 {
                    let session = sessions.get_session(&token).await.unwrap().expect("live");
                    assert_eq!(session.user_id, user);
                    assert_eq!(session.data, data);
                }
            }

            #[tokio::test]
            async fn an_extension_survives_later_reads() {
                let f = $fixture().await;
                let sessions = f.manager(
                    SessionConfig::default()
                        .ttl(Duration::from_secs(1))
                        .touch_after(Duration::ZERO),
                );
                let token = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                let extended = sessions
                    .extend_session(&token, Duration::from_secs(1800))
                    .await
                    .unwrap()
                    .expect("live");
                for _ in 0..3 {
                    let read = sessions.get_session(&token).await.unwrap().expect("live");
                    assert!(read.expires_at >= extended, "a read moved the expiry back");
                }
                tokio::time::sleep(Duration::from_millis(1200)).await;
                assert!(
                    sessions.get_session(&token).await.unwrap().is_some(),
                    "alive past the 1 s ttl it was extended beyond"
                );
                let listed = sessions.get_user_sessions("u").await.unwrap();
                assert!(listed[0].session.expires_at >= extended);
            }

            #[tokio::test]
            async fn the_old_token_reaches_a_rotated_session_until_the_new_one_is_used() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let old = sessions
                    .create_session("u", data("admin"), None)
                    .await
                    .unwrap();
                let new = sessions.rotate_session(&old).await.unwrap().expect("live");
                let through_old = sessions.get_session(&old).await.unwrap().expect("grace");
                assert_eq!(through_old.data.role(), Some("admin"));
                sessions
                    .update_session(&old, SessionPatch::new().set("seen", &1).unwrap())
                    .await
                    .unwrap();
                let again = sessions.rotate_session(&old).await.unwrap().expect("retry");
                assert!(sessions.get_session(&new).await.unwrap().is_none());
                let session = sessions.get_session(&again).await.unwrap().expect("live");
                assert_eq!(session.data.get::<u32>("seen").unwrap(), Some(1));
                assert!(
                    sessions.get_session(&old).await.unwrap().is_none(),
                    "the new token's first use ends the old one"
                );
                assert_eq!(sessions.get_user_sessions("u").await.unwrap().len(), 1);
                assert!(sessions.delete_session(&again).await.unwrap());
                assert!(sessions.get_user_sessions("u").await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn logging_out_with_the_old_token_ends_a_rotated_session() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let old = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                let new = sessions.rotate_session(&old).await.unwrap().expect("live");
                assert!(sessions.delete_session(&old).await.unwrap());
                assert!(sessions.get_session(&new).await.unwrap().is_none());
                assert!(sessions.get_session(&old).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn without_a_grace_the_old_token_dies_at_the_rotation() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default().rotation_grace(Duration::ZERO));
                let old = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                let new = sessions.rotate_session(&old).await.unwrap().expect("live");
                assert!(sessions.get_session(&old).await.unwrap().is_none());
                assert!(sessions.rotate_session(&old).await.unwrap().is_none());
                assert!(sessions.get_session(&new).await.unwrap().is_some());
            }

            #[tokio::test]
            async fn the_grace_of_an_unused_rotation_ends() {
                let f = $fixture().await;
                let sessions =
                    f.manager(SessionConfig::default().rotation_grace(Duration::from_millis(300)));
                let old = sessions
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                let new = sessions.rotate_session(&old).await.unwrap().expect("live");
                tokio::time::sleep(Duration::from_millis(450)).await;
                assert!(sessions.get_session(&old).await.unwrap().is_none());
                assert!(sessions.get_session(&new).await.unwrap().is_some());
            }

            #[tokio::test]
            async fn stats_count_expired_until_cleanup() {
                let f = $fixture().await;
                let sessions = f.manager(short(400));
                sessions
                    .create_session("a", SessionData::new(), None)
                    .await
                    .unwrap();
                sessions
                    .create_session("a", SessionData::new(), None)
                    .await
                    .unwrap();
                sessions
                    .create_session("b", SessionData::new(), None)
                    .await
                    .unwrap();
                sessions
                    .create_session("c", SessionData::new(), Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
                let stats = sessions.get_session_stats().await.unwrap();
                assert_eq!(
                    (
                        stats.total_sessions,
                        stats.active_sessions,
                        stats.unique_users
                    ),
                    (4, 4, 3)
                );
                tokio::time::sleep(Duration::from_millis(600)).await;
                let stats = sessions.get_session_stats().await.unwrap();
                assert_eq!(
                    (
                        stats.total_sessions,
                        stats.active_sessions,
                        stats.expired_sessions,
                        stats.unique_users
                    ),
                    (4, 1, 3, 1)
                );
                assert_eq!(sessions.cleanup_expired().await.unwrap(), 3);
                let stats = sessions.get_session_stats().await.unwrap();
                assert_eq!((stats.total_sessions, stats.expired_sessions), (1, 0));
                assert_eq!(sessions.cleanup_expired().await.unwrap(), 0);
            }

            #[tokio::test]
            async fn stats_follow_every_change_exactly() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default().max_sessions_per_user(Some(2)));
                let counts = || async {
                    let stats = sessions.get_session_stats().await.unwrap();
                    (stats.total_sessions, stats.active_sessions, stats.unique_users)
                };
                let a1 = sessions.create_session("a", data("x"), None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let a2 = sessions.create_session("a", data("x"), None).await.unwrap();
                let b1 = sessions.create_session("b", data("x"), None).await.unwrap();
                assert_eq!(counts().await, (3, 3, 2));
                let a1 = sessions.rotate_session(&a1).await.unwrap().expect("live");
                assert_eq!(counts().await, (3, 3, 2), "a rotation changes no count");
                tokio::time::sleep(Duration::from_millis(5)).await;
                let a3 = sessions.create_session("a", data("x"), None).await.unwrap();
                assert_eq!(counts().await, (3, 3, 2), "the per-user cap ended the oldest");
                assert!(sessions.get_session(&a1).await.unwrap().is_none());
                assert!(sessions.delete_session(&b1).await.unwrap());
                assert_eq!(counts().await, (2, 2, 1), "a logout ends its user at once");
                assert!(!sessions.delete_session(&b1).await.unwrap());
                assert_eq!(counts().await, (2, 2, 1), "twice changes nothing");
                assert_eq!(sessions.delete_user_sessions("a").await.unwrap(), 2);
                assert_eq!(counts().await, (0, 0, 0));
                assert!(sessions.get_session(&a2).await.unwrap().is_none());
                assert!(sessions.get_session(&a3).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn a_touched_or_extended_session_stays_active_in_the_stats() {
                let f = $fixture().await;
                let sessions = f.manager(
                    SessionConfig::default()
                        .ttl(Duration::from_millis(2000))
                        .touch_after(Duration::from_millis(500)),
                );
                let touched = sessions.create_session("t", data("x"), None).await.unwrap();
                let extended = sessions.create_session("e", data("x"), None).await.unwrap();
                sessions.create_session("idle", data("x"), None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1000)).await;
                assert!(sessions.get_session(&touched).await.unwrap().is_some());
                sessions
                    .extend_session(&extended, Duration::from_secs(5))
                    .await
                    .unwrap()
                    .expect("live");
                tokio::time::sleep(Duration::from_millis(1400)).await;
                let stats = sessions.get_session_stats().await.unwrap();
                assert_eq!(
                    (stats.total_sessions, stats.active_sessions, stats.expired_sessions, stats.unique_users),
                    (3, 2, 1, 2),
                    "the idle session expired, the others slid"
                );
                assert_eq!(sessions.cleanup_expired().await.unwrap(), 1);
                assert_eq!(sessions.get_session_stats().await.unwrap().total_sessions, 2);
            }

            /// Stats read while sessions come and go count every session that lived through
            /// the whole read and none that lived through none of it.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stats_stay_within_bounds_under_churn() {
                use std::sync::Arc;
                use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                for user in 0..10 {
                    sessions.create_session(&format!("stable-{user}"), data("x"), None).await.unwrap();
                }
                // creates started and ended, deletes started and ended
                let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
                let stop = Arc::new(AtomicBool::new(false));
                let churners: Vec<_> = (0..4)
                    .map(|task| {
                        let (sessions, counters, stop) = (sessions.clone(), Arc::clone(&counters), Arc::clone(&stop));
                        tokio::spawn(async move {
                            let mut i = 0;
                            while !stop.load(SeqCst) {
                                counters[0].fetch_add(1, SeqCst);
                                let token = sessions
                                    .create_session(&format!("churn-{task}-{i}"), data("x"), None)
                                    .await
                                    .unwrap();
                                counters[1].fetch_add(1, SeqCst);
                                counters[2].fetch_add(1, SeqCst);
                                assert!(sessions.delete_session(&token).await.unwrap());
                                counters[3].fetch_add(1, SeqCst);
                                i += 1;
                            }
                        })
                    })
                    .collect();
                let mut reads = 0;
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while reads < 30 || counters[3].load(SeqCst) < 50 {
                    assert!(std::time::Instant::now() < deadline, "the churn made no progress");
                    tokio::task::yield_now().await;
                    let (created, deleted) = (counters[1].load(SeqCst), counters[3].load(SeqCst));
                    let stats = sessions.get_session_stats().await.unwrap();
                    let (started, deleting) = (counters[0].load(SeqCst), counters[2].load(SeqCst));
                    let lower = 10 + created.saturating_sub(deleting);
                    let upper = 10 + started - deleted;
                    for (what, value) in [("active", stats.active_sessions), ("users", stats.unique_users), ("total", stats.total_sessions)] {
                        assert!(
                            (lower..=upper).contains(&value),
                            "{what} {value} outside [{lower}, {upper}]"
                        );
                    }
                    reads += 1;
                }
                stop.store(true, SeqCst);
                for churner in churners {
                    churner.await.unwrap();
                }
                assert!(counters[3].load(SeqCst) > 0, "the churn ran");
                let stats = sessions.get_session_stats().await.unwrap();
                assert_eq!((stats.total_sessions, stats.active_sessions, stats.unique_users), (10, 10, 10));
            }

            #[tokio::test]
            async fn spawned_cleanup_prunes_periodically() {
                let f = $fixture().await;
                let sessions = f.manager(short(200));
                sessions
                    .create_session("a", SessionData::new(), None)
                    .await
                    .unwrap();
                let task = sessions.spawn_cleanup(Duration::from_millis(100));
                tokio::time::sleep(Duration::from_millis(600)).await;
                task.abort();
                assert_eq!(
                    sessions.get_session_stats().await.unwrap().total_sessions,
                    0
                );
            }

            #[tokio::test]
            async fn a_token_never_reads_another_users_session() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                let alice = sessions
                    .create_session("alice", data("a"), None)
                    .await
                    .unwrap();
                let bob = sessions
                    .create_session("bob", data("b"), None)
                    .await
                    .unwrap();
                let (alice, bob) = (alice.expose(), bob.expose());
                let forged = format!("{}{}", &alice[..38], &bob[38..]);
                assert!(sessions.get_session(&forged).await.unwrap().is_none());
                let forged = format!("{}{}", &bob[..38], &alice[38..]);
                assert!(sessions.get_session(&forged).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn malformed_tokens_are_errors_before_the_store() {
                let f = $fixture().await;
                let sessions = f.manager(SessionConfig::default());
                if let Some(server) = &f.server {
                    server.kill().unwrap();
                }
                let huge = "x".repeat(1 << 20);
                let wrong_alphabet = format!("cms1_{}_{}", "0".repeat(32), "!".repeat(43));
                let repeated = "cms1_".repeat(17);
                for token in [
                    "",
                    "cms1_",
                    "not-a-token",
                    &huge,
                    &wrong_alphabet,
                    &repeated[..81],
                ] {
                    let err = sessions.get_session(token).await.unwrap_err();
                    assert!(matches!(err, Error::InvalidToken { .. }), "{err}");
                    assert!(!err.is_store_failure());
                }
            }

            #[tokio::test]
            async fn a_different_secret_knows_no_session() {
                let f = $fixture().await;
                let first = f.manager(SessionConfig::default().secret("one"));
                let second = f.manager(SessionConfig::default().secret("two"));
                let token = first
                    .create_session("u", SessionData::new(), None)
                    .await
                    .unwrap();
                assert!(first.get_session(&token).await.unwrap().is_some());
                assert!(second.get_session(&token).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn the_service_maps_states_to_typed_errors() {
                let f = $fixture().await;
                let service = SessionService::new(f.manager(short(400)));
                let token = service
                    .create_authenticated_session(
                        "42",
                        "teacher",
                        SessionData::new().with("department", "Math").unwrap(),
                    )
                    .await
                    .unwrap();
                let session = service.validate_session(token.expose()).await.unwrap();
                assert_eq!(session.data.role(), Some("teacher"));
                assert_eq!(
                    session.data.get::<String>("department").unwrap().as_deref(),
                    Some("Math")
                );
                assert!(!service.is_session_expired(token.expose()).await.unwrap());
                let err = service.validate_session("garbage").await.unwrap_err();
                assert!(matches!(err, ValidationError::Invalid) && err.http_status() == 401);
                let until = service
                    .extend_user_session(token.expose(), 1)
                    .await
                    .unwrap()
                    .unwrap();
                assert!(until > SystemTime::now() + Duration::from_secs(50));
                let other = service
                    .create_authenticated_session("43", "student", SessionData::new())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(600)).await;
                let err = service.validate_session(other.expose()).await.unwrap_err();
                assert!(matches!(err, ValidationError::Expired), "{err:?}");
                assert!(service.is_session_expired(other.expose()).await.unwrap());
                assert!(
                    service.validate_session(token.expose()).await.is_ok(),
                    "the extended one lives"
                );
            }

            /// The README's rolling rotation, step by step, with a manager per deployed key
            /// list on one store: no session is lost at any step, and a session used after
            /// the new key seals is sealed again with it, so the old key can go.
            #[tokio::test]
            async fn a_rolling_key_rotation_loses_no_session() {
                let f = $fixture().await;
                let on = |keys: &[[u8; 32]]| {
                    f.manager(
                        SessionConfig::default()
                            .secret("rotation")
                            .encryption(EncryptionKeys::new(keys.iter().copied())),
                    )
                };
                let (old, new) = ([1u8; 32], [2u8; 32]);
                let role = |sessions: &SessionManager, token: &SessionToken| {
                    let (sessions, token) = (sessions.clone(), token.clone());
                    async move {
                        sessions
                            .get_session(&token)
                            .await
                            .map(|session| {
                                session.map(|s| s.data.get::<String>("role").unwrap().unwrap())
                            })
                    }
                };
                // before: every instance seals with the old key
                let before = on(&[old]);
                let s0 = before.create_session("ada", data("teacher"), None).await.unwrap();
                // step 1: the new key is added, second (it opens, it does not seal)
                let step1 = on(&[old, new]);
                assert_eq!(role(&step1, &s0).await.unwrap().as_deref(), Some("teacher"));
                let s1 = step1.create_session("bob", data("student"), None).await.unwrap();
                assert_eq!(role(&before, &s1).await.unwrap().as_deref(), Some("student"));
                // step 2 (once every instance runs step 1): the new key first, it seals.
                // While it rolls out, instances of both steps read every session (an
                // instance of step 1 seals what it reads under its first key, the old one)
                let step2 = on(&[new, old]);
                let s2 = step2.create_session("cy", data("admin"), None).await.unwrap();
                assert_eq!(role(&step1, &s2).await.unwrap().as_deref(), Some("admin"));
                assert_eq!(role(&step2, &s0).await.unwrap().as_deref(), Some("teacher"));
                assert_eq!(role(&step1, &s0).await.unwrap().as_deref(), Some("teacher"));
                // every instance runs step 2: what they read is sealed again with the new key
                for token in [&s0, &s2] {
                    assert!(role(&step2, token).await.unwrap().is_some());
                }
                // step 3 (after the idle timeout at step 2): the old key dropped. A session
                // used since reads; one not used since (in production it has expired) is an
                // error, kept (not ended), until an instance of step 2 reads it
                let step3 = on(&[new]);
                assert_eq!(role(&step3, &s0).await.unwrap().as_deref(), Some("teacher"));
                assert_eq!(role(&step3, &s2).await.unwrap().as_deref(), Some("admin"));
                let err = role(&step3, &s1).await.expect_err("sealed under the dropped key");
                assert!(
                    matches!(err, Error::Unreadable { .. }) && err.is_store_failure(),
                    "{err}"
                );
                assert_eq!(role(&step2, &s1).await.unwrap().as_deref(), Some("student"));
                assert_eq!(role(&step3, &s1).await.unwrap().as_deref(), Some("student"));
                // a patch written meanwhile by an instance of step 1 is never undone by
                // another instance sealing the old value again
                let s4 = before.create_session("dee", data("guest"), None).await.unwrap();
                assert!(
                    step1
                        .update_session(&s4, SessionPatch::new().set("role", "owner").unwrap())
                        .await
                        .unwrap()
                );
                assert_eq!(role(&step2, &s4).await.unwrap().as_deref(), Some("owner"));
                assert_eq!(role(&step3, &s4).await.unwrap().as_deref(), Some("owner"));
            }

            /// `CACHE_ENCRYPTION_FORMAT=2` switched on in a rolling deploy, with instances of
            /// both formats on one store (every one runs this release): each reads and
            /// updates the sessions of the other, through rotations and a later key
            /// rotation, and no session is lost. An instance that never read a session
            /// still seals its update in the session's own format.
            #[tokio::test]
            async fn switching_the_format_in_a_rolling_deploy_loses_no_session() {
                use cache_core::encryption::SealFormat;
                let f = $fixture().await;
                let (old, new) = ([1u8; 32], [2u8; 32]);
                let on = |keys: &[[u8; 32]], format: SealFormat| {
                    f.manager(
                        SessionConfig::default().secret("format").encryption(
                            EncryptionKeys::new(keys.iter().copied())
                                .map(|keys| keys.with_format(format)),
                        ),
                    )
                };
                let role = |sessions: SessionManager, token: SessionToken| async move {
                    sessions
                        .get_session(&token)
                        .await
                        .unwrap()
                        .map(|s| s.data.get::<String>("role").unwrap().unwrap())
                };
                let set = |sessions: SessionManager, token: SessionToken, role: &'static str| async move {
                    let patch = SessionPatch::new().set("role", role).unwrap();
                    assert!(sessions.update_session(&token, patch).await.unwrap(), "{role}");
                };
                let v1 = || on(&[old], SealFormat::V1);
                let v2 = || on(&[old], SealFormat::V2);
                // a fresh manager for each step: none has read the session before
                let unbound = v1().create_session("ada", data("teacher"), None).await.unwrap();
                let bound = v2().create_session("bob", data("student"), None).await.unwrap();
                for token in [&unbound, &bound] {
                    for (name, writer) in [("v1", v1()), ("v2", v2())] {
                        set(writer, token.clone(), name).await;
                        assert_eq!(role(v1(), token.clone()).await.as_deref(), Some(name));
                        assert_eq!(role(v2(), token.clone()).await.as_deref(), Some(name));
                    }
                }
                // a manager that has read the session remembers its binding
                let reader = v1();
                assert!(reader.get_session(&bound).await.unwrap().is_some());
                set(reader.clone(), bound.clone(), "remembered").await;
                assert_eq!(role(v2(), bound.clone()).await.as_deref(), Some("remembered"));
                // a rotated session keeps its binding, whichever format rotates and writes
                let mut token = bound;
                for (rotator, writer) in [(v1(), v2()), (v2(), v1())] {
                    // the rotator has read the session: it carries the binding over
                    assert!(rotator.get_session(&token).await.unwrap().is_some());
                    let rotated = rotator.rotate_session(&token).await.unwrap().expect("live");
                    set(writer, rotated.clone(), "rotated").await;
                    set(rotator, rotated.clone(), "by the rotator").await;
                    for reader in [v1(), v2()] {
                        assert_eq!(
                            role(reader, rotated.clone()).await.as_deref(),
                            Some("by the rotator")
                        );
                    }
                    token = rotated;
                }
                // a key rotation seals both sessions again under the new key, each in its
                // own format, and the old key can go
                let both = on(&[new, old], SealFormat::V2);
                for token in [&unbound, &token] {
                    assert!(both.get_session(token).await.unwrap().is_some());
                }
                let only_new = on(&[new], SealFormat::V1);
                assert_eq!(role(only_new.clone(), unbound.clone()).await.as_deref(), Some("v2"));
                set(only_new.clone(), token.clone(), "after").await;
                let newest = on(&[new], SealFormat::V2);
                assert_eq!(role(newest, token.clone()).await.as_deref(), Some("after"));
            }

            /// Concurrent updates of a bound session (format 2) by managers of both formats
            /// that have not seen it: each reads the session's `sid` once (or finds it
            /// remembered by a concurrent update), every field lands sealed to it, and the
            /// session reads back whole from every manager.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_bound_updates_from_cold_managers_all_land() {
                use cache_core::encryption::SealFormat;
                let f = $fixture().await;
                let config = |format: SealFormat| {
                    SessionConfig::default().secret("bound").encryption(
                            EncryptionKeys::new([[1u8; 32]])
                                .map(|keys| keys.with_format(format)),
                        )
                };
                let token = f
                    .manager(config(SealFormat::V2))
                    .create_session("u", data("teacher"), None)
                    .await
                    .unwrap();
                let managers: Vec<SessionManager> = (0..8)
                    .map(|i| {
                        let format = if i % 2 == 0 { SealFormat::V1 } else { SealFormat::V2 };
                        f.manager(config(format))
                    })
                    .collect();
                update_distinct_fields_at_once(&managers, &token, 64).await;
                for sessions in &managers {
                    let session = sessions.get_session(&token).await.unwrap().expect("live");
                    assert_eq!(session.data.role(), Some("teacher"));
                    assert_distinct_fields(&session.data, 64);
                }
            }

            /// Readers sealing fields again under the new key race a writer that keeps
            /// sealing under the old one: the re-sealing is a compare-and-set, so no write
            /// is undone.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sealing_again_never_undoes_a_concurrent_write() {
                let f = $fixture().await;
                let config = SessionConfig::default()
                    .secret("rotation")
                    .touch_after(Duration::ZERO);
                let (old, new) = ([1u8; 32], [2u8; 32]);
                let writer = f.manager(config.clone().encryption(EncryptionKeys::new([old, new])));
                let reader = f.manager(config.encryption(EncryptionKeys::new([new, old])));
                let token = writer.create_session("ada", data("0"), None).await.unwrap();
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let readers: Vec<_> = (0..2)
                    .map(|_| {
                        let (reader, token, stop) = (reader.clone(), token.clone(), stop.clone());
                        tokio::spawn(async move {
                            let mut reads = 0u64;
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                reader.get_session(&token).await.unwrap().expect("live");
                                reads += 1;
                            }
                            reads
                        })
                    })
                    .collect();
                let mut undone = 0;
                for version in 1..=300u32 {
                    let patch = SessionPatch::new().set("role", &version.to_string()).unwrap();
                    assert!(writer.update_session(&token, patch).await.unwrap());
                    tokio::task::yield_now().await;
                    let session = writer.get_session(&token).await.unwrap().expect("live");
                    let role = session.data.get::<String>("role").unwrap().unwrap();
                    if role != version.to_string() {
                        undone += 1;
                    }
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let mut reads = 0;
                for reader in readers {
                    reads += reader.await.unwrap();
                }
                assert!(reads > 0);
                assert_eq!(undone, 0, "writes undone by re-sealing, of 300 ({reads} reads)");
            }

            /// The wrong order: an instance seals with a key another instance does not have
            /// yet. That instance fails closed on such sessions (an error, a 503) and ends
            /// none of them; an instance without encryption gets the same error, never the
            /// ciphertext as a value.
            #[tokio::test]
            async fn a_reader_without_the_key_fails_closed_and_ends_nothing() {
                let f = $fixture().await;
                let config = SessionConfig::default().secret("rotation");
                let (old, new) = ([1u8; 32], [2u8; 32]);
                let ahead = f.manager(config.clone().encryption(EncryptionKeys::new([new, old])));
                let behind = f.manager(config.clone().encryption(EncryptionKeys::new([old])));
                let plain = f.manager(config.clone());
                let token = ahead.create_session("ada", data("teacher"), None).await.unwrap();
                for (who, sessions) in [("behind", &behind), ("unencrypted", &plain)] {
                    for _ in 0..3 {
                        let err = sessions.get_session(&token).await.expect_err(who);
                        assert!(
                            matches!(err, Error::Unreadable { .. }) && err.is_store_failure(),
                            "{who}: {err}"
                        );
                        let err = sessions.session_state(&token).await.expect_err(who);
                        assert!(err.is_store_failure(), "{who}: {err}");
                        assert!(sessions.get_user_sessions("ada").await.is_err(), "{who}");
                    }
                }
                let session = ahead.get_session(&token).await.unwrap().expect("kept");
                assert_eq!(
                    session.data.get::<String>("role").unwrap().as_deref(),
                    Some("teacher")
                );
                // plaintext where sealed data is expected is not trusted (it binds no user
                // or field): unknown to the encrypting manager, and left in place
                let written_plain = plain.create_session("bob", data("admin"), None).await.unwrap();
                assert!(ahead.get_session(&written_plain).await.unwrap().is_none());
                assert!(plain.get_session(&written_plain).await.unwrap().is_some());
            }
        }
    };
}

session_suite!(redis, redis_fixture);
session_suite!(memory, memory_fixture);
session_suite!(cluster, cluster_fixture);

#[tokio::test]
async fn redis_down_is_an_error_never_a_session_or_none() {
    let f = redis_fixture().await;
    let service = SessionService::new(f.manager(SessionConfig::default()));
    let token = service
        .create_authenticated_session("u", "student", SessionData::new())
        .await
        .unwrap();
    f.server.as_ref().unwrap().kill().unwrap();
    let sessions = service.manager();
    let err = sessions.get_session(&token).await.unwrap_err();
    assert!(err.is_store_failure(), "{err}");
    let err = service.validate_session(token.expose()).await.unwrap_err();
    assert_eq!(err.http_status(), 503);
    assert!(service.is_session_expired(token.expose()).await.is_err());
    assert!(
        sessions
            .create_session("u", SessionData::new(), None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn no_raw_token_is_stored_anywhere() {
    let f = redis_fixture().await;
    let sessions = f.manager(SessionConfig::default().max_sessions_per_user(Some(10)));
    let mut secrets = Vec::new();
    for user in ["alice", "bob", "carol"] {
        for _ in 0..3 {
            let token = sessions
                .create_session(user, data("student"), None)
                .await
                .unwrap();
            let rotated = sessions.rotate_session(&token).await.unwrap().unwrap();
            secrets.push(token.expose()[38..].to_owned());
            secrets.push(rotated.expose()[38..].to_owned());
            sessions
                .update_session(&rotated, SessionPatch::new().set("seen", &1).unwrap())
                .await
                .unwrap();
        }
    }
    let client = ::redis::Client::open(f.server.as_ref().unwrap().url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut redis)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(!keys.is_empty());
    for key in &keys {
        stored.push(key.clone().into_bytes());
        let kind: String = ::redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => ::redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap(),
            "zset" => ::redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut redis)
                .await
                .unwrap(),
            "string" => vec![
                ::redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut redis)
                    .await
                    .unwrap(),
            ],
            other => panic!("unexpected {other} at {key}"),
        };
        stored.extend(values);
    }
    for secret in &secrets {
        for bytes in &stored {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a token secret is stored"
            );
        }
    }
}

#[tokio::test]
async fn tokens_round_trip_through_their_text() {
    let sessions = SessionManager::new(MemoryStore::new(), SessionConfig::default());
    let token = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .unwrap();
    let parsed: SessionToken = token.expose().parse().unwrap();
    assert_eq!(parsed, token);
    assert!(
        sessions
            .get_session(parsed.expose())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn statistics_and_cleanup_are_one_script_per_server() {
    let f = redis_fixture().await;
    let sessions = f.manager(SessionConfig::default());
    for user in 0..50 {
        sessions
            .create_session(&format!("user-{user}"), data("x"), None)
            .await
            .unwrap();
    }
    let server = f.server.as_ref().expect("redis");
    let (evals, zcounts) = (
        server.command_calls("eval").unwrap(),
        server.command_calls("zcount").unwrap(),
    );
    assert_eq!(sessions.get_session_stats().await.unwrap().unique_users, 50);
    sessions.cleanup_expired().await.unwrap();
    assert_eq!(server.command_calls("eval").unwrap() - evals, 2);
    assert_eq!(
        server.command_calls("zcount").unwrap() - zcounts,
        2,
        "one ledger read (by the script), no user read one by one"
    );
}

#[tokio::test]
async fn on_a_cluster_statistics_are_one_script_per_node() {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect");
    let sessions = SessionManager::new(store, SessionConfig::default());
    for user in 0..200 {
        sessions
            .create_session(&format!("user-{user}"), data("x"), None)
            .await
            .unwrap();
    }
    let evals = |cluster: &RedisCluster| cluster.command_calls("eval").expect("commandstats");
    let before = evals(&cluster);
    let stats = sessions.get_session_stats().await.unwrap();
    assert_eq!((stats.active_sessions, stats.unique_users), (200, 200));
    assert_eq!(
        evals(&cluster) - before,
        cluster.ports().len() as u64,
        "one script per primary, not one per slot"
    );
}

/// `calls` of `command` in `INFO commandstats`.
async fn calls(redis: &mut ::redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn each_state_change_is_one_script_call() {
    let f = redis_fixture().await;
    let sessions = f.manager(SessionConfig::default().touch_after(Duration::ZERO));
    let client = ::redis::Client::open(f.server.as_ref().unwrap().url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let warm = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .unwrap();
    sessions.rotate_session(&warm).await.unwrap();
    sessions.get_session(&warm).await.unwrap();
    sessions
        .update_session(&warm, SessionPatch::new().set("a", &1).unwrap())
        .await
        .unwrap();
    sessions
        .extend_session(&warm, Duration::from_secs(1))
        .await
        .unwrap();
    sessions.delete_session(&warm).await.unwrap();
    sessions.get_user_sessions("u").await.unwrap();
    sessions.delete_user_sessions("nobody").await.unwrap();

    let token = sessions
        .create_session("u", SessionData::new(), None)
        .await
        .unwrap();
    let patch = SessionPatch::new().set("a", &1).unwrap();
    let steps: Vec<(&str, u64)> = vec![
        ("get (with touch)", {
            let before = calls(&mut redis, "evalsha").await;
            sessions.get_session(&token).await.unwrap();
            calls(&mut redis, "evalsha").await - before
        }),
        ("update", {
            let before = calls(&mut redis, "evalsha").await;
            sessions.update_session(&token, patch).await.unwrap();
            calls(&mut redis, "evalsha").await - before
        }),
        ("extend", {
            let before = calls(&mut redis, "evalsha").await;
            sessions
                .extend_session(&token, Duration::from_secs(60))
                .await
                .unwrap();
            calls(&mut redis, "evalsha").await - before
        }),
        ("rotate", {
            let before = calls(&mut redis, "evalsha").await;
            let token = sessions.rotate_session(&token).await.unwrap().unwrap();
            let n = calls(&mut redis, "evalsha").await - before;
            sessions.delete_session(&token).await.unwrap();
            n
        }),
        ("revoke all", {
            let before = calls(&mut redis, "evalsha").await;
            sessions.delete_user_sessions("u").await.unwrap();
            calls(&mut redis, "evalsha").await - before
        }),
    ];
    for (operation, scripts) in steps {
        assert_eq!(scripts, 1, "{operation} ran {scripts} scripts");
    }
}

/// With sessions bound to their sid (`CACHE_ENCRYPTION_FORMAT=2`), an update seals to the
/// session's sid without reading it when this manager created, read or rotated it; a
/// manager that never saw the session reads it once.
#[tokio::test]
async fn a_bound_update_reads_the_session_at_most_once() {
    use cache_core::encryption::SealFormat;
    let f = redis_fixture().await;
    let config = SessionConfig::default()
        .secret("bound")
        .encryption(EncryptionKeys::new([[1u8; 32]]).map(|keys| keys.with_format(SealFormat::V2)));
    let (creator, other) = (f.manager(config.clone()), f.manager(config));
    let client = ::redis::Client::open(f.server.as_ref().unwrap().url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    // the server learns each script once
    let warm = creator.create_session("w", data("x"), None).await.unwrap();
    let patch = SessionPatch::new().set("a", &0).unwrap();
    creator.update_session(&warm, patch).await.unwrap();
    creator.get_session(&warm).await.unwrap();
    creator.rotate_session(&warm).await.unwrap();
    let token = creator
        .create_session("u", data("teacher"), None)
        .await
        .unwrap();
    let mut scripts = Vec::new();
    for (who, sessions, patch) in [
        (
            "the creator",
            &creator,
            SessionPatch::new().set("a", &1).unwrap(),
        ),
        (
            "a manager new to it",
            &other,
            SessionPatch::new().set("a", &2).unwrap(),
        ),
        (
            "that manager again",
            &other,
            SessionPatch::new().set("a", &3).unwrap(),
        ),
        (
            "a removal",
            &f.manager(creator.config().clone()),
            SessionPatch::new().remove("a"),
        ),
    ] {
        let before = calls(&mut redis, "evalsha").await;
        assert!(
            sessions.update_session(&token, patch).await.unwrap(),
            "{who}"
        );
        scripts.push((who, calls(&mut redis, "evalsha").await - before));
    }
    let rotated = other.rotate_session(&token).await.unwrap().unwrap();
    let before = calls(&mut redis, "evalsha").await;
    let patch = SessionPatch::new().set("a", &4).unwrap();
    assert!(other.update_session(&rotated, patch).await.unwrap());
    scripts.push(("the rotator", calls(&mut redis, "evalsha").await - before));
    assert_eq!(
        scripts,
        [
            ("the creator", 1),
            ("a manager new to it", 2),
            ("that manager again", 1),
            ("a removal", 1),
            ("the rotator", 1)
        ]
    );
    let session = creator.get_session(&rotated).await.unwrap().unwrap();
    assert_eq!(session.data.get::<u32>("a").unwrap(), Some(4));
    assert_eq!(session.data.role(), Some("teacher"));
}

#[tokio::test]
async fn a_rotation_timed_out_on_a_frozen_server_leaves_a_working_token() {
    let server = RedisServer::start_private().expect("start redis-server");
    let mut config = server.config();
    config.command_timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&config).await.expect("connect");
    let sessions = SessionManager::new(store, SessionConfig::default());
    let warm = sessions
        .create_session("warm", SessionData::new(), None)
        .await
        .unwrap();
    sessions.rotate_session(&warm).await.unwrap();
    let old = sessions
        .create_session("u", data("student"), None)
        .await
        .unwrap();
    let before = sessions.get_user_sessions("u").await.unwrap()[0].id.clone();

    server.pause().unwrap();
    let err = sessions.rotate_session(&old).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    server.resume().unwrap();

    let mut ran_later = false;
    for _ in 0..100 {
        if let Ok(listed) = sessions.get_user_sessions("u").await
            && listed.len() == 1
            && listed[0].id != before
        {
            ran_later = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ran_later,
        "the timed-out rotation ran once the server answered"
    );
    let session = sessions
        .get_session(&old)
        .await
        .unwrap()
        .expect("the caller's old token still reaches the session");
    assert_eq!(session.data.role(), Some("student"));
    let fresh = sessions
        .rotate_session(&old)
        .await
        .unwrap()
        .expect("rotating again hands out a working token");
    assert!(sessions.get_session(&fresh).await.unwrap().is_some());
    assert!(sessions.get_session(&old).await.unwrap().is_none());
}

#[tokio::test]
async fn ten_thousand_cache_writes_to_a_small_memory_store_end_no_session() {
    let store = MemoryStore::with_max_bytes(128 * 1024);
    let sessions = SessionManager::new(store.clone(), SessionConfig::default());
    let mut tokens = Vec::new();
    for user in 0..200 {
        tokens.push(
            sessions
                .create_session(&format!("user-{user}"), data("student"), None)
                .await
                .unwrap(),
        );
    }
    let cache = cache_core::Cache::builder(store).build();
    for i in 0..10_000 {
        cache
            .set(
                &format!("cached:{i}"),
                &vec![7u8; 256],
                cache_core::Ttl::Default,
            )
            .await
            .unwrap();
    }
    for token in &tokens {
        assert!(sessions.get_session(token).await.unwrap().is_some());
    }
    assert_eq!(
        sessions.get_session_stats().await.unwrap().active_sessions,
        200
    );
}

#[tokio::test]
async fn a_session_copied_under_another_users_token_is_not_theirs() {
    let f = redis_fixture().await;
    let sessions = f.manager(SessionConfig::default().secret("server secret"));
    let victim = sessions
        .create_session("victim", data("admin"), None)
        .await
        .unwrap();
    let attacker = sessions
        .create_session("attacker", data("student"), None)
        .await
        .unwrap();
    let from = session_key(&sessions, "victim", &victim).await;
    let to = session_key(&sessions, "attacker", &attacker).await;
    let client = ::redis::Client::open(f.server.as_ref().unwrap().url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<(String, Vec<u8>)> = ::redis::cmd("HGETALL")
        .arg(&from)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!fields.is_empty());
    let mut copy = ::redis::cmd("HSET");
    copy.arg(&to);
    for (field, value) in &fields {
        copy.arg(field).arg(value);
    }
    let _: () = copy.query_async(&mut redis).await.unwrap();
    for _ in 0..2 {
        assert!(
            sessions.get_session(&attacker).await.unwrap().is_none(),
            "a store writer turned their own token into the victim's session"
        );
    }
    assert!(sessions.get_session(&victim).await.unwrap().is_some());
}

/// The Redis key of the user's only session (default prefix).
async fn session_key(sessions: &SessionManager, user: &str, token: &SessionToken) -> String {
    let id = sessions.get_user_sessions(user).await.expect("list")[0]
        .id
        .clone();
    format!("session:{{{}}}:s:{id}", &token.expose()[5..37])
}
