use cachemere::cache_result;

#[cache_result("user:{user_id}")]
struct Profile {
    user_id: u32,
}

fn main() {}
