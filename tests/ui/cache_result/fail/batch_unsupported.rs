use std::collections::HashMap;

use cachemere::cache_result;

#[cache_result("user:{id}", batch(id in ids), lock = true, early_refresh = true)]
async fn names(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

struct Directory;

impl Directory {
    #[cache_result("user:{id}", batch(id in ids))]
    async fn names(&mut self, ids: Vec<u64>) -> HashMap<u64, String> {
        ids.into_iter().map(|id| (id, id.to_string())).collect()
    }
}

fn main() {}
