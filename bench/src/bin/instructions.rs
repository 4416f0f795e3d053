//! Client instructions per operation, counted by callgrind: deterministic where wall-clock
//! ratios on a shared 2-core machine drift by tens of percent.
//!
//! `instructions table [--quick]` starts a private `redis-server` (outside valgrind), then for
//! every variant runs this binary under `valgrind --tool=callgrind` twice, with N and 2N
//! operations after the same warm-up, and prints (I(2N) - I(N)) / N as a markdown table.
//! `instructions run <variant> <n> <redis url>` is one such measured run.

use std::process::Command;
use std::time::Duration;

use cache_core::{Cache, MemoryStore, RedisStore, cache_result};
use cache_session::{SessionConfig, SessionData, SessionManager};
use cache_testing::RedisServer;
use cached::macros::concurrent_cached;
use cachemere_bench::{BenchError, CACHED_URL, bincode_bytes, bincode_value};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// A 9-field profile, about 100 bytes of bincode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Small {
    user_id: u64,
    username: String,
    display_name: String,
    email: String,
    role: String,
    grade_level: u8,
    points: u32,
    verified: bool,
    created_at: u64,
}

impl Small {
    fn sample(user_id: u64) -> Small {
        Small {
            user_id,
            username: format!("student{user_id}"),
            display_name: "Ada Lovelace".into(),
            email: format!("student{user_id}@school.example"),
            role: "student".into(),
            grade_level: 9,
            points: 1280,
            verified: true,
            created_at: 1_700_000_000,
        }
    }
}

#[cache_result("instr:small:{id}", crate = "cache_core", cache = cache)]
async fn small(cache: &Cache, id: u64) -> Small {
    Small::sample(id)
}

#[concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, Small>",
    create = r##" {
        cached::AsyncRedisCache::builder("instr:cached:small")
            .ttl(cached::time::Duration::from_secs(3600))
            .connection_string(CACHED_URL.get().expect("redis url"))
            .build()
            .await
            .expect("cached's redis store")
    } "##
)]
async fn cached_small(id: u64) -> Result<Small, BenchError> {
    Ok(Small::sample(id))
}

async fn hand_small(connection: &mut redis::aio::ConnectionManager, id: u64) -> Small {
    let key = format!("hand:small:{id}");
    let bytes: Option<Vec<u8>> = connection.get(&key).await.expect("GET");
    bincode_value(&bytes.expect("hand-written value present"))
}

/// The seed's session JSON, as a hand-written session layer would store it.
const SEED_SESSION: &str = r#"{"user_id":"42","created_at":"2026-12-01T10:00:00.000Z","last_accessed":"2026-12-01T10:05:00.000Z","expires_at":"2026-12-02T10:05:00.000Z","data":{"role":"teacher","permissions":["read","write","grade"],"department":"Mathematics"}}"#;

const KEYS: u64 = 100;
const TASKS: u64 = 64;

/// A row of the table: what is measured, against what, per how many operations, and the
/// ratio it should stay under.
struct Row {
    name: &'static str,
    ours: &'static str,
    baseline: &'static str,
    baseline_name: &'static str,
    per: u64,
    target: f64,
}

