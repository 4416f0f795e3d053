use cachemere::{Cache, cache_result};

struct Grades {
    cache: Cache,
    scale: u32,
}

impl Grades {
    #[cache_result("grade:{id}", cache = self.cache, early_refresh = true)]
    async fn grade(&self, id: u32, name: &str) -> String {
        format!("{name}: {}", id * self.scale)
    }
}

fn main() {}
