use std::collections::HashMap;

use cachemere::cache_result;

struct Database;

impl Database {
    fn name(&self, id: u64) -> String {
        id.to_string()
    }
}

#[cache_result("user:{id}", batch(id in ids))]
async fn names(db: Database, ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, db.name(id))).collect()
}

fn main() {}
