//! Every return shape, run against the in-process store.

use cachemere::{Cache, MemoryStore, cache_result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
}

#[derive(Debug)]
struct DbError;

impl From<std::num::ParseIntError> for DbError {
    fn from(_: std::num::ParseIntError) -> DbError {
        DbError
    }
}

#[cache_result("user:profile:{user_id}", expire = 3600)]
pub async fn profile(user_id: &str) -> Profile {
    Profile { name: user_id.to_uppercase() }
}

#[cache_result("user:age:{user_id}", ttl = Duration::from_secs(60), lock = true)]
pub(crate) async fn age(user_id: &str) -> Result<u32, DbError> {
    let age: u32 = user_id.parse()?;
    if age > 200 {
        return Err(DbError);
    }
    Ok(age)
}

#[cache_result("user:nickname:{user_id}", class = "long", cache_none = true, unless = |nick: &Option<String>| nick.as_deref() == Some(""))]
async fn nickname(user_id: u64) -> Option<String> {
    (user_id % 2 == 0).then(|| format!("n{user_id}"))
}

#[cache_result("user:score:{user_id}", class = "short", condition = user_id > 0, tags = ["user:{user_id}", "scores"])]
async fn score(user_id: i64) -> std::io::Result<f64> {
    Ok(user_id as f64 / 2.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    Cache::set_global(Cache::builder(MemoryStore::new()).build());
    assert_eq!(profile("ada").await.name, "ADA");
    assert_eq!(profile("ada").await.name, "ADA");
    assert_eq!(age("36").await.ok(), Some(36));
    assert!(age("x").await.is_err());
    assert_eq!(nickname(4).await.as_deref(), Some("n4"));
    assert_eq!(score(3).await.ok(), Some(1.5));
    let stats = Cache::global().map(|cache| cache.stats()).unwrap_or_default();
    assert_eq!(stats.hits, 1);
}
