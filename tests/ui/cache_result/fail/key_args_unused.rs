use cachemere::cache_result;

#[cache_result("user:{user_id}", key_args = ["user_id", "verbose"])]
async fn profile(user_id: u32, verbose: bool) -> String {
    format!("{user_id}{verbose}")
}

fn main() {}
