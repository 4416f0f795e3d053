use std::collections::HashMap;

use cachemere::cache_result;

#[cache_result("user:{id}", batch(id in ids))]
async fn names(ids: Vec<u64>) -> Vec<String> {
    ids.into_iter().map(|id| id.to_string()).collect()
}

#[cache_result("user:{id}", batch(id in ids))]
async fn fallible(ids: Vec<u64>) -> Result<HashMap<u64, String>, String> {
    Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
}

fn main() {}
