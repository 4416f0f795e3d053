use cachemere::cache_result;

struct Id(u32);

#[cache_result("user:{id}")]
async fn profile(id: Id) -> u32 {
    id.0
}

fn main() {}
