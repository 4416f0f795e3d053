//! The criterion suite. Each group holds a cachemere path and its baseline, measured in the
//! same run against the same private redis-server; `report` turns the estimates into ratios.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, MemoryStore, Ttl};
use cache_session::{SessionConfig, SessionData, SessionManager, SessionPatch, SessionService};
use cachemere_bench::{
    Bench, ClusterBench, Item, Profile, bincode_bytes, bincode_value, cached_profile,
    cachemere_profile, hand_written, items, warm,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use redis::AsyncCommands;
use tokio::runtime::Runtime;

const TASKS: u64 = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args()
}

/// Runs `call` `iters` times spread over `TASKS` tasks; the time per call, scaled to `iters`.
async fn concurrently<F, Fut>(iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(TASKS).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    call().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    started
        .elapsed()
        .mul_f64(iters as f64 / (per_task * TASKS) as f64)
}

fn hits(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::start());
    rt.block_on(warm(&bench));

    let mut group = c.benchmark_group("hit_sequential");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hand_written", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = bench.raw.clone();
            async move { black_box(hand_written(&mut raw, 1).await) }
        })
    });
    group.bench_function("cachemere_macro", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cachemere_profile(&bench.cache, 1).await) })
    });
    group.bench_function("cached_crate", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached_profile(1).await.expect("cached")) })
    });
    group.finish();

    let mut group = c.benchmark_group("hit_64_tasks");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hand_written", |b| {
        let raw = bench.raw.clone();
        b.to_async(&rt).iter_custom(|iters| {
            let raw = raw.clone();
            concurrently(iters, move || {
                let mut raw = raw.clone();
                async move {
                    black_box(hand_written(&mut raw, 1).await);
                }
            })
        })
    });
    group.bench_function("cachemere_macro", |b| {
        let cache = bench.cache.clone();
        b.to_async(&rt).iter_custom(|iters| {
            let cache = cache.clone();
            concurrently(iters, move || {
                let cache = cache.clone();
                async move {
                    black_box(cachemere_profile(&cache, 1).await);
                }
            })
        })
    });
    group.bench_function("cached_crate", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            concurrently(iters, || async {
                black_box(cached_profile(1).await.expect("cached"));
            })
        })
    });
    group.finish();

    for n in [100usize, 1000] {
        let keys: Vec<String> = (0..n).map(|i| format!("bench:multi:{i}")).collect();
        rt.block_on(async {
            let items: Vec<(String, Profile)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (key.clone(), Profile::sample(i as u64)))
                .collect();
            bench
                .cache
                .set_multi(&items, Ttl::Long)
                .await
                .expect("set_multi");
        });
        let mut group = c.benchmark_group(format!("multi_{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("sequential_get", |b| {
            b.to_async(&rt).iter(|| async {
                for key in &keys {
                    black_box(bench.cache.get::<Profile>(key).await.expect("get"));
                }
            })
        });
        group.bench_function("get_multi", |b| {
            b.to_async(&rt).iter(|| async {
                black_box(
                    bench
                        .cache
                        .get_multi::<Profile, _>(&keys)
                        .await
                        .expect("get_multi"),
                )
            })
        });
        group.finish();
    }
}

/// `get_multi` of 100 keys on a three-primary cluster against redis-rs's own cluster `MGET`
/// (which splits the command by slot itself) of the same values as plain bincode.
fn cluster_multi(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(ClusterBench::start());
    let mut group = c.benchmark_group("cluster_multi_100");
    group.throughput(Throughput::Elements(100));
    group.bench_function("redis_rs_mget", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bench.hand_written_mget().await) })
    });
    group.bench_function("get_multi", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bench.get_multi().await) })
    });
    group.bench_function("sequential_get", |b| {
        b.to_async(&rt).iter(|| async {
            for key in &bench.keys {
                black_box(bench.cache.get::<Profile>(key).await.expect("get"));
            }
        })
    });
    group.finish();
}

fn embedded(c: &mut Criterion) {
    let rt = runtime();
    let cache = Cache::builder(MemoryStore::new()).build();
    let typed: moka::future::Cache<String, Arc<Profile>> = moka::future::Cache::new(10_000);
    let bytes: moka::future::Cache<String, Arc<[u8]>> = moka::future::Cache::new(10_000);
    rt.block_on(async {
        cache
            .set("p", &Profile::sample(1), Ttl::Long)
            .await
            .expect("set");
        cachemere_profile(&cache, 1).await;
        typed.insert("p".into(), Arc::new(Profile::sample(1))).await;
        bytes
            .insert("p".into(), bincode_bytes(&Profile::sample(1)).into())
            .await;
    });
    let mut group = c.benchmark_group("embedded");
    group.throughput(Throughput::Elements(1));
    group.bench_function("moka_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(typed.get("p").await) })
    });
    group.bench_function("moka_get_decode", |b| {
        b.to_async(&rt).iter(|| async {
            let stored = bytes.get("p").await.expect("hit");
            black_box(bincode_value::<Profile>(&stored))
        })
    });
    group.bench_function("cache_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get::<Profile>("p").await.expect("get")) })
    });
    group.bench_function("cachemere_macro", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cachemere_profile(&cache, 1).await) })
    });
    group.finish();
}

