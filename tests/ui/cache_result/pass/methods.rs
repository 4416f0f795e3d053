//! Methods, trait impls, `async_trait`, generics, lifetimes and attributes.

use std::fmt::Display;

use cachemere::{Cache, MemoryStore, cache_result};
use serde::Serialize;
use serde::de::DeserializeOwned;

struct Service {
    cache: Cache,
    tenant: String,
    counter: u32,
}

impl Service {
    /// Documented, and the docs stay.
    #[cache_result("tenant:{self.tenant}:user:{user_id}", cache = self.cache)]
    #[inline]
    pub async fn name(&self, user_id: u32) -> String {
        format!("{}-{user_id}", self.tenant)
    }

    #[cache_result("tenant:{self.tenant}:count", cache = &self.cache)]
    async fn bump(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    #[cache_result("tenant:{self.tenant}:first:{items}", cache = self.cache)]
    async fn first<'a, 'b>(&'a self, items: &'b str) -> Option<String>
    where
        'b: 'a,
    {
        items.split(',').next().map(str::to_owned)
    }
}

trait Lookup {
    async fn lookup(&self, id: u32) -> Vec<u8>;
}

impl Lookup for Service {
    #[cache_result("lookup:{id}", cache = self.cache)]
    async fn lookup(&self, id: u32) -> Vec<u8> {
        vec![id as u8]
    }
}

#[async_trait::async_trait]
trait BoxedLookup {
    async fn boxed(&self, id: u32) -> Result<Vec<u8>, std::io::Error>;
}

#[async_trait::async_trait]
impl BoxedLookup for Service {
    #[cache_result("boxed:{id}", cache = self.cache)]
    async fn boxed(&self, id: u32) -> Result<Vec<u8>, std::io::Error> {
        Ok(vec![id as u8])
    }
}

#[cache_result("generic:{key}")]
async fn generic<K, V>(key: K, make: impl Fn(&K) -> V + Send) -> V
where
    K: Display + Send,
    V: Serialize + DeserializeOwned + Send,
{
    make(&key)
}

fn assert_send<F: std::future::Future + Send>(future: F) -> F {
    future
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut service = Service {
        cache: Cache::builder(MemoryStore::new()).build(),
        tenant: "north".into(),
        counter: 0,
    };
    assert_eq!(assert_send(service.name(1)).await, "north-1");
    assert_eq!(service.bump().await, 1);
    assert_eq!(service.bump().await, 1);
    assert_eq!(service.first("a,b").await.as_deref(), Some("a"));
    assert_eq!(assert_send(service.lookup(2)).await, [2]);
    assert_eq!(service.boxed(3).await.ok(), Some(vec![3]));
    assert_eq!(generic("k", |key: &&str| key.len()).await, 1);
}
