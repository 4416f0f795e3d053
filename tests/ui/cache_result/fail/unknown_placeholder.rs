use cachemere::cache_result;

#[cache_result("user:assignments:{usr_id}", expire = 1800)]
async fn get_user_assignments(user_id: &str, limit: usize) -> Vec<String> {
    vec![user_id.to_owned(); limit]
}

fn main() {}
