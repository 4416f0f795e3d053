use std::collections::HashMap;

use cachemere::cache_result;

#[cache_result("user:{id}", batch(id in ids))]
async fn names(id: u64, ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|each| (each, id.to_string())).collect()
}

fn main() {}
