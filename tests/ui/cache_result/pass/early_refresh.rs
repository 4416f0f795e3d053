//! `early_refresh = true` on owned arguments, `self: Arc<Self>`, and a borrowed argument the
//! body does not use; the expanded futures are `Send` (spawned).

use std::sync::Arc;

use cachemere::{Cache, MemoryStore, cache_result};

struct Service {
    cache: Cache,
    tenant: String,
}

impl Service {
    #[cache_result("tenant:{self.tenant}:user:{user_id}", cache = self.cache, early_refresh = true)]
    async fn name(self: Arc<Self>, user_id: u32) -> String {
        format!("{}-{user_id}", self.tenant)
    }
}

#[cache_result("grades:{class}", cache = cache, early_refresh = true, beta = 1.5)]
async fn grades(cache: &Cache, class: String) -> Result<Vec<u32>, String> {
    Ok(vec![class.len() as u32])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder(MemoryStore::new()).build();
    let service = Arc::new(Service {
        cache: cache.clone(),
        tenant: "t".into(),
    });
    let named = tokio::spawn(service.clone().name(7)).await.unwrap();
    assert_eq!(named, "t-7");
    let spawned = tokio::spawn(async move { grades(&cache, "maths".into()).await });
    assert_eq!(spawned.await.unwrap(), Ok(vec![5]));
}
