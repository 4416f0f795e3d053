use cachemere::invalidate_cache;

#[invalidate_cache("user:{user_id}")]
fn save(user_id: u32) -> u32 {
    user_id
}

fn main() {}
