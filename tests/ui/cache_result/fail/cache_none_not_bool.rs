use cachemere::cache_result;

#[cache_result("user:{user_id}", cache_none = "yes")]
async fn profile(user_id: u32) -> Option<String> {
    Some(user_id.to_string())
}

fn main() {}
