//! Session statistics and clean-up at scale: `get_session_stats`, `cleanup_expired` with
//! nothing to clean, and a revoke-all, at 10k, 100k and 1M users with one session each, on a
//! private `redis-server` and on a private three-node Redis Cluster.
//!
//! The users are created in bulk through the public API (`create_session`, 256 in flight),
//! growing the same store from one size to the next. Each figure is the median of 9 calls
//! (wall clock, so it drifts with the shared machine). Prints a markdown table. `--quick`
//! runs 1k users (the CI smoke run).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Config, RedisStore};
use cache_session::{SessionConfig, SessionData, SessionManager};
use cache_testing::{RedisCluster, RedisServer};

const IN_FLIGHT: usize = 256;
const SAMPLES: usize = 9;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let sizes: &[usize] = if quick {
        &[1_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    println!(
        "| store | users (one session each) | `get_session_stats` | `cleanup_expired`, nothing to clean | `delete_user_sessions` (1 session) | bulk creation |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let server = RedisServer::start_private()?;
    let store = measure("one server", server.config(), sizes).await?;
    let largest = *sizes.last().unwrap_or(&1) as u64;
    let mut ledger = Vec::new();
    for set in ["live", "users"] {
        let key = format!("session:stats:{set}");
        let (bytes,): (u64,) = store
            .pipeline(
                "MEMORY",
                &key,
                redis::pipe().cmd("MEMORY").arg("USAGE").arg(&key),
            )
            .await?;
        ledger.push(bytes / largest);
    }
    drop(server);
    let cluster = RedisCluster::start()?;
    measure("cluster, 3 primaries", cluster.config(), sizes).await?;
    println!();
    println!(
        "The statistics take {} bytes per session (`session:stats:live`) and {} per user \
         (`session:stats:users`) in Redis at {largest} users (`MEMORY USAGE`, one server).",
        ledger[0], ledger[1]
    );
    Ok(())
}

async fn measure(
    name: &str,
    mut config: Config,
    sizes: &[usize],
) -> Result<RedisStore, Box<dyn std::error::Error>> {
    config.command_timeout = Duration::from_secs(10);
    let store = RedisStore::connect(&config).await?;
    let sessions = SessionManager::new(store.clone(), SessionConfig::default().secret("bench"));
    let mut created = 0;
    for &size in sizes {
        let started = Instant::now();
        create(&sessions, created, size).await?;
        let creation = started.elapsed();
        let users = size - created;
        created = size;
        let stats = sessions.get_session_stats().await?;
        assert_eq!(
            (stats.active_sessions, stats.unique_users),
            (size as u64, size as u64),
            "every session counted"
        );
        let stats_time =
            median(|| async { sessions.get_session_stats().await.map(|_| ()) }).await?;
        let cleanup_time =
            median(|| async { sessions.cleanup_expired().await.map(|_| ()) }).await?;
        let revoke_time = median(|| async {
            sessions
                .create_session("revoked", SessionData::new(), None)
                .await?;
            let started = Instant::now();
            sessions.delete_user_sessions("revoked").await?;
            Ok(started.elapsed())
        })
        .await?;
        println!(
            "| {name} | {size} | {} | {} | {} | {users} in {:.1} s ({:.0}/s) |",
            ms(stats_time),
            ms(cleanup_time),
            ms(revoke_time),
            creation.as_secs_f64(),
            users as f64 / creation.as_secs_f64()
        );
    }
    Ok(store)
}

/// Creates sessions for users `from..to`, one each, `IN_FLIGHT` at a time.
async fn create(
    sessions: &SessionManager,
    from: usize,
    to: usize,
) -> Result<(), cache_session::Error> {
    let next = Arc::new(AtomicUsize::new(from));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (sessions, next) = (sessions.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let user = next.fetch_add(1, Ordering::Relaxed);
                    if user >= to {
                        return Ok::<(), cache_session::Error>(());
                    }
                    sessions
                        .create_session(&format!("user-{user}"), SessionData::new(), None)
                        .await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker")?;
    }
    Ok(())
}

/// The median of `SAMPLES` runs of `call`, timed around it; a call that times itself returns
/// its own duration.
async fn median<F, Fut, T>(call: F) -> Result<Duration, cache_session::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, cache_session::Error>>,
    T: Timed,
{
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let outcome = call().await?;
        times.push(outcome.took().unwrap_or_else(|| started.elapsed()));
    }
    times.sort();
    Ok(times[SAMPLES / 2])
}

/// What a measured call returns: nothing, or the duration it measured itself.
trait Timed {
    fn took(&self) -> Option<Duration>;
}

impl Timed for () {
    fn took(&self) -> Option<Duration> {
        None
    }
}

impl Timed for Duration {
    fn took(&self) -> Option<Duration> {
        Some(*self)
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
