use cachemere::invalidate_cache;

#[invalidate_cache("user:profile:{user}", "user:*:{user_id}")]
async fn save(user_id: u32) -> u32 {
    user_id
}

fn main() {}
