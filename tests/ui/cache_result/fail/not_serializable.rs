use cachemere::cache_result;

struct Connection {
    open: bool,
}

#[cache_result("connection:{name}")]
async fn connect(name: &str) -> Connection {
    Connection { open: !name.is_empty() }
}

fn main() {}
