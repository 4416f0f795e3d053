use std::collections::HashMap;

use cachemere::cache_result;

#[cache_result("users:all", batch(id in ids))]
async fn names(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

fn main() {}
