//! Depending on `cache_core` (with its `macros` feature) instead of `cachemere`.

use cache_core::{Cache, MemoryStore};

#[cache_core::cache_result("direct:{id}", crate = "cache_core", cache = cache)]
async fn direct(cache: &Cache, id: u32) -> u32 {
    id * 2
}

#[cache_core::invalidate_cache("direct:{id}", crate = "cache_core", cache = cache)]
async fn forget(cache: &Cache, id: u32) -> u32 {
    id
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder(MemoryStore::new()).build();
    assert_eq!(direct(&cache, 4).await, 8);
    assert_eq!(direct(&cache, 4).await, 8);
    assert_eq!(forget(&cache, 4).await, 4);
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
}
