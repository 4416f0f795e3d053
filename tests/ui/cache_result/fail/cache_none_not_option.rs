use cachemere::cache_result;

#[cache_result("user:{user_id}", cache_none = true)]
async fn profile(user_id: u32) -> String {
    user_id.to_string()
}

fn main() {}