const ROWS: [Row; 10] = [
    Row {
        name: "`#[cache_result]` hit on Redis, sequential",
        ours: "macro",
        baseline: "hand",
        baseline_name: "hand-written redis-rs GET + bincode decode",
        per: 1,
        target: 1.03,
    },
    Row {
        name: "same, 64 tasks",
        ours: "macro-64",
        baseline: "hand-64",
        baseline_name: "the same, 64 tasks",
        per: 1,
        target: 1.03,
    },
    Row {
        name: "`#[cache_result]` hit on Redis, sequential",
        ours: "macro",
        baseline: "cached",
        baseline_name: "the `cached` crate's `#[concurrent_cached(redis)]`",
        per: 1,
        target: 1.0,
    },
    Row {
        name: "`#[cache_result]` hit on the in-process store",
        ours: "memory-macro",
        baseline: "moka",
        baseline_name: "raw moka `future::Cache::get` of the typed value",
        per: 1,
        target: 1.15,
    },
    Row {
        name: "same",
        ours: "memory-macro",
        baseline: "moka-sync",
        baseline_name: "raw moka `sync::Cache::get` (what the store runs on)",
        per: 1,
        target: 1.5,
    },
    Row {
        name: "`#[cache_result]` hit in the local tier (Redis behind it)",
        ours: "local-macro",
        baseline: "moka",
        baseline_name: "raw moka `future::Cache::get` of the typed value",
        per: 1,
        target: 1.15,
    },
    Row {
        name: "`get_multi` of 100 keys, per key",
        ours: "get-multi",
        baseline: "mget",
        baseline_name: "redis-rs MGET + decode",
        per: KEYS,
        target: 1.05,
    },
    Row {
        name: "`get_or_set` miss (`GET`, compute, `SET NX` with the fence)",
        ours: "miss",
        baseline: "miss-plain",
        baseline_name: "the same without the fence (`SET`)",
        per: 1,
        target: 1.05,
    },
    Row {
        name: "`delete` then a `get_or_set` miss over its marker (fence script, compare-and-set script)",
        ours: "miss-marker",
        baseline: "miss-marker-plain",
        baseline_name: "the same without the fence (`UNLINK`, `SET`)",
        per: 1,
        target: 1.5,
    },
    Row {
        name: "session read (`get_session`, touch included)",
        ours: "session",
        baseline: "raw-session",
        baseline_name: "raw GET + `serde_json` parse of the seed's session JSON",
        per: 1,
        target: 1.5,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run", variant, n, url] => {
            let n: u64 = n.parse().expect("n");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run(variant, n, url));
        }
        ["table", rest @ ..] => table(rest.contains(&"--quick")),
        _ => {
            eprintln!("usage: instructions table [--quick] | instructions run <variant> <n> <url>");
            std::process::exit(2);
        }
    }
}

