use cachemere::cache_result;

#[cache_result("audit:{user_id}")]
async fn audit(user_id: u32) {
    let _ = user_id;
}

fn main() {}
