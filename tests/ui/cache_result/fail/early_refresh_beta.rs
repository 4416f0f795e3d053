use cachemere::cache_result;

#[cache_result("a:{id}", beta = 2.0)]
async fn without(id: u32) -> u32 {
    id
}

#[cache_result("b:{id}", early_refresh = true, beta = 0)]
async fn zero(id: u32) -> u32 {
    id
}

#[cache_result("c:{id}", early_refresh = true, beta = "fast")]
async fn text(id: u32) -> u32 {
    id
}

#[cache_result("d:{id}", early_refresh = yes)]
async fn not_bool(id: u32) -> u32 {
    id
}

fn main() {}
