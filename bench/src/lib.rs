//! Shared fixtures of the benchmark suite: the values measured and the servers.

use std::sync::OnceLock;

use cache_core::{Cache, RedisStore, cache_result};
use cache_testing::RedisServer;
use cached::macros::concurrent_cached;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// The server the `cached` crate's functions connect to (set once per process).
pub static CACHED_URL: OnceLock<String> = OnceLock::new();

/// A hit through `#[cache_result]`.
#[cache_result("bench:profile:{id}", crate = "cache_core", cache = cache)]
pub async fn cachemere_profile(cache: &Cache, id: u64) -> Profile {
    Profile::sample(id)
}

/// The same through the `cached` crate's Redis store.
#[concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, Profile>",
    create = r##" {
        cached::AsyncRedisCache::builder("bench:cached:profile")
            .ttl(cached::time::Duration::from_secs(3600))
            .connection_string(CACHED_URL.get().expect("redis url"))
            .build()
            .await
            .expect("cached's redis store")
    } "##
)]
pub async fn cached_profile(id: u64) -> Result<Profile, BenchError> {
    Ok(Profile::sample(id))
}

/// The same by hand: redis-rs `GET` and a bincode decode.
pub async fn hand_written(connection: &mut redis::aio::ConnectionManager, id: u64) -> Profile {
    let key = format!("hand:profile:{id}");
    let bytes: Option<Vec<u8>> = connection.get(&key).await.expect("GET");
    bincode_value(&bytes.expect("hand-written value present"))
}

/// Stores the value each of the three reads, so that all of them hit.
pub async fn warm(bench: &Bench) {
    CACHED_URL.get_or_init(|| bench.url());
    let mut raw = bench.raw.clone();
    let _: () = raw
        .set("hand:profile:1", bincode_bytes(&Profile::sample(1)))
        .await
        .expect("SET");
    cachemere_profile(&bench.cache, 1).await;
    cached_profile(1).await.expect("cached warm-up");
}

/// A user profile with 20 fields, the typical cached record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: u64,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: String,
    pub school: String,
    pub grade_level: u8,
    pub class_ids: Vec<u32>,
    pub locale: String,
    pub timezone: String,
    pub created_at: u64,
    pub last_login: u64,
    pub avatar_url: String,
    pub bio: String,
    pub points: u32,
    pub streak_days: u16,
    pub verified: bool,
    pub subscribed: bool,
    pub guardian_email: Option<String>,
    pub preferences: Vec<(String, String)>,
}

impl Profile {
    pub fn sample(user_id: u64) -> Profile {
        Profile {
            user_id,
            username: format!("student{user_id}"),
            display_name: "Ada Lovelace".into(),
            email: format!("student{user_id}@school.example"),
            role: "student".into(),
            school: "Northfield Secondary".into(),
            grade_level: 9,
            class_ids: vec![101, 204, 317, 422],
            locale: "en-GB".into(),
            timezone: "Europe/London".into(),
            created_at: 1_700_000_000,
            last_login: 1_764_300_000,
            avatar_url: format!("https://cdn.school.example/avatars/{user_id}.png"),
            bio: "Enjoys analytical engines and poetry.".into(),
            points: 1280,
            streak_days: 17,
            verified: true,
            subscribed: false,
            guardian_email: Some("guardian@example.com".into()),
            preferences: vec![
                ("theme".into(), "dark".into()),
                ("digest".into(), "weekly".into()),
            ],
        }
    }
}

/// One item of a 100-item list (a class roster or an assignment list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u32,
    pub title: String,
    pub due: u64,
    pub score: Option<f32>,
}

pub fn items(n: u32) -> Vec<Item> {
    (0..n)
        .map(|id| Item {
            id,
            title: format!("Assignment {id}: the difference engine"),
            due: 1_764_300_000 + u64::from(id) * 86_400,
            score: (id % 3 == 0).then_some(87.5),
        })
        .collect()
}

/// A private redis-server with a cache and a raw connection on it.
pub struct Bench {
    pub server: RedisServer,
    pub cache: Cache,
    pub store: RedisStore,
    pub raw: redis::aio::ConnectionManager,
}

impl Bench {
    pub async fn start() -> Bench {
        let server = RedisServer::start_private().expect("start redis-server");
        let mut config = server.config();
        config.command_timeout = std::time::Duration::from_secs(5);
        let store = RedisStore::connect(&config).await.expect("connect");
        let cache = Cache::builder(store.clone()).config(&config).build();
        let client = redis::Client::open(server.url()).expect("client");
        let raw = redis::aio::ConnectionManager::new(client)
            .await
            .expect("raw connection");
        Bench {
            server,
            cache,
            store,
            raw,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// Plain bincode, as a hand-written cache would store it.
pub fn bincode_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encode")
}

pub fn bincode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .expect("decode")
        .0
}

/// The error the `cached` crate's functions map store failures to.
#[derive(Debug, Clone)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A private three-primary cluster holding 100 profiles twice: through a cachemere cache, and
/// as plain bincode for a hand-written redis-rs cluster connection.
pub struct ClusterBench {
    pub cluster: cache_testing::RedisCluster,
    pub cache: Cache,
    pub raw: redis::cluster_async::ClusterConnection,
    pub keys: Vec<String>,
    pub raw_keys: Vec<String>,
}

impl ClusterBench {
    pub async fn start() -> ClusterBench {
        let cluster = cache_testing::RedisCluster::start().expect("start a redis cluster");
        let store = RedisStore::connect(&cluster.config())
            .await
            .expect("connect to the cluster");
        let nodes = cluster
            .ports()
            .into_iter()
            .map(|port| format!("redis://127.0.0.1:{port}"));
        let mut raw = redis::cluster::ClusterClient::new(nodes)
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("redis-rs cluster connection");
        let cache = Cache::builder(store).build();
        let keys: Vec<String> = (0..100).map(|i| format!("bench:cluster:{i}")).collect();
        let raw_keys: Vec<String> = keys.iter().map(|key| format!("{key}:raw")).collect();
        let items: Vec<(String, Profile)> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (key.clone(), Profile::sample(i as u64)))
            .collect();
        cache
            .set_multi(&items, cache_core::Ttl::Long)
            .await
            .expect("set_multi");
        for (i, key) in raw_keys.iter().enumerate() {
            let _: () =
                redis::AsyncCommands::set(&mut raw, key, bincode_bytes(&Profile::sample(i as u64)))
                    .await
                    .expect("set");
        }
        ClusterBench {
            cluster,
            cache,
            raw,
            keys,
            raw_keys,
        }
    }

    /// The 100 profiles through `Cache::get_multi`.
    pub async fn get_multi(&self) -> Vec<Option<Profile>> {
        self.cache
            .get_multi::<Profile, _>(&self.keys)
            .await
            .expect("get_multi")
    }

    /// The same by hand: redis-rs's cluster `MGET` (it splits the command by slot) + decode.
    pub async fn hand_written_mget(&self) -> Vec<Option<Profile>> {
        let mut raw = self.raw.clone();
        let found: Vec<Option<Vec<u8>>> = redis::AsyncCommands::mget(&mut raw, &self.raw_keys)
            .await
            .expect("MGET");
        found
            .iter()
            .map(|bytes| bytes.as_deref().map(bincode_value))
            .collect()
    }
}
