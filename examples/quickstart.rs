//! The shortest useful cachemere program: a cached function, an invalidating write, a
//! multi-key read and a session.
//!
//! ```text
//! cargo run --example quickstart                                    # in-process store
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example quickstart  # Redis
//! ```
//!
//! With `REDIS_URL` pointing at a server that does not answer, it says so on one line and
//! carries on with the in-process store.

use std::time::{Duration, Instant};

use cachemere::cache_session::{
    SessionConfig, SessionData, SessionManager, SessionService, SessionStore,
};
use cachemere::error::one_line;
use cachemere::{Cache, Config, MemoryStore, RedisStore, cache_result, invalidate_cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    user_id: u64,
    name: String,
    scores: Vec<u32>,
}

/// A slow query, cached for an hour under `user:profile:<user_id>`.
#[cache_result("user:profile:{user_id}", expire = 3600)]
async fn load_profile(user_id: u64) -> Profile {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Profile {
        user_id,
        name: "Ada".into(),
        scores: vec![85, 92, 78],
    }
}

/// A write; once it returns, the cached profile is gone.
#[invalidate_cache("user:profile:{user_id}")]
async fn rename(user_id: u64, name: &str) {
    println!("renamed user {user_id} to {name}");
}

/// Redis when `REDIS_URL` is set and answers, else the in-process store.
async fn stores(config: &Config) -> (Cache, SessionStore) {
    if config.redis_url.is_some() {
        match RedisStore::connect(config).await {
            Ok(store) => {
                return (
                    Cache::builder(store.clone()).config(config).build(),
                    store.into(),
                );
            }
            Err(err) => eprintln!(
                "warning: Redis unreachable ({}); using the in-process store",
                one_line(&err)
            ),
        }
    }
    let store = MemoryStore::new();
    (
        Cache::builder(store.clone()).config(config).build(),
        store.into(),
    )
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let (cache, session_store) = stores(&config).await;
    println!("store: {}", cache.store().backend());
    Cache::set_global(cache.clone());
    cache.delete("user:profile:42").await?;

    for attempt in ["first", "second"] {
        let started = Instant::now();
        let profile = load_profile(42).await;
        println!(
            "{attempt} read of user 42 ({}): {:.1} ms",
            profile.name,
            millis(started)
        );
    }
    rename(42, "Ada Lovelace").await;
    let started = Instant::now();
    load_profile(42).await;
    println!(
        "read after the write: {:.1} ms (recomputed)",
        millis(started)
    );

    load_profile(1).await;
    let keys = ["user:profile:1", "user:profile:42", "user:profile:2"];
    let started = Instant::now();
    let found = cache.get_multi::<Profile, _>(&keys).await?;
    println!(
        "get_multi of {} keys in one round trip: {} cached, {:.1} ms",
        keys.len(),
        found.iter().flatten().count(),
        millis(started)
    );

    let sessions = SessionService::new(SessionManager::new(
        session_store,
        SessionConfig::from_config(&config),
    ));
    let token = sessions
        .create_authenticated_session("42", "student", SessionData::new())
        .await?;
    let session = sessions.validate_session(token.expose()).await?;
    println!(
        "session for user {} ({}), token {token}",
        session.user_id,
        session.data.role().unwrap_or("no role")
    );
    sessions.manager().delete_session(&token).await?;

    let stats = cache.stats();
    println!(
        "hits: {}, misses: {}, sets: {}, errors: {}",
        stats.hits, stats.misses, stats.sets, stats.errors
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
