//! The shortest useful cachemere program.
//!
//! ```text
//! cargo run --example quickstart                                    # in-process store
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example quickstart  # Redis
//! ```
//!
//! With `REDIS_URL` pointing at a server that does not answer, it says so on one line and
//! carries on with the in-process store.

use std::time::{Duration, Instant};

use cachemere::error::one_line;
use cachemere::{Cache, Config, MemoryStore, Ttl};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    user_id: u64,
    name: String,
    scores: Vec<u32>,
}

async fn load_profile_from_database(user_id: u64) -> Profile {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Profile {
        user_id,
        name: "Ada".into(),
        scores: vec![85, 92, 78],
    }
}

async fn cache_for(config: &Config) -> cachemere::Result<Cache> {
    let cache = Cache::from_config(config)?;
    let report = cache.health_check().await;
    if report.healthy {
        return Ok(cache);
    }
    eprintln!(
        "warning: {} store unreachable ({}); using the in-process store instead",
        report.backend,
        report.error.as_deref().unwrap_or("no answer")
    );
    Ok(Cache::builder(MemoryStore::new()).config(config).build())
}

async fn profile(cache: &Cache, user_id: u64) -> cachemere::Result<Profile> {
    let key = format!("user:profile:{user_id}");
    cache
        .get_or_set(&key, Ttl::Default, || load_profile_from_database(user_id))
        .await
}

async fn run() -> cachemere::Result<()> {
    let config = Config::from_env()?;
    let cache = cache_for(&config).await?;
    println!("store: {}", cache.store().backend());
    cache.delete("user:profile:42").await?;

    for attempt in ["first", "second"] {
        let started = Instant::now();
        let profile = profile(&cache, 42).await?;
        println!(
            "{attempt} read of user 42 ({}): {:.1} ms",
            profile.name,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }

    cache
        .delete_multi(&["user:profile:1", "user:profile:2"])
        .await?;
    let keys = ["user:profile:1", "user:profile:42", "user:profile:2"];
    let started = Instant::now();
    let found = cache.get_multi::<Profile, _>(&keys).await?;
    println!(
        "get_multi of {} keys in one round trip: {} cached, {:.1} ms",
        keys.len(),
        found.iter().flatten().count(),
        started.elapsed().as_secs_f64() * 1000.0
    );

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
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
