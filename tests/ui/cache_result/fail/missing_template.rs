use cachemere::cache_result;

#[cache_result(expire = 60)]
async fn profile(user_id: u32) -> String {
    user_id.to_string()
}

fn main() {}
