use cachemere::cache_result;

#[cache_result("school:{self.school}")]
async fn size(school: &str) -> usize {
    school.len()
}

fn main() {}
