//! The expansion relies on none of the caller's names: the prelude types are shadowed here.

#![allow(dead_code)]

use cachemere::cache_result;

struct Result;
struct Option;
struct String;
struct Box;
struct Vec;
struct Some;
struct None;
struct Ok;
struct Err;
struct Cache;
struct Duration;
mod core {}

#[cache_result("shadowed:{id}", expire = 5)]
async fn shadowed(id: u32) -> std::string::String {
    id.to_string()
}

#[cache_result("shadowed:opt:{id}")]
async fn shadowed_option(id: u32) -> std::option::Option<u32> {
    std::option::Option::Some(id)
}

#[cache_result("shadowed:res:{id}", tags = ["t:{id}"])]
async fn shadowed_result(id: u32) -> std::result::Result<u32, std::string::String> {
    std::result::Result::Ok(id)
}

fn main() {}
