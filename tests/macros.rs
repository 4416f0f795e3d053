//! `#[cache_result]` and `#[invalidate_cache]` against a private `redis-server` and a private
//! Redis Cluster: every option, counted by how often the function body runs.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_testing::{ClusterLease, RedisCluster, RedisServer};
use cachemere::{Cache, KeyTtl, RedisStore, cache_result, invalidate_cache};
use serde::{Deserialize, Serialize};

struct Fixture {
    cache: Cache,
    store: RedisStore,
    backing: Backing,
}

enum Backing {
    Server(RedisServer),
    Cluster(ClusterLease),
}

impl Fixture {
    /// Takes the whole deployment down.
    fn kill(&self) {
        match &self.backing {
            Backing::Server(server) => server.kill().expect("kill redis-server"),
            Backing::Cluster(cluster) => {
                for node in 0..cluster.ports().len() {
                    cluster.kill(node).expect("kill a cluster node");
                }
            }
        }
    }

    /// Writes raw bytes under `key`, bypassing the cache.
    async fn write_raw(&self, key: &str, bytes: &[u8]) {
        let _: () = ::redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .query_async(&mut self.store.connection())
            .await
            .expect("SET");
    }
}

async fn connect(config: &cachemere::Config, backing: Backing) -> Fixture {
    let store = RedisStore::connect(config)
        .await
        .expect("connect to the test server");
    Fixture {
        cache: Cache::builder(store.clone()).build(),
        store,
        backing,
    }
}

async fn server_fixture() -> Fixture {
    let server = RedisServer::start_private().expect("start redis-server");
    connect(&server.config(), Backing::Server(server)).await
}

async fn cluster_fixture() -> Fixture {
    let cluster = RedisCluster::lease().expect("start a redis cluster");
    connect(&cluster.config(), Backing::Cluster(cluster)).await
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    user_id: String,
    name: String,
}

/// An error that is neither `Clone` nor serializable: the macro must leave it alone.
#[derive(Debug, PartialEq)]
struct DbError(String);

#[derive(Default)]
struct Calls(AtomicUsize);

