use cachemere::cache_result;

#[cache_result(key = "user:{user_id}")]
async fn profile(user_id: u32) -> String {
    user_id.to_string()
}

fn main() {}