async fn run(variant: &str, n: u64, url: &str) {
    // with the `metrics` feature, what a cache costs with a real recorder listening
    // (the recorder's upkeep, which a scrape also runs, drains the histograms every 256
    // operations: without it their sample buffers would grow for the whole run)
    #[cfg(feature = "metrics")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    let upkeep = |_i: u64| {
        #[cfg(feature = "metrics")]
        if _i.is_multiple_of(256) {
            recorder.run_upkeep();
        }
    };
    let mut config = cache_core::Config::default();
    config.redis_url = Some(url.to_owned());
    config.command_timeout = Duration::from_secs(5);
    let store = RedisStore::connect(&config).await.expect("connect");
    let cache = Cache::builder(store.clone()).config(&config).build();
    let client = redis::Client::open(url).expect("client");
    let mut raw = redis::aio::ConnectionManager::new(client)
        .await
        .expect("raw connection");
    CACHED_URL.get_or_init(|| url.to_owned());
    const WARM: u64 = 200;
    match variant {
        "macro" => {
            for i in 0..WARM + n {
                std::hint::black_box(small(&cache, 1).await);
                upkeep(i);
            }
        }
        #[cfg(feature = "tls")]
        "macro-tls" => {
            // its own TLS server, started (certificates included) in both the N and the 2N
            // run, so that the start cancels out of (I(2N) - I(N)) / N
            let server = RedisServer::start_tls().expect("start a TLS redis-server");
            let mut config = server.config();
            config.command_timeout = Duration::from_secs(5);
            let store = RedisStore::connect(&config)
                .await
                .expect("connect over TLS");
            let cache = Cache::builder(store).config(&config).build();
            for i in 0..WARM + n {
                std::hint::black_box(small(&cache, 1).await);
                upkeep(i);
            }
        }
        "macro-encrypted" => {
            let cache = Cache::builder(store.clone())
                .config(&config)
                .encryption(cache_core::encryption::EncryptionKeys::new([[7u8; 32]]))
                .build();
            for i in 0..WARM + n {
                std::hint::black_box(small(&cache, 1).await);
                upkeep(i);
            }
        }
        "hand" => {
            let _: () = raw
                .set("hand:small:1", bincode_bytes(&Small::sample(1)))
                .await
                .expect("SET");
            for _ in 0..WARM + n {
                std::hint::black_box(hand_small(&mut raw, 1).await);
            }
        }
        "cached" => {
            for _ in 0..WARM + n {
                std::hint::black_box(cached_small(1).await.expect("cached"));
            }
        }
        "macro-64" | "hand-64" => {
            if variant == "hand-64" {
                let _: () = raw
                    .set("hand:small:1", bincode_bytes(&Small::sample(1)))
                    .await
                    .expect("SET");
            }
            let through_macro = variant == "macro-64";
            for rounds in [WARM / TASKS + 1, n / TASKS] {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..TASKS {
                    let (cache, mut raw) = (cache.clone(), raw.clone());
                    tasks.spawn(async move {
                        for _ in 0..rounds {
                            if through_macro {
                                std::hint::black_box(small(&cache, 1).await);
                            } else {
                                std::hint::black_box(hand_small(&mut raw, 1).await);
                            }
                        }
                    });
                }
                tasks.join_all().await;
            }
        }
        "miss" | "miss-plain" | "miss-marker" | "miss-marker-plain" => {
            // a get-or-set miss on a new key each time: GET, compute, then `SET NX` with the
            // fence (`SET` without); "-marker": a miss over an invalidation's marker (a
            // compare-and-set script; without the fence the delete removes the key), the
            // delete included in both
            let fenced = !variant.ends_with("plain");
            let over_marker = variant.starts_with("miss-marker");
            let cache = Cache::builder(store.clone())
                .config(&config)
                .fence(fenced.then_some(Duration::from_secs(60)))
                .build();
            // keys of this process only: the N and 2N runs share the server, and a key
            // the other run wrote would be a hit
            let run = std::process::id();
            for i in 0..WARM + n {
                let key = format!("instr:miss:{variant}:{run}:{i}");
                if over_marker {
                    cache.delete(&key).await.expect("delete");
                }
                let computed =
                    cache.get_or_set(&key, cache_core::Ttl::Long, || async { Small::sample(i) });
                std::hint::black_box(computed.await.expect("get_or_set"));
                upkeep(i);
            }
        }
        "memory-macro" => {
            let cache = Cache::builder(MemoryStore::new()).build();
            for i in 0..WARM + n {
                std::hint::black_box(small(&cache, 1).await);
                upkeep(i);
            }
        }
        "moka" => {
            let moka: moka::future::Cache<String, Small> = moka::future::Cache::new(10_000);
            moka.insert("instr:small:1".into(), Small::sample(1)).await;
            for _ in 0..WARM + n {
                let key = format!("instr:small:{}", std::hint::black_box(1));
                std::hint::black_box(moka.get(&key).await.expect("moka hit"));
            }
        }
        "local-macro" => {
            // a Redis cache with the local tier: once the first read has kept a copy, every
            // hit is the local tier's
            let cache = Cache::builder(store.clone())
                .config(&config)
                .local_cache(64 << 20, Duration::from_secs(600))
                .build();
            while cache.local_mode() == Some(cache_core::LocalMode::Disconnected) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for i in 0..WARM + n {
                std::hint::black_box(small(&cache, 1).await);
                upkeep(i);
            }
        }
        "moka-sync" => {
            let moka: moka::sync::Cache<String, Small> = moka::sync::Cache::new(10_000);
            moka.insert("instr:small:1".into(), Small::sample(1));
            for _ in 0..WARM + n {
                let key = format!("instr:small:{}", std::hint::black_box(1));
                std::hint::black_box(moka.get(&key).expect("moka hit"));
            }
        }
        "get-multi" | "mget" => {
            let keys: Vec<String> = (0..KEYS).map(|i| format!("instr:multi:{i}")).collect();
            let items: Vec<(String, Small)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (key.clone(), Small::sample(i as u64)))
                .collect();
            cache
                .set_multi(&items, cache_core::Ttl::Long)
                .await
                .expect("set_multi");
            let raw_keys: Vec<String> = keys.iter().map(|key| format!("{key}:raw")).collect();
            for (i, key) in raw_keys.iter().enumerate() {
                let _: () = raw
                    .set(key, bincode_bytes(&Small::sample(i as u64)))
                    .await
                    .expect("SET");
            }
            for _ in 0..WARM / 10 + n {
                if variant == "get-multi" {
                    std::hint::black_box(
                        cache.get_multi::<Small, _>(&keys).await.expect("get_multi"),
                    );
                } else {
                    let found: Vec<Option<Vec<u8>>> = raw.mget(&raw_keys).await.expect("MGET");
                    let values: Vec<Option<Small>> = found
                        .iter()
                        .map(|bytes| bytes.as_deref().map(bincode_value))
                        .collect();
                    std::hint::black_box(values);
                }
            }
        }
        "session" | "session-encrypted" | "session-encrypted-v2" => {
            let format = match variant {
                "session-encrypted-v2" => cache_core::encryption::SealFormat::V2,
                _ => cache_core::encryption::SealFormat::V1,
            };
            let keys = (variant != "session")
                .then(|| cache_core::encryption::EncryptionKeys::new([[7u8; 32]]))
                .flatten()
                .map(|keys| keys.with_format(format));
            let sessions = SessionManager::new(
                store,
                SessionConfig::default()
                    .secret("instructions")
                    .touch_after(Duration::ZERO)
                    .encryption(keys),
            );
            let data = SessionData::new()
                .with("role", "teacher")
                .and_then(|d| d.with("permissions", &["read", "write", "grade"]))
                .and_then(|d| d.with("department", "Mathematics"))
                .expect("data");
            let token = sessions
                .create_session("42", data, None)
                .await
                .expect("create");
            for _ in 0..WARM + n {
                std::hint::black_box(sessions.get_session(&token).await.expect("get"));
            }
        }
        "raw-session" => {
            let _: () = raw.set("raw:session", SEED_SESSION).await.expect("SET");
            for _ in 0..WARM + n {
                let bytes: Vec<u8> = raw.get("raw:session").await.expect("GET");
                let session: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                std::hint::black_box(session);
            }
        }
        other => panic!("unknown variant {other}"),
    }
}