impl Calls {
    fn tick(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[cache_result("user:profile:{user_id}", expire = 60, cache = cache)]
async fn profile(cache: &Cache, calls: &Calls, user_id: &str) -> Profile {
    calls.tick();
    Profile {
        user_id: user_id.to_owned(),
        name: format!("user {user_id}"),
    }
}

#[cache_result("grade:{task_id}", cache = cache)]
async fn grade(cache: &Cache, calls: &Calls, task_id: u64, fail: bool) -> Result<u32, DbError> {
    calls.tick();
    if fail {
        return Err(DbError(format!("task {task_id} not found")));
    }
    let parsed: u32 = "97".parse().map_err(|_| DbError("parse".into()))?;
    Ok(parsed)
}

#[cache_result("class:{class_id}", cache = cache)]
async fn class_name(cache: &Cache, calls: &Calls, class_id: u32) -> Option<String> {
    calls.tick();
    (class_id != 0).then(|| format!("class {class_id}"))
}

#[cache_result("class:{class_id}", cache = cache, cache_none = true)]
async fn class_name_caching_none(cache: &Cache, calls: &Calls, class_id: u32) -> Option<String> {
    calls.tick();
    (class_id != 0).then(|| format!("class {class_id}"))
}

#[cache_result("search:{query}", cache = cache, condition = query.len() > 2, unless = |hits: &Vec<String>| hits.is_empty())]
async fn search(cache: &Cache, calls: &Calls, query: &str) -> Vec<String> {
    calls.tick();
    match query {
        "none" => Vec::new(),
        query => vec![format!("{query}-1"), format!("{query}-2")],
    }
}

struct Classroom {
    cache: Cache,
    school: String,
    calls: Calls,
    writes: Vec<String>,
}

impl Classroom {
    /// Doc comments and other attributes stay on the method.
    #[cache_result("school:{self.school}:student:{student.id}", cache = self.cache, class = "short")]
    #[allow(clippy::needless_lifetimes)]
    pub async fn student<'a>(&self, student: &'a Student) -> String {
        self.calls.tick();
        format!("{} at {}", student.name, self.school)
    }

    #[invalidate_cache("school:{self.school}:student:{student_id}", cache = self.cache.clone())]
    pub(crate) async fn rename(&mut self, student_id: u32, name: &str) -> Result<(), DbError> {
        self.writes.push(format!("{student_id}={name}"));
        Ok(())
    }
}

struct Student {
    id: u32,
    name: String,
}

#[cache_result("label:{id}", cache = cache, ttl = Duration::from_secs(30))]
async fn label<T>(cache: &Cache, calls: &Calls, id: T, suffix: impl Display) -> String
where
    T: Display + Copy,
{
    calls.tick();
    format!("{id}{suffix}")
}

trait Directory {
    async fn lookup(&self, user_id: u32) -> String;
}

struct NativeDirectory {
    cache: Cache,
    calls: Calls,
}

impl Directory for NativeDirectory {
    #[cache_result("dir:native:{user_id}", cache = self.cache)]
    async fn lookup(&self, user_id: u32) -> String {
        self.calls.tick();
        format!("native {user_id}")
    }
}

#[async_trait::async_trait]
trait BoxedDirectory {
    async fn lookup(&self, user_id: u32) -> Result<String, DbError>;
    async fn forget(&self, user_id: u32);
}

#[async_trait::async_trait]
impl BoxedDirectory for NativeDirectory {
    #[cache_result("dir:boxed:{user_id}", cache = self.cache)]
    async fn lookup(&self, user_id: u32) -> Result<String, DbError> {
        self.calls.tick();
        Ok(format!("boxed {user_id}"))
    }

