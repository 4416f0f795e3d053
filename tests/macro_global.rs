//! The macros without `cache = ..` use the global cache: uncached until one is installed.
//! One test, because the global cache belongs to the whole test process.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_testing::RedisServer;
use cachemere::{Cache, RedisStore, cache_result, invalidate_cache};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cache_result("course:{course_id}", class = "long")]
async fn course(course_id: u32) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("course {course_id}")
}

#[invalidate_cache("course:{course_id}")]
async fn rename_course(course_id: u32) -> Result<(), String> {
    let _ = course_id;
    Ok(())
}

#[tokio::test]
async fn without_a_global_cache_calls_run_uncached_then_use_it_once_installed() {
    Cache::clear_global();
    assert_eq!(course(1).await, "course 1");
    assert_eq!(course(1).await, "course 1");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "no global cache: every call runs"
    );
    rename_course(1)
        .await
        .expect("an uncached write still runs");

    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = Cache::builder(store).build();
    Cache::set_global(cache.clone());
    course(1).await;
    course(1).await;
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(
        cache
            .get::<String>("course:1")
            .await
            .expect("GET")
            .as_deref(),
        Some("course 1")
    );
    rename_course(1).await.expect("rename");
    assert!(!cache.exists("course:1").await.expect("EXISTS"));
    Cache::clear_global();
}
