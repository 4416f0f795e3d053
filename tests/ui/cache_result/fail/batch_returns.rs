use std::collections::HashMap;

use cachemere::cache_result;

#[cache_result("user:{id}", batch(id in ids))]
async fn names(ids: Vec<u64>) -> Vec<String> {
    ids.into_iter().map(|id| id.to_string()).collect()
}

#[cache_result("user:{id}", batch(id in ids))]
async fn fallible(ids: Vec<u64>) -> Result<Vec<String>, String> {
    Ok(ids.into_iter().map(|id| id.to_string()).collect())
}

#[cache_result("user:{id}", batch(id in ids))]
async fn optional(ids: Vec<u64>) -> Option<HashMap<u64, String>> {
    Some(ids.into_iter().map(|id| (id, id.to_string())).collect())
}

fn main() {}