    #[invalidate_cache("dir:boxed:{user_id}", cache = self.cache)]
    async fn forget(&self, user_id: u32) {
        tracing::debug!(user_id, "forgetting");
    }
}

#[cache_result("hot:{id}", cache = cache, lock = true)]
async fn slow_total(cache: Cache, calls: Arc<Calls>, id: u32) -> u64 {
    calls.tick();
    tokio::time::sleep(Duration::from_millis(100)).await;
    u64::from(id) * 1000
}

#[cache_result("user:{user_id}:assignments", cache = cache, tags = ["class:{class_id}"], key_args = ["user_id"])]
async fn assignments(cache: &Cache, calls: &Calls, user_id: u32, class_id: u32) -> Vec<String> {
    calls.tick();
    vec![format!("homework for {user_id} in {class_id}")]
}

#[invalidate_cache(tags = ["class:{class_id}"], cache = cache)]
async fn publish_assignment(cache: &Cache, class_id: u32) -> u32 {
    class_id
}

#[invalidate_cache("user:{user_id}:*", cache = cache)]
async fn forget_user(cache: &Cache, user_id: &str) {}

#[invalidate_cache("user:profile:{user_id}", "class:{class_id}", cache = cache)]
async fn move_user(
    cache: &Cache,
    user_id: &str,
    class_id: u32,
    fail: bool,
) -> Result<u32, DbError> {
    match fail {
        true => Err(DbError("rejected".into())),
        false => Ok(class_id),
    }
}

#[invalidate_cache("user:profile:{user_id}", cache = cache, before = true)]
async fn read_after_invalidate(cache: &Cache, user_id: &str) -> bool {
    cache
        .exists(&format!("user:profile:{user_id}"))
        .await
        .expect("EXISTS")
}

#[cache_result("clash:{key}:{result}:{value}:{site}:{body}", cache = cache)]
async fn clashing_names(
    cache: &Cache,
    key: &str,
    result: u32,
    value: u32,
    site: u8,
    body: bool,
) -> String {
    let _ = cache;
    format!("{key}{result}{value}{site}{body}")
}

#[cache_result("failsafe:{id}", cache = cache, ttl = Duration::from_millis(300), stale_for = 60)]
async fn report(cache: &Cache, id: u32, fail: bool) -> Result<String, DbError> {
    match fail {
        true => Err(DbError("database down".into())),
        false => Ok(format!("report {id}")),
    }
}

/// Early refresh: the body may run as its own task, so it owns what it uses (`cache` is a
/// reference, used only to name the cache, and not captured).
#[cache_result("early:{id}", cache = cache, ttl = Duration::from_millis(600), early_refresh = true, beta = 1.0)]
async fn early_grade(
    cache: &Cache,
    id: u32,
    calls: Arc<Calls>,
    fail: bool,
) -> Result<usize, DbError> {
    slow_grade(id, calls, fail).await
}

/// Every read decides to refresh (beta 1e9 on a 50 ms body).
#[cache_result("eager:{id}", cache = cache, ttl = Duration::from_millis(800), early_refresh = true, beta = 1e9)]
async fn eager_grade(
    cache: &Cache,
    id: u32,
    calls: Arc<Calls>,
    fail: bool,
) -> Result<usize, DbError> {
    slow_grade(id, calls, fail).await
}

/// Every read decides to refresh; the body panics when told to.
#[cache_result("panicky:{id}", cache = cache, ttl = Duration::from_millis(800), early_refresh = true, beta = 1e9)]
async fn panicky_grade(cache: &Cache, id: u32, calls: Arc<Calls>, panics: bool) -> usize {
    let call = calls.tick();
    tokio::time::sleep(Duration::from_millis(20)).await;
    if panics {
        panic!("grade {id}: the body panicked");
    }
    call
}

/// Every read decides to refresh; the body hangs when told to.
#[cache_result("hanging:{id}", cache = cache, ttl = Duration::from_secs(60), early_refresh = true, beta = 1e9)]
async fn hanging_grade(cache: &Cache, id: u32, calls: Arc<Calls>, hangs: bool) -> usize {
    let call = calls.tick();
    tokio::time::sleep(Duration::from_millis(10)).await;
    if hangs {
        std::future::pending::<()>().await;
    }
    call
}

async fn slow_grade(id: u32, calls: Arc<Calls>, fail: bool) -> Result<usize, DbError> {
    let call = calls.tick();
    tokio::time::sleep(Duration::from_millis(50)).await;
    match fail {
        true => Err(DbError(format!("grade {id}: database down"))),
        false => Ok(call),
    }
}

macro_rules! behaviour_suite {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            async fn fixture() -> Fixture {
                $fixture().await
            }

            #[tokio::test]
            async fn second_call_is_a_hit_under_the_literal_key() {
                let f = fixture().await;
                let calls = Calls::default();
                let first = profile(&f.cache, &calls, "42").await;
                let second = profile(&f.cache, &calls, "42").await;
                assert_eq!(first, second);
                assert_eq!(calls.count(), 1);
                assert_eq!((f.cache.stats().misses, f.cache.stats().hits), (1, 1));
                let stored: Option<Profile> = f.cache.get("user:profile:42").await.unwrap();
                assert_eq!(stored, Some(first));
                match f.cache.ttl("user:profile:42").await.unwrap() {
                    KeyTtl::ExpiresIn(ttl) => {
                        assert!(ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(55))
                    }
                    other => panic!("expected a ttl, got {other:?}"),
                }
                profile(&f.cache, &calls, "43").await;
                assert_eq!(calls.count(), 2, "another argument is another key");
            }

            #[tokio::test]
            async fn the_cache_prefix_goes_before_the_template() {
                let f = fixture().await;
                let cache = Cache::builder_shared(f.cache.store().clone())
                    .prefix("app:")
                    .build();
                profile(&cache, &Calls::default(), "7").await;
                assert!(f.cache.exists("app:user:profile:7").await.unwrap());
            }

            #[tokio::test]
            async fn result_caches_ok_and_returns_errors_untouched() {
                let f = fixture().await;
                let calls = Calls::default();
                assert_eq!(
                    grade(&f.cache, &calls, 1, true).await,
                    Err(DbError("task 1 not found".into()))
                );
                assert!(
                    !f.cache.exists("grade:1").await.unwrap(),
                    "errors are not cached"
                );
                assert_eq!(grade(&f.cache, &calls, 1, false).await, Ok(97));
                assert_eq!(
                    grade(&f.cache, &calls, 1, true).await,
                    Ok(97),
                    "a hit skips the body"
                );
                assert_eq!(calls.count(), 2);
                assert_eq!(f.cache.get::<u32>("grade:1").await.unwrap(), Some(97));
            }

            #[tokio::test]
            async fn option_caches_none_only_when_asked() {
                let f = fixture().await;
                let calls = Calls::default();
                assert_eq!(class_name(&f.cache, &calls, 0).await, None);
                assert_eq!(class_name(&f.cache, &calls, 0).await, None);
                assert_eq!(calls.count(), 2, "None is not cached by default");
                assert_eq!(
                    class_name(&f.cache, &calls, 3).await.as_deref(),
                    Some("class 3")
                );
                assert_eq!(
                    class_name(&f.cache, &calls, 3).await.as_deref(),
                    Some("class 3")
                );
                assert_eq!(calls.count(), 3);

                let calls = Calls::default();
                assert_eq!(class_name_caching_none(&f.cache, &calls, 0).await, None);
                assert_eq!(class_name_caching_none(&f.cache, &calls, 0).await, None);
                assert_eq!(calls.count(), 1, "cache_none = true caches None");
            }

            #[tokio::test]
            async fn condition_skips_the_cache_and_unless_skips_the_store() {
                let f = fixture().await;
                let calls = Calls::default();
                search(&f.cache, &calls, "ab").await;
                search(&f.cache, &calls, "ab").await;
                assert_eq!(calls.count(), 2, "condition false: no caching");
                assert_eq!(
                    f.cache.stats().misses + f.cache.stats().hits,
                    0,
                    "condition false: no lookup"
                );
                search(&f.cache, &calls, "none").await;
                search(&f.cache, &calls, "none").await;
                assert_eq!(calls.count(), 4, "unless true: not stored");
                assert!(!f.cache.exists("search:none").await.unwrap());
                search(&f.cache, &calls, "algebra").await;
                assert_eq!(
                    search(&f.cache, &calls, "algebra").await,
                    ["algebra-1", "algebra-2"]
                );
                assert_eq!(calls.count(), 5);
            }

            #[tokio::test]
            async fn methods_use_self_fields_in_keys_and_cache() {
                let f = fixture().await;
                let mut room = Classroom {
                    cache: f.cache.clone(),
                    school: "north".into(),
                    calls: Calls::default(),
                    writes: Vec::new(),
                };
                let ada = Student {
                    id: 1,
                    name: "Ada".into(),
                };
                assert_eq!(room.student(&ada).await, "Ada at north");
                room.student(&ada).await;
                assert_eq!(room.calls.count(), 1);
                assert!(f.cache.exists("school:north:student:1").await.unwrap());
                match f.cache.ttl("school:north:student:1").await.unwrap() {
                    KeyTtl::ExpiresIn(ttl) => assert!(ttl <= Duration::from_secs(300)),
                    other => panic!("expected the short class ttl, got {other:?}"),
                }
                room.rename(1, "Ada L.").await.unwrap();
                assert_eq!(room.writes, ["1=Ada L."]);
                assert!(!f.cache.exists("school:north:student:1").await.unwrap());
                room.student(&ada).await;
                assert_eq!(room.calls.count(), 2);
            }

            #[tokio::test]
            async fn generic_functions_and_impl_trait_parameters() {
                let f = fixture().await;
                let calls = Calls::default();
                assert_eq!(label(&f.cache, &calls, 5u8, "!").await, "5!");
                assert_eq!(
                    label(&f.cache, &calls, 5i64, "?").await,
                    "5!",
                    "same key, cached"
                );
                assert_eq!(label(&f.cache, &calls, "x", '#').await, "x#");
                assert_eq!(calls.count(), 2);
                match f.cache.ttl("label:5").await.unwrap() {
                    KeyTtl::ExpiresIn(ttl) => assert!(ttl <= Duration::from_secs(30)),
                    other => panic!("expected a ttl, got {other:?}"),
                }
            }

            #[tokio::test]
            async fn trait_methods_native_and_async_trait() {
                let f = fixture().await;
                let directory = NativeDirectory {
                    cache: f.cache.clone(),
                    calls: Calls::default(),
                };
                assert_eq!(Directory::lookup(&directory, 1).await, "native 1");
                assert_eq!(Directory::lookup(&directory, 1).await, "native 1");
                assert_eq!(
                    BoxedDirectory::lookup(&directory, 1).await.unwrap(),
                    "boxed 1"
                );
                assert_eq!(
                    BoxedDirectory::lookup(&directory, 1).await.unwrap(),
                    "boxed 1"
                );
                assert_eq!(directory.calls.count(), 2);
                directory.forget(1).await;
                assert!(!f.cache.exists("dir:boxed:1").await.unwrap());
                assert!(f.cache.exists("dir:native:1").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stampede_of_100_calls_runs_the_body_once() {
                let f = fixture().await;
                let calls = Arc::new(Calls::default());
                let tasks: Vec<_> = (0..100)
                    .map(|_| tokio::spawn(slow_total(f.cache.clone(), calls.clone(), 9)))
                    .collect();
                for task in tasks {
                    assert_eq!(task.await.unwrap(), 9000);
                }
                assert_eq!(calls.count(), 1);
                assert!(
                    !f.cache.exists("hot:9.__cachemere:lock").await.unwrap(),
                    "the lock is released"
                );
            }

            #[tokio::test]
            async fn tag_invalidation_removes_every_tagged_value() {
                let f = fixture().await;
                let calls = Calls::default();
                assignments(&f.cache, &calls, 1, 7).await;
                assignments(&f.cache, &calls, 2, 7).await;
                assignments(&f.cache, &calls, 3, 8).await;
                assignments(&f.cache, &calls, 1, 7).await;
                assert_eq!(calls.count(), 3);
                assert_eq!(publish_assignment(&f.cache, 7).await, 7);
                assert!(!f.cache.exists("user:1:assignments").await.unwrap());
                assert!(!f.cache.exists("user:2:assignments").await.unwrap());
                assert!(f.cache.exists("user:3:assignments").await.unwrap());
            }

            #[tokio::test]
            async fn pattern_invalidation_escapes_placeholder_values() {
                let f = fixture().await;
                for key in ["user:1:a", "user:1:b", "user:12:a", "user:*:a", "user:2:a"] {
                    f.cache.set(key, &1u8, None).await.unwrap();
                }
                forget_user(&f.cache, "1").await;
                assert!(!f.cache.exists("user:1:a").await.unwrap());
                assert!(!f.cache.exists("user:1:b").await.unwrap());
                assert!(f.cache.exists("user:12:a").await.unwrap());
                forget_user(&f.cache, "*").await;
                assert!(
                    !f.cache.exists("user:*:a").await.unwrap(),
                    "a literal * is removed"
                );
                assert!(
                    f.cache.exists("user:2:a").await.unwrap(),
                    "but does not widen to other users"
                );
                assert!(f.cache.exists("user:12:a").await.unwrap());
            }

            #[tokio::test]
            async fn invalidation_runs_after_success_by_default_and_before_on_request() {
                let f = fixture().await;
                let calls = Calls::default();
                profile(&f.cache, &calls, "5").await;
                class_name(&f.cache, &calls, 4).await;
                assert!(move_user(&f.cache, "5", 4, true).await.is_err());
                assert!(
                    f.cache.exists("user:profile:5").await.unwrap(),
                    "a failed call invalidates nothing"
                );
                assert_eq!(move_user(&f.cache, "5", 4, false).await, Ok(4));
                assert!(!f.cache.exists("user:profile:5").await.unwrap());
                assert!(!f.cache.exists("class:4").await.unwrap());

                profile(&f.cache, &calls, "5").await;
                assert!(
                    !read_after_invalidate(&f.cache, "5").await,
                    "before = true runs first"
                );
            }

            #[tokio::test]
            async fn parameter_names_do_not_clash_with_generated_code() {
                let f = fixture().await;
                assert_eq!(
                    clashing_names(&f.cache, "k", 1, 2, 3, true).await,
                    "k123true"
                );
                assert!(f.cache.exists("clash:k:1:2:3:true").await.unwrap());
            }

            #[tokio::test]
            async fn corrupt_bytes_are_a_miss_and_recomputed() {
                let f = fixture().await;
                let calls = Calls::default();
                f.write_raw("user:profile:9", b"\xCA\x01\x01\x00garbage")
                    .await;
                assert_eq!(profile(&f.cache, &calls, "9").await.name, "user 9");
                assert_eq!(calls.count(), 1);
                assert_eq!(f.cache.stats().decode_failures, 1);
                profile(&f.cache, &calls, "9").await;
                assert_eq!(
                    calls.count(),
                    1,
                    "the recomputed value replaced the corrupt one"
                );
            }

            #[tokio::test]
            async fn redis_down_means_uncached_calls_not_errors() {
                let f = fixture().await;
                let calls = Calls::default();
                f.kill();
                assert_eq!(grade(&f.cache, &calls, 3, false).await, Ok(97));
                assert_eq!(grade(&f.cache, &calls, 3, false).await, Ok(97));
                assert_eq!(calls.count(), 2);
                assert!(f.cache.stats().errors >= 2);
                assert!(
                    move_user(&f.cache, "1", 1, false).await.is_ok(),
                    "failed invalidations are logged, not returned"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn early_refresh_runs_the_body_in_the_background_before_expiry() {
                let f = fixture().await;
                let calls = Arc::new(Calls::default());
                assert_eq!(early_grade(&f.cache, 1, calls.clone(), false).await, Ok(1));
                f.cache.reset_stats();
                let readers: Vec<_> = (0..4)
                    .map(|_| {
                        let (cache, calls) = (f.cache.clone(), calls.clone());
                        // spawned: the expanded future is `Send`
                        tokio::spawn(async move {
                            let until = std::time::Instant::now() + Duration::from_millis(2_000);
                            let mut seen = Vec::new();
                            while std::time::Instant::now() < until {
                                seen.push(
                                    early_grade(&cache, 1, calls.clone(), false).await.unwrap(),
                                );
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            seen
                        })
                    })
                    .collect();
                let mut seen = Vec::new();
                for reader in readers {
                    seen.extend(reader.await.unwrap());
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                let stats = f.cache.stats();
                assert_eq!(stats.misses, 0, "no caller waited for the body: {stats:?}");
                assert!(
                    calls.count() >= 4,
                    "600 ms values over 2 s: {} bodies",
                    calls.count()
                );
                assert_eq!(
                    stats.early_refreshes as usize,
                    calls.count() - 1,
                    "{stats:?}"
                );
                assert!(
                    seen.iter().any(|&call| call > 1),
                    "callers received refreshed values"
                );
            }

            #[tokio::test]
            async fn a_failing_early_refresh_serves_the_current_value_until_its_ttl() {
                let f = fixture().await;
                let calls = Arc::new(Calls::default());
                assert_eq!(eager_grade(&f.cache, 2, calls.clone(), false).await, Ok(1));
                for _ in 0..3 {
                    assert_eq!(eager_grade(&f.cache, 2, calls.clone(), true).await, Ok(1));
                    tokio::time::sleep(Duration::from_millis(80)).await;
                }
                let stats = f.cache.stats();
                assert_eq!(
                    (stats.early_refreshes, stats.early_refresh_failures),
                    (3, 3),
                    "{stats:?}"
                );
                assert_eq!(
                    calls.count(),
                    4,
                    "each refresh ran the body once, in the background"
                );
                tokio::time::sleep(Duration::from_millis(800)).await;
                assert_eq!(
                    eager_grade(&f.cache, 2, calls.clone(), true).await,
                    Err(DbError("grade 2: database down".into())),
                    "past its ttl the value is gone"
                );
            }

            #[tokio::test]
            async fn a_panicking_early_refresh_is_counted_and_releases_the_key() {
                let f = fixture().await;
                let calls = Arc::new(Calls::default());
                assert_eq!(panicky_grade(&f.cache, 3, calls.clone(), false).await, 1);
                for _ in 0..3 {
                    assert_eq!(panicky_grade(&f.cache, 3, calls.clone(), true).await, 1);
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
                let stats = f.cache.stats();
                assert_eq!(
                    (stats.early_refreshes, stats.early_refresh_failures),
                    (3, 3),
                    "{stats:?}"
                );
                assert_eq!(calls.count(), 4, "each panicking refresh ran once");
                // the panics left no flight behind: the next read refreshes, and that value
                // is served
                assert_eq!(panicky_grade(&f.cache, 3, calls.clone(), false).await, 1);
                tokio::time::sleep(Duration::from_millis(60)).await;
                assert_eq!(panicky_grade(&f.cache, 3, calls.clone(), false).await, 5);
            }

            #[tokio::test]
            async fn a_hung_early_refresh_times_out_and_later_misses_do_not_wait_on_it() {
                let f = fixture().await;
                let cache = Cache::builder(f.store.clone())
                    .refresh_timeout(Duration::from_millis(300))
                    .build();
                let calls = Arc::new(Calls::default());
                assert_eq!(hanging_grade(&cache, 4, calls.clone(), false).await, 1);
                assert_eq!(
                    hanging_grade(&cache, 4, calls.clone(), true).await,
                    1,
                    "the deciding read returns the current value"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                cache.delete("hanging:4").await.expect("delete");
                let started = std::time::Instant::now();
                let missed = tokio::time::timeout(
                    Duration::from_secs(3),
                    hanging_grade(&cache, 4, calls.clone(), false),
                )
                .await
                .expect("a miss waits on a hung refresh at most its timeout");
                assert_eq!(missed, 3, "the miss computed the value itself");
                eprintln!(
                    "a miss behind a hung refresh answered in {:?}",
                    started.elapsed()
                );
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "{:?}",
                    started.elapsed()
                );
                let stats = cache.stats();
                assert_eq!(
                    (stats.early_refreshes, stats.early_refresh_failures),
                    (1, 1),
                    "{stats:?}"
                );
            }

            #[tokio::test]
            async fn stale_for_serves_the_last_value_when_the_body_fails() {
                let f = fixture().await;
                assert_eq!(report(&f.cache, 1, false).await, Ok("report 1".into()));
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(
                    report(&f.cache, 1, true).await,
                    Ok("report 1".into()),
                    "stale beats the error"
                );
                assert_eq!(f.cache.stats().stale_served, 1);
                assert_eq!(
                    report(&f.cache, 2, true).await,
                    Err(DbError("database down".into())),
                    "nothing stale: the error"
                );
            }
        }
    };
}

behaviour_suite!(redis, server_fixture);
behaviour_suite!(cluster, cluster_fixture);
