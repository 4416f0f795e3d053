//! The education backend of the seed design, on cachemere: cached reads through the macros,
//! sessions, the Redis health endpoint and statistics.
//!
//! ```sh
//! cargo run --example education_backend                       # in-process store
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example education_backend
//! ```
//!
//! Listens on `127.0.0.1:3000` (`PORT` to change). See the README for curl examples.
//! `GET /metrics` answers in Prometheus text format; the cache and session metrics are
//! recorded with the `metrics` feature (`cargo run --features metrics --example
//! education_backend`). `LOG_FORMAT=json` logs JSON lines, `RUST_LOG` filters.

mod app;

use std::time::Duration;

use app::{AppState, Backend};
use cachemere::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging();
    // before the caches, so that they record into it
    let prometheus = app::install_prometheus()?;
    let config = Config::from_env()?;
    let (backend, line) = Backend::from_config(&config)?;
    println!("{line}");
    let state = AppState::new(backend, &config, Duration::from_millis(50)).with_metrics(prometheus);
    let _cleanup = state
        .sessions
        .manager()
        .spawn_cleanup(config.session_cleanup_interval);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app::router(state)).await?;
    Ok(())
}

/// Logs through `tracing-subscriber`: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json`
/// writes one JSON object per line.
fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
