use cachemere::cache_result;

#[cache_result("user:{user_id}:class:{class_id}", key_args = ["user_id"])]
async fn membership(user_id: u32, class_id: u32) -> bool {
    user_id == class_id
}

fn main() {}
