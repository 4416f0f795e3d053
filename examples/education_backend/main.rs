//! The education backend of the seed design, on cachemere: cached reads through the macros,
//! sessions, the Redis health endpoint and statistics.
//!
//! ```sh
//! cargo run --example education_backend                       # in-process store
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example education_backend
//! ```
//!
//! Listens on `127.0.0.1:3000` (`PORT` to change). See the README for curl examples.

mod app;

use std::time::Duration;

use app::{AppState, Backend};
use cachemere::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let (backend, line) = Backend::from_config(&config)?;
    println!("{line}");
    let state = AppState::new(backend, &config, Duration::from_millis(50));
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
