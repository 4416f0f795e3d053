use cachemere::cache_result;

struct Directory {
    school: String,
}

impl Directory {
    #[cache_result("school:{self.school}:size")]
    async fn size(self) -> usize {
        self.school.len()
    }
}

fn main() {}
