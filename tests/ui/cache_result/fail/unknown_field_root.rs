use cachemere::cache_result;

struct Student {
    id: u32,
}

#[cache_result("student:{pupil.id}")]
async fn student(student: &Student) -> u32 {
    student.id
}

fn main() {}
