use cachemere::invalidate_cache;

#[invalidate_cache("user:1")]
const LIMIT: u32 = 3;

fn main() {}
