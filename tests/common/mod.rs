//! Steps several integration test binaries share.

use std::time::{Duration, Instant};

use cachemere::cache_session::{SessionConfig, SessionData, SessionManager};
use cachemere::{Cache, RedisStore, Ttl};

/// On `store`: a cache whose local tier subscribes (within 10 s), a value written and read
/// back through it, and a session created and read back.
pub(crate) async fn cache_local_tier_and_sessions_work(store: RedisStore) {
    let cache = Cache::builder(store.clone())
        .local_cache(1 << 20, Duration::from_secs(60))
        .build();
    let started = Instant::now();
    while cache.local_cache_active() != Some(true) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the local tier's subscription never came up on {}",
            store.address()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache.set("k", &7u32, Ttl::Long).await.expect("set");
    assert_eq!(cache.get::<u32>("k").await.expect("get"), Some(7));

    let sessions = SessionManager::new(store, SessionConfig::default().secret("shared step"));
    let token = sessions
        .create_session("42", SessionData::new(), None)
        .await
        .expect("create a session");
    let session = sessions.get_session(token.expose()).await.expect("read");
    assert_eq!(session.map(|s| s.user_id), Some("42".to_owned()));
}