fn sessions(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::start());
    let touching = SessionManager::new(
        bench.store.clone(),
        SessionConfig::default().touch_after(Duration::ZERO),
    );
    let service = SessionService::new(SessionManager::new(
        bench.store.clone(),
        SessionConfig::default(),
    ));
    let data = SessionData::new()
        .with("role", "student")
        .and_then(|d| d.with("permissions", &["read", "write"]))
        .expect("data");
    let (token, payload) = rt.block_on(async {
        let token = touching
            .create_session("bench-user", data.clone(), None)
            .await
            .expect("create");
        let session = touching
            .get_session(&token)
            .await
            .expect("get")
            .expect("live");
        (token, serde_json::to_vec(&session).expect("json"))
    });
    let mut group = c.benchmark_group("sessions");
    group.throughput(Throughput::Elements(1));
    let counter = std::sync::atomic::AtomicU64::new(0);
    group.bench_function("create", |b| {
        b.to_async(&rt).iter(|| async {
            let user = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
            black_box(
                touching
                    .create_session(
                        &format!("user{user}"),
                        data.clone(),
                        Some(Duration::from_secs(60)),
                    )
                    .await
                    .expect("create"),
            )
        })
    });
    group.bench_function("get_with_touch", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(touching.get_session(&token).await.expect("get")) })
    });
    group.bench_function("validate", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                service
                    .validate_session(token.expose())
                    .await
                    .expect("valid"),
            )
        })
    });
    group.bench_function("update", |b| {
        b.to_async(&rt).iter(|| async {
            let patch = SessionPatch::new().set("seen", &1).expect("patch");
            black_box(
                touching
                    .update_session(&token, patch)
                    .await
                    .expect("update"),
            )
        })
    });
    group.bench_function("raw_set", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = bench.raw.clone();
            let payload = payload.clone();
            async move {
                let _: () = raw
                    .set_ex("raw:session", payload, 86_400)
                    .await
                    .expect("SET");
            }
        })
    });
    group.bench_function("raw_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = bench.raw.clone();
            async move {
                let value: Option<Vec<u8>> = raw.get("raw:session").await.expect("GET");
                black_box(value)
            }
        })
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    let profile = Profile::sample(42);
    let list: Vec<Item> = items(100);
    let mut group = c.benchmark_group("payload");
    for (name, compress) in [("plain", false), ("lz4", true)] {
        group.bench_with_input(
            BenchmarkId::new("profile_bincode", name),
            &compress,
            |b, &compress| b.iter(|| black_box(round_trip_bincode(&profile, compress))),
        );
        group.bench_with_input(
            BenchmarkId::new("profile_json", name),
            &compress,
            |b, &compress| b.iter(|| black_box(round_trip_json(&profile, compress))),
        );
        group.bench_with_input(
            BenchmarkId::new("list100_bincode", name),
            &compress,
            |b, &compress| b.iter(|| black_box(round_trip_bincode(&list, compress))),
        );
        group.bench_with_input(
            BenchmarkId::new("list100_json", name),
            &compress,
            |b, &compress| b.iter(|| black_box(round_trip_json(&list, compress))),
        );
    }
    group.finish();
}

fn round_trip_bincode<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    compress: bool,
) -> T {
    let bytes = bincode_bytes(value);
    match compress {
        true => bincode_value(
            &lz4_flex::decompress_size_prepended(&lz4_flex::compress_prepend_size(&bytes))
                .expect("lz4"),
        ),
        false => bincode_value(&bytes),
    }
}

fn round_trip_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    compress: bool,
) -> T {
    let bytes = serde_json::to_vec(value).expect("json");
    match compress {
        true => serde_json::from_slice(
            &lz4_flex::decompress_size_prepended(&lz4_flex::compress_prepend_size(&bytes))
                .expect("lz4"),
        )
        .expect("json"),
        false => serde_json::from_slice(&bytes).expect("json"),
    }
}

criterion_group! {
    name = suite;
    config = configure();
    targets = hits, cluster_multi, embedded, sessions, payload
}
criterion_main!(suite);
