use cachemere::cache_result;

trait Directory {
    #[cache_result("user:{user_id}")]
    async fn profile(&self, user_id: u32) -> String;
}

fn main() {}