/// Instructions of one run under callgrind.
fn instructions(variant: &str, n: u64, url: &str) -> u64 {
    let out = std::env::temp_dir().join(format!("cachemere-callgrind-{variant}-{n}.out"));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().expect("this binary"))
        .args(["run", variant, &n.to_string(), url])
        .status()
        .expect("valgrind (scripts/bench installs it)");
    assert!(status.success(), "{variant} {n} failed under valgrind");
    let profile = std::fs::read_to_string(&out).expect("callgrind output");
    let _ = std::fs::remove_file(&out);
    profile
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary: ")
                .or(line.strip_prefix("totals: "))
        })
        .and_then(|total| total.split_whitespace().next()?.parse().ok())
        .expect("callgrind total")
}

fn per_operation(variant: &str, n: u64, url: &str, per: u64) -> u64 {
    let (once, twice) = (
        instructions(variant, n, url),
        instructions(variant, 2 * n, url),
    );
    twice.saturating_sub(once) / (n * per)
}

fn table(quick: bool) {
    let server = RedisServer::start_private().expect("start redis-server");
    let url = server.url();
    let (n, multi_n) = if quick { (64, 2) } else { (2048, 64) };
    println!("| operation | cachemere | baseline | ratio | target | verdict |");
    println!("|---|---:|---|---:|---:|---|");
    let mut measured = std::collections::HashMap::new();
    for row in ROWS {
        let count = if row.per == 1 { n } else { multi_n };
        let mut measure = |variant: &'static str| {
            *measured
                .entry(variant)
                .or_insert_with(|| per_operation(variant, count, &url, row.per))
        };
        let (ours, theirs) = (measure(row.ours), measure(row.baseline));
        let ratio = ours as f64 / theirs.max(1) as f64;
        let met = if row.target == 1.0 {
            ratio < 1.0
        } else {
            ratio <= row.target
        };
        println!(
            "| {} | {ours} | {}: {theirs} | {ratio:.2}x | {}{:.2}x | {} |",
            row.name,
            row.baseline_name,
            if row.target == 1.0 { "< " } else { "<= " },
            row.target,
            if met { "met" } else { "**missed**" }
        );
    }
    let plain = measured
        .get("macro")
        .copied()
        .unwrap_or_else(|| per_operation("macro", n, &url, 1));
    let sealed = per_operation("macro-encrypted", n, &url, 1);
    println!();
    println!(
        "Encryption at rest (`CACHE_ENCRYPTION_KEY`, XChaCha20-Poly1305): a `#[cache_result]` \
         hit on Redis costs {sealed} instructions with it, {plain} without (+{}, {:.2}x).",
        sealed.saturating_sub(plain),
        sealed as f64 / plain.max(1) as f64
    );
    let plain_session = measured
        .get("session")
        .copied()
        .unwrap_or_else(|| per_operation("session", n, &url, 1));
    let sealed_session = per_operation("session-encrypted", n, &url, 1);
    let bound_session = per_operation("session-encrypted-v2", n, &url, 1);
    println!(
        "A session read (`get_session`, 3 data fields) costs {sealed_session} instructions with \
         it, {plain_session} without (+{}, {:.2}x); {bound_session} in format 2 \
         (`CACHE_ENCRYPTION_FORMAT=2`, fields bound to the session).",
        sealed_session.saturating_sub(plain_session),
        sealed_session as f64 / plain_session.max(1) as f64
    );
}
