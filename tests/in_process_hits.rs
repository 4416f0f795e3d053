//! `#[cache_result]` hits on the in-process store copy the decoded value the store keeps
//! beside the bytes (for `Clone + Send + Sync + 'static` types) instead of decoding: counted
//! by how often a value is deserialized, on this test's thread.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Debug;

use cachemere::{Cache, MemoryStore, Ttl, cache_result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

thread_local! {
    static DECODES: Cell<usize> = const { Cell::new(0) };
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

fn decodes() -> usize {
    DECODES.with(Cell::get)
}

fn calls() -> usize {
    CALLS.with(Cell::get)
}

fn called() {
    CALLS.with(|calls| calls.set(calls.get() + 1));
}

#[derive(Deserialize)]
struct Fields {
    id: u64,
    name: String,
}

impl Fields {
    /// Deserializes the fields, counting one decode.
    fn counted<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        DECODES.with(|decodes| decodes.set(decodes.get() + 1));
        Fields::deserialize(deserializer)
    }
}

/// A value that counts its decodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct Profile {
    id: u64,
    name: String,
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Fields { id, name } = Fields::counted(deserializer)?;
        Ok(Profile { id, name })
    }
}

/// The same, without `Clone`: it cannot be kept decoded.
#[derive(Debug, PartialEq, Serialize)]
struct Unclonable {
    id: u64,
    name: String,
}

impl<'de> Deserialize<'de> for Unclonable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Fields { id, name } = Fields::counted(deserializer)?;
        Ok(Unclonable { id, name })
    }
}

fn cache() -> Cache {
    Cache::builder(MemoryStore::new()).build()
}

#[cache_result("profile:{id}", cache = cache)]
async fn profile(cache: &Cache, id: u64) -> Profile {
    called();
    Profile {
        id,
        name: format!("student {id}"),
    }
}

#[cache_result("profile:{id}", cache = cache)]
async fn fallible_profile(cache: &Cache, id: u64) -> Result<Profile, String> {
    called();
    Ok(Profile {
        id,
        name: format!("student {id}"),
    })
}

#[cache_result("unclonable:{id}", cache = cache)]
async fn unclonable(cache: &Cache, id: u64) -> Unclonable {
    called();
    Unclonable {
        id,
        name: format!("student {id}"),
    }
}

/// The same key as `profile`, read as another type with the same encoding.
#[cache_result("profile:{id}", cache = cache)]
async fn profile_fields(cache: &Cache, id: u64) -> (u64, String) {
    called();
    (id, "computed".into())
}

/// A generic value type: whether it can be kept is not known where the macro expands.
#[cache_result("generic:{id}", cache = cache)]
async fn generic<T: Serialize + DeserializeOwned + Default>(cache: &Cache, id: u64) -> Vec<T> {
    called();
    (0..id).map(|_| T::default()).collect()
}

/// A value type with a borrowed lifetime: never kept (it is not `'static`).
#[cache_result("borrowed:{id}", cache = cache)]
async fn borrowed<'a>(cache: &Cache, id: u64, fallback: &'a Profile) -> Cow<'a, Profile> {
    called();
    let _ = id;
    Cow::Borrowed(fallback)
}

#[tokio::test]
async fn a_hit_copies_the_kept_value_instead_of_decoding() {
    let cache = cache();
    for _ in 0..10 {
        assert_eq!(profile(&cache, 1).await.name, "student 1");
    }
    // one computation; the first hit decodes and keeps, the other eight copy
    assert_eq!((calls(), decodes()), (1, 1));
    for _ in 0..5 {
        assert_eq!(fallible_profile(&cache, 1).await.unwrap().id, 1);
    }
    assert_eq!(
        (calls(), decodes()),
        (1, 1),
        "the Result shape shares the kept value"
    );
}

#[tokio::test]
async fn a_type_without_clone_decodes_each_hit() {
    let cache = cache();
    for _ in 0..10 {
        assert_eq!(unclonable(&cache, 1).await.id, 1);
    }
    assert_eq!((calls(), decodes()), (1, 9));
}

#[tokio::test]
async fn a_write_or_a_delete_replaces_the_kept_value() {
    let cache = cache();
    profile(&cache, 1).await;
    profile(&cache, 1).await;
    let renamed = Profile {
        id: 1,
        name: "renamed".into(),
    };
    cache.set("profile:1", &renamed, Ttl::Long).await.unwrap();
    assert_eq!(profile(&cache, 1).await, renamed);
    assert_eq!(profile(&cache, 1).await, renamed);
    // written through another cache on the same store
    let other = Cache::builder_shared(std::sync::Arc::clone(cache.store())).build();
    let again = Profile {
        id: 1,
        name: "again".into(),
    };
    other.set("profile:1", &again, Ttl::Long).await.unwrap();
    assert_eq!(profile(&cache, 1).await, again);
    cache.delete("profile:1").await.unwrap();
    assert_eq!(profile(&cache, 1).await.name, "student 1");
    assert_eq!(calls(), 2);
}

#[tokio::test]
async fn a_value_kept_as_one_type_is_decoded_afresh_as_another() {
    let cache = cache();
    profile(&cache, 7).await;
    profile(&cache, 7).await;
    let before = decodes();
    assert_eq!(profile_fields(&cache, 7).await, (7, "student 7".into()));
    assert_eq!(profile(&cache, 7).await.name, "student 7");
    assert_eq!(decodes(), before, "the kept Profile is still copied");
    assert_eq!(calls(), 1);
}

#[tokio::test]
async fn generic_and_borrowed_values_are_decoded_each_time() {
    let cache = cache();
    let fallback = Profile {
        id: 9,
        name: "fallback".into(),
    };
    for _ in 0..3 {
        assert_eq!(generic::<Profile>(&cache, 2).await.len(), 2);
        assert_eq!(borrowed(&cache, 1, &fallback).await.name, "fallback");
    }
    assert_eq!(calls(), 2);
    // two hits each: the generic call decodes its two profiles, the borrowed one its one
    assert_eq!(decodes(), 2 * 2 + 2);
}

#[tokio::test]
async fn a_corrupt_value_is_a_miss_not_kept() {
    let cache = cache();
    cache
        .store()
        .set(
            "profile:3",
            b"\xff\xfe not a frame",
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(profile(&cache, 3).await.name, "student 3");
    assert_eq!(profile(&cache, 3).await.name, "student 3");
    assert_eq!(calls(), 1);
}

#[tokio::test]
async fn the_local_tier_keeps_decoded_values_too() {
    let server = cache_testing::RedisServer::start_private().expect("start redis-server");
    let store = cachemere::RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = Cache::builder(store)
        .local_cache(1 << 20, std::time::Duration::from_secs(60))
        .build();
    let started = std::time::Instant::now();
    while cache.local_cache_active() != Some(true) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never subscribed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for _ in 0..10 {
        assert_eq!(profile(&cache, 5).await.name, "student 5");
    }
    // the write filled the local tier; its first hit decodes and keeps, the rest copy
    assert_eq!((calls(), decodes()), (1, 1));
    assert_eq!(cache.stats().local_hits, 9);
    // a write through the cache replaces the local copy
    let renamed = Profile {
        id: 5,
        name: "renamed".into(),
    };
    cache.set("profile:5", &renamed, Ttl::Long).await.unwrap();
    assert_eq!(profile(&cache, 5).await, renamed);
}
