use cachemere::cache_result;

#[cache_result("analytics:{day}")]
async fn analytics() -> u64 {
    42
}

fn main() {}
