use std::collections::{BTreeMap, HashMap, HashSet};

use cachemere::{Cache, cache_result};

#[cache_result("user:{tenant}:{id}", batch(id in ids), ttl = std::time::Duration::from_secs(60))]
async fn names(tenant: &str, ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, format!("{tenant} {id}"))).collect()
}

#[cache_result("grade:{id}", batch(id in ids), cache = cache, class = "long")]
async fn grades(cache: &Cache, ids: HashSet<u32>) -> BTreeMap<u32, Option<f32>> {
    ids.into_iter().map(|id| (id, None)).collect()
}

#[cache_result("score:{id}", batch(id in ids), stale_for = 60)]
async fn scores(ids: Vec<u32>) -> Vec<Option<u64>> {
    ids.into_iter().map(|id| Some(u64::from(id))).collect()
}

#[cache_result("mark:{id}", batch(id in ids))]
async fn marks(ids: Vec<u32>) -> Result<HashMap<u32, u8>, std::io::Error> {
    Ok(ids.into_iter().map(|id| (id, 1)).collect())
}

#[cache_result("badge:{id}", batch(id in ids))]
async fn badges(ids: Vec<u32>) -> Result<Vec<Option<String>>, String> {
    Ok(ids.into_iter().map(|_| None).collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder(cachemere::MemoryStore::new()).build();
    assert_eq!(names("north", vec![1]).await[&1], "north 1");
    assert_eq!(grades(&cache, HashSet::from([3])).await[&3], None);
    assert_eq!(scores(vec![2, 3]).await, [Some(2), Some(3)]);
    assert_eq!(marks(vec![4]).await.expect("marks")[&4], 1);
    assert_eq!(badges(vec![5]).await, Ok(vec![None]));
}
