//! `#[cache_result(.., batch(id in ids))]`: a function that loads many ids at once, cached per
//! id, against a private `redis-server` and the in-process store; counted by the ids each body
//! run received.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cache_testing::RedisServer;
use cachemere::{Cache, MemoryStore, RedisStore, cache_result};

/// The ids each run of a body received.
#[derive(Default)]
struct Loads(Mutex<Vec<Vec<u64>>>);

impl Loads {
    fn record(&self, ids: impl IntoIterator<Item = u64>) {
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        self.0.lock().expect("loads").push(ids);
    }

    fn runs(&self) -> Vec<Vec<u64>> {
        self.0.lock().expect("loads").clone()
    }
}

struct Directory {
    cache: Cache,
    school: String,
    loads: Loads,
}

impl Directory {
    #[cache_result(
        "school:{self.school}:student:{id}",
        batch(id in ids),
        cache = self.cache,
        class = "short",
        tags = ["students:{self.school}"]
    )]
    async fn names(&self, ids: Vec<u64>) -> HashMap<u64, String> {
        self.loads.record(ids.iter().copied());
        ids.into_iter()
            .filter(|id| *id != 404)
            .map(|id| (id, format!("student {id} of {}", self.school)))
            .collect()
    }
}

#[cache_result("grade:{id}", batch(id in ids), cache = cache, expire = 600)]
async fn grades(cache: &Cache, loads: &Loads, ids: Vec<u64>) -> Vec<Option<u32>> {
    loads.record(ids.iter().copied());
    ids.iter()
        .map(|id| (id % 2 == 0).then_some(*id as u32 * 10))
        .collect()
}

#[cache_result("rank:{id}", batch(id in ids), cache = cache, condition = use_cache)]
async fn ranks(
    cache: Option<Cache>,
    use_cache: bool,
    loads: &Loads,
    ids: Vec<u64>,
) -> BTreeMap<u64, u64> {
    loads.record(ids.iter().copied());
    ids.into_iter().map(|id| (id, id + 1000)).collect()
}

#[cache_result("course:{id}", batch(id in ids), cache = cache)]
async fn courses(
    cache: &Cache,
    loads: &Loads,
    database_up: bool,
    ids: Vec<u64>,
) -> Result<Vec<Option<String>>, String> {
    loads.record(ids.iter().copied());
    if !database_up {
        return Err("database down".to_owned());
    }
    Ok(ids.iter().map(|id| Some(format!("course {id}"))).collect())
}

async fn each_store(test: impl AsyncFn(Cache)) {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    test(Cache::builder(store).build()).await;
    test(Cache::builder(MemoryStore::new()).build()).await;
}

#[tokio::test]
async fn a_batch_function_runs_once_for_the_missing_ids_only() {
    each_store(async |cache: Cache| {
        let directory = Directory {
            cache: cache.clone(),
            school: "north".into(),
            loads: Loads::default(),
        };
        let first = directory.names(vec![1, 2, 404]).await;
        assert_eq!(first.len(), 2);
        assert_eq!(first[&1], "student 1 of north");
        let second = directory.names(vec![3, 2, 1, 404]).await;
        assert_eq!(second.len(), 3);
        assert_eq!(
            directory.loads.runs(),
            [vec![1, 2, 404], vec![3, 404]],
            "cached ids are not loaded again; an id without a value is"
        );
        assert_eq!(
            cache
                .get::<String>("school:north:student:3")
                .await
                .expect("get"),
            Some("student 3 of north".to_owned()),
            "each id under its own key"
        );
        assert_eq!(
            cache.invalidate_tag("students:north").await.expect("tag"),
            3
        );
        directory.names(vec![1]).await;
        assert_eq!(directory.loads.runs().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_vector_result_stays_aligned_with_the_ids() {
    each_store(async |cache: Cache| {
        let loads = Loads::default();
        let values = grades(&cache, &loads, vec![2, 1, 2, 4]).await;
        assert_eq!(values, [Some(20), None, Some(20), Some(40)]);
        let values = grades(&cache, &loads, vec![4, 1, 6, 2]).await;
        assert_eq!(values, [Some(40), None, Some(60), Some(20)]);
        assert_eq!(loads.runs(), [vec![1, 2, 4], vec![1, 6]]);
    })
    .await;
}

#[tokio::test]
async fn without_a_cache_or_with_the_condition_false_the_body_gets_every_id() {
    let loads = Loads::default();
    let cache = Cache::builder(MemoryStore::new()).build();
    ranks(None, true, &loads, vec![1, 2]).await;
    ranks(Some(cache.clone()), false, &loads, vec![1, 2]).await;
    ranks(Some(cache.clone()), true, &loads, vec![1, 2]).await;
    let cached = ranks(Some(cache), true, &loads, vec![2, 1]).await;
    assert_eq!(cached, BTreeMap::from([(1, 1001), (2, 1002)]));
    assert_eq!(loads.runs(), [vec![1, 2], vec![1, 2], vec![1, 2]]);
}

#[tokio::test]
async fn a_failing_batch_returns_its_error_and_caches_nothing() {
    each_store(async |cache: Cache| {
        let loads = Loads::default();
        let failed = courses(&cache, &loads, false, vec![1, 2]).await;
        assert_eq!(failed, Err("database down".to_owned()));
        assert!(
            !cache.exists("course:1").await.expect("exists"),
            "nothing cached"
        );
        let ok = courses(&cache, &loads, true, vec![2, 1]).await;
        assert_eq!(
            ok,
            Ok(vec![Some("course 2".into()), Some("course 1".into())])
        );
        let cached = courses(&cache, &loads, false, vec![1, 2]).await;
        assert_eq!(
            cached,
            Ok(vec![Some("course 1".into()), Some("course 2".into())]),
            "all cached: the body does not run"
        );
        assert_eq!(loads.runs(), [vec![1, 2], vec![1, 2]]);
    })
    .await;
}
