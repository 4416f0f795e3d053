use cachemere::cache_result;

#[cache_result("user:{user_id}")]
async fn profile(user_id: u32) -> impl std::fmt::Display {
    user_id
}

fn main() {}
