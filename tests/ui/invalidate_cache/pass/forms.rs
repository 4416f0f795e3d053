//! Keys, patterns, tags, `before`, `key_args`, methods and every return shape.

use cachemere::{Cache, MemoryStore, invalidate_cache};

#[derive(Debug)]
struct DbError;

#[invalidate_cache("user:profile:{user_id}", "user:*:{user_id}", tags = ["user:{user_id}"], key_args = ["user_id"])]
pub async fn update_user(user_id: &str, name: String) -> Result<usize, DbError> {
    if name.is_empty() {
        return Err(DbError);
    }
    Ok(name.len())
}

#[invalidate_cache("analytics:daily", before = true)]
async fn recompute() -> u32 {
    7
}

#[invalidate_cache(tags = ["class:{class_id}"])]
async fn touch_class(class_id: u64) {
    let _ = class_id;
}

#[invalidate_cache("maybe:{id}")]
async fn maybe(id: u8) -> Option<u8> {
    Some(id)
}

struct Service {
    cache: Cache,
    region: String,
}

impl Service {
    #[invalidate_cache("region:{self.region}:user:{user_id}", cache = self.cache)]
    async fn rename(&mut self, user_id: u32, region: &str) -> Result<(), DbError> {
        self.region = format!("{region}-{user_id}");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    Cache::set_global(Cache::builder(MemoryStore::new()).build());
    assert_eq!(update_user("42", "Ada".into()).await.ok(), Some(3));
    assert!(update_user("42", String::new()).await.is_err());
    assert_eq!(recompute().await, 7);
    touch_class(3).await;
    assert_eq!(maybe(1).await, Some(1));
    let mut service = Service {
        cache: Cache::builder(MemoryStore::new()).build(),
        region: "eu".into(),
    };
    service.rename(1, "us").await.ok();
    assert_eq!(service.region, "us-1");
}
