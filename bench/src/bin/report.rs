//! Turns one run of the criterion suite into the BENCHMARKS.md table, and measures what
//! criterion does not: the stampede, the Redis server's own limit and payload sizes.
//!
//! `report` reads `$CARGO_TARGET_DIR/criterion` (default `target/criterion`); with `--quick`
//! it only runs its own measurements briefly and prints them (the CI smoke run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Cache, Json, MemoryStore, Ttl, cache_result};
use cached::macros::concurrent_cached;
use cachemere_bench::{
    Bench, BenchError, CACHED_URL, ClusterBench, Profile, bincode_bytes, cached_profile,
    cachemere_profile, hand_written, items, warm,
};

const BODY: Duration = Duration::from_millis(100);
const CALLERS: usize = 100;

static CACHED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result("stampede:{round}", crate = "cache_core", cache = cache)]
async fn cachemere_slow(cache: Cache, runs: Arc<AtomicUsize>, round: u64) -> u64 {
    runs.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(BODY).await;
    round
}

#[concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, u64>",
    create = r##" {
        cached::AsyncRedisCache::builder("report:cached:stampede")
            .ttl(cached::time::Duration::from_secs(3600))
            .connection_string(CACHED_URL.get().expect("redis url"))
            .build()
            .await
            .expect("cached's redis store")
    } "##
)]
async fn cached_slow(round: u64) -> Result<u64, BenchError> {
    CACHED_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(BODY).await;
    Ok(round)
}

/// Body runs and the slowest caller's latency over the body's duration.
struct Stampede {
    runs: usize,
    slowest: f64,
}

async fn stampede<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let future = call();
            tokio::spawn(async move {
                let started = Instant::now();
                future.await;
                started.elapsed()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.expect("caller"));
    }
    slowest.as_secs_f64() / BODY.as_secs_f64()
}

async fn stampedes(bench: &Bench) -> (Stampede, Stampede) {
    let runs = Arc::new(AtomicUsize::new(0));
    let cache = bench.cache.clone();
    let slowest = stampede(|| {
        let (cache, runs) = (cache.clone(), runs.clone());
        async move {
            cachemere_slow(cache, runs, 1).await;
        }
    })
    .await;
    let ours = Stampede {
        runs: runs.load(Ordering::SeqCst),
        slowest,
    };
    cached_slow(0).await.expect("cached warm-up");
    let before = CACHED_RUNS.load(Ordering::SeqCst);
    let slowest = stampede(|| async {
        cached_slow(1).await.expect("cached");
    })
    .await;
    let peer = Stampede {
        runs: CACHED_RUNS.load(Ordering::SeqCst) - before,
        slowest,
    };
    (ours, peer)
}

/// The three reads of a hit, by variant.
#[derive(Clone, Copy)]
enum Read {
    Hand,
    Macro,
    Cached,
}

const READS: [Read; 3] = [Read::Hand, Read::Macro, Read::Cached];

async fn read(bench: &Bench, raw: &mut redis::aio::ConnectionManager, which: Read) {
    match which {
        Read::Hand => {
            std::hint::black_box(hand_written(raw, 1).await);
        }
        Read::Macro => {
            std::hint::black_box(cachemere_profile(&bench.cache, 1).await);
        }
        Read::Cached => {
            std::hint::black_box(cached_profile(1).await.expect("cached"));
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Sequential hits with the three variants taking turns, so that the machine's drift hits all
/// of them alike: the median latency of each, in µs.
async fn interleaved_sequential(bench: &Bench, rounds: usize) -> [f64; 3] {
    let mut raw = bench.raw.clone();
    let mut samples: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        for turn in 0..3 {
            let which = (round + turn) % 3;
            let started = Instant::now();
            read(bench, &mut raw, READS[which]).await;
            samples[which].push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.map(median)
}

/// `get_multi` of 100 keys on a cluster and the hand-written redis-rs `MGET`, taking turns:
/// the median µs of each.
async fn interleaved_cluster_multi(bench: &ClusterBench, rounds: usize) -> [f64; 2] {
    let mut samples: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let started = Instant::now();
            let found = match which {
                0 => bench.get_multi().await,
                _ => bench.hand_written_mget().await,
            };
            samples[which].push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(found.len(), 100);
        }
    }
    samples.map(median)
}

/// Hits from 64 tasks in windows that rotate between the variants: the median calls per
/// second of each.
async fn interleaved_concurrent(bench: &Arc<Bench>, windows: usize, window: Duration) -> [f64; 3] {
    let mut rates: [Vec<f64>; 3] = Default::default();
    for w in 0..windows * 3 {
        let which = w % 3;
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (bench, calls) = (Arc::clone(bench), Arc::clone(&calls));
                tokio::spawn(async move {
                    let mut raw = bench.raw.clone();
                    while started.elapsed() < window {
                        read(&bench, &mut raw, READS[which]).await;
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        rates[which].push(calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64());
    }
    rates.map(median)
}

/// `redis-benchmark -t get -c 64` on the server, after a SET of `size` bytes to read back.
fn redis_benchmark(port: u16, size: usize, requests: u32) -> Option<f64> {
    let run = |test: &str| {
        Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                test,
                "-c",
                "64",
            ])
            .args(["-n", &requests.to_string(), "-d", &size.to_string(), "-q"])
            .output()
            .ok()
    };
    run("set")?;
    let output = run("get")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split(['\r', '\n'])
        .filter_map(|line| line.strip_prefix("GET: "))
        .filter_map(|line| line.split_whitespace().next()?.parse::<f64>().ok())
        .next_back()
}

/// Mean time in ns of one criterion benchmark of the last run.
fn estimate(root: &Path, id: &str) -> Option<f64> {
    let path = root.join(id).join("new").join("estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn machine() -> (String, usize, String) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|model| model.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    (cpu, cores, redis)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

struct Table(Vec<String>);

impl Table {
    fn row(&mut self, cells: &[String]) {
        self.0.push(format!("| {} |", cells.join(" | ")));
    }
}

async fn framed_size<T: serde::Serialize>(value: &T, json: bool, compress: Option<usize>) -> usize {
    let store = MemoryStore::new();
    let builder = Cache::builder(store.clone()).compress_over(compress);
    let cache = match json {
        true => builder.codec(Json).build(),
        false => builder.build(),
    };
    cache.set("v", value, Ttl::Long).await.expect("set");
    cache_core::Store::get(&store, "v")
        .await
        .expect("get")
        .map_or(0, |bytes| bytes.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let criterion = target.join("criterion");
    let bench = Arc::new(Bench::start().await);
    CACHED_URL.get_or_init(|| bench.url());
    warm(&bench).await;
    let (rounds, windows) = if quick { (30, 1) } else { (3000, 9) };
    let [seq_hand, seq_macro, seq_cached] = interleaved_sequential(&bench, rounds).await;
    let [con_hand, con_macro, con_cached] = interleaved_concurrent(
        &bench,
        windows,
        Duration::from_millis(if quick { 50 } else { 400 }),
    )
    .await;
    let (ours, peer) = stampedes(&bench).await;
    let cluster = ClusterBench::start().await;
    let [cluster_ours, cluster_hand] =
        interleaved_cluster_multi(&cluster, if quick { 20 } else { 2000 }).await;
    let value_size = bincode_bytes(&Profile::sample(1)).len();
    let port = bench.server.port().unwrap_or(6379);
    let server_limit = redis_benchmark(port, value_size, if quick { 2_000 } else { 200_000 });
    if quick {
        println!(
            "smoke: interleaved sequential µs hand/macro/cached {seq_hand:.1}/{seq_macro:.1}/{seq_cached:.1}; 64 tasks calls/s {con_hand:.0}/{con_macro:.0}/{con_cached:.0}"
        );
        println!(
            "smoke: cluster get_multi(100) µs cachemere/redis-rs {cluster_ours:.0}/{cluster_hand:.0}"
        );
        println!(
            "smoke: stampede of {CALLERS}: cachemere {} body run(s), slowest {:.2}x; cached {} run(s), slowest {:.2}x; redis-benchmark GET: {:?} req/s",
            ours.runs, ours.slowest, peer.runs, peer.slowest, server_limit
        );
        return;
    }

    let mean = |id: &str| estimate(&criterion, id);
    let (cpu, cores, redis) = machine();
    let mut out = Table(Vec::new());
    out.0.push(format!("Machine: {cores} cores, {cpu}; {redis}; Redis is a private `redis-server` (no persistence) on loopback started by the suite."));
    out.0.push(String::new());
    out.row(&[
        "measurement".into(),
        "cachemere".into(),
        "baseline".into(),
        "ratio".into(),
        "target".into(),
        "verdict".into(),
    ]);
    out.row(&[
        "---".into(),
        "---:".into(),
        "---:".into(),
        "---:".into(),
        "---".into(),
        "---".into(),
    ]);

    let us = |ns: f64| format!("{:.1} µs", ns / 1000.0);
    out.row(&[format!("1. hit, sequential, interleaved (median of {rounds} each): `#[cache_result]` vs hand-written"), format!("{seq_macro:.1} µs"), format!("{seq_hand:.1} µs"), format!("{:.3}×", seq_macro / seq_hand), "≤ 1.03×".into(), verdict(seq_macro / seq_hand <= 1.03).into()]);
    out.row(&[format!("2. hits/s, 64 tasks, interleaved {windows} × 0.4 s windows each (median): `#[cache_result]` vs hand-written"), format!("{con_macro:.0}/s"), format!("{con_hand:.0}/s"), format!("{:.3}×", con_macro / con_hand), "≥ 0.97×".into(), verdict(con_macro / con_hand >= 0.97).into()]);
    out.row(&[
        "3. hit, sequential, interleaved (median): `#[cache_result]` vs `cached`".into(),
        format!("{seq_macro:.1} µs"),
        format!("{seq_cached:.1} µs"),
        format!("{:.3}×", seq_macro / seq_cached),
        "< 1× (faster)".into(),
        verdict(seq_macro < seq_cached).into(),
    ]);
    out.row(&[
        "3. hits/s, 64 tasks, interleaved (median): `#[cache_result]` vs `cached`".into(),
        format!("{con_macro:.0}/s"),
        format!("{con_cached:.0}/s"),
        format!("{:.3}×", con_macro / con_cached),
        "> 1× (faster)".into(),
        verdict(con_macro > con_cached).into(),
    ]);
    let per_sec = |ns: f64| format!("{:.0}/s", 1e9 / ns);
    if let (Some(macro_hit), Some(hand)) = (
        mean("hit_sequential/cachemere_macro"),
        mean("hit_sequential/hand_written"),
    ) {
        let ratio = macro_hit / hand;
        out.row(&[
            "1. hit, sequential: `#[cache_result]` vs redis-rs GET + decode".into(),
            us(macro_hit),
            us(hand),
            format!("{ratio:.3}×"),
            "≤ 1.03×".into(),
            verdict(ratio <= 1.03).into(),
        ]);
    }
    if let (Some(macro_hit), Some(hand)) = (
        mean("hit_64_tasks/cachemere_macro"),
        mean("hit_64_tasks/hand_written"),
    ) {
        let ratio = hand / macro_hit;
        out.row(&[
            "2. hits/s, 64 tasks: `#[cache_result]` vs hand-written".into(),
            per_sec(macro_hit),
            per_sec(hand),
            format!("{ratio:.3}×"),
            "≥ 0.97×".into(),
            verdict(ratio >= 0.97).into(),
        ]);
        if let Some(limit) = server_limit {
            let fraction = 1e9 / macro_hit / limit;
            out.row(&[
                "2. hits/s, 64 tasks vs `redis-benchmark -t get -c 64` (same value size)".into(),
                per_sec(macro_hit),
                format!("{limit:.0}/s"),
                format!("{fraction:.2}×"),
                "report".into(),
                "—".into(),
            ]);
        }
    }
    for (label, group) in [
        ("sequential", "hit_sequential"),
        ("64 tasks", "hit_64_tasks"),
    ] {
        if let (Some(ours_ns), Some(cached_ns), Some(hand)) = (
            mean(&format!("{group}/cachemere_macro")),
            mean(&format!("{group}/cached_crate")),
            mean(&format!("{group}/hand_written")),
        ) {
            out.row(&[format!("3. hit, {label}: `#[cache_result]` vs `cached` 4.1 `#[concurrent_cached(redis)]` (cached/hand-written = {:.3}×)", cached_ns / hand), us(ours_ns), us(cached_ns), format!("{:.3}×", ours_ns / cached_ns), "< 1× (faster)".into(), verdict(ours_ns < cached_ns).into()]);
        }
    }
    out.row(&[
        format!(
            "3. stampede, {CALLERS} callers on a cold key, body {} ms: body runs",
            BODY.as_millis()
        ),
        ours.runs.to_string(),
        format!("{} (`cached`)", peer.runs),
        "—".into(),
        "1".into(),
        verdict(ours.runs == 1).into(),
    ]);
    out.row(&[
        "3. stampede: slowest caller / body duration".into(),
        format!("{:.2}×", ours.slowest),
        format!("{:.2}× (`cached`)", peer.slowest),
        "—".into(),
        "≤ 1.1×".into(),
        verdict(ours.slowest <= 1.1).into(),
    ]);
    for (n, target) in [(100, Some(30.0)), (1000, None)] {
        if let (Some(multi), Some(sequential)) = (
            mean(&format!("multi_{n}/get_multi")),
            mean(&format!("multi_{n}/sequential_get")),
        ) {
            let speedup = sequential / multi;
            let (goal, met) = match target {
                Some(goal) => (format!("≥ {goal:.0}×"), verdict(speedup >= goal).to_owned()),
                None => ("report".into(), "—".into()),
            };
            out.row(&[
                format!("4. `get_multi` of {n} keys vs {n} sequential `get`s (speed-up)"),
                us(multi),
                us(sequential),
                format!("{speedup:.1}×"),
                goal,
                met,
            ]);
        }
    }
    out.row(&[
        "4. cluster (3 primaries), interleaved (median of 2000 each): `get_multi` of 100 keys vs redis-rs cluster `MGET` + decode".into(),
        format!("{cluster_ours:.1} µs"),
        format!("{cluster_hand:.1} µs"),
        format!("{:.2}×", cluster_ours / cluster_hand),
        "report".into(),
        "—".into(),
    ]);
    if let (Some(multi), Some(mget), Some(sequential)) = (
        mean("cluster_multi_100/get_multi"),
        mean("cluster_multi_100/redis_rs_mget"),
        mean("cluster_multi_100/sequential_get"),
    ) {
        out.row(&[
            "4. cluster (3 primaries): `get_multi` of 100 keys vs redis-rs cluster `MGET` + decode"
                .into(),
            us(multi),
            us(mget),
            format!("{:.2}×", multi / mget),
            "report".into(),
            "—".into(),
        ]);
        out.row(&[
            "4. cluster: `get_multi` of 100 keys vs 100 sequential `get`s (speed-up)".into(),
            us(multi),
            us(sequential),
            format!("{:.1}×", sequential / multi),
            "report".into(),
            "—".into(),
        ]);
    }
    if let (Some(cache_get), Some(moka_get), Some(moka_decode)) = (
        mean("embedded/cache_get"),
        mean("embedded/moka_get"),
        mean("embedded/moka_get_decode"),
    ) {
        let ratio = cache_get / moka_get;
        out.row(&[
            "5. MemoryStore hit through `Cache::get` vs raw moka get of the value".into(),
            us(cache_get),
            us(moka_get),
            format!("{ratio:.2}×"),
            "≤ 1.5×".into(),
            verdict(ratio <= 1.5).into(),
        ]);
        out.row(&[
            "5. the same vs raw moka get of the bytes + bincode decode".into(),
            us(cache_get),
            us(moka_decode),
            format!("{:.2}×", cache_get / moka_decode),
            "report".into(),
            "—".into(),
        ]);
        if let Some(macro_hit) = mean("embedded/cachemere_macro") {
            out.row(&[
                "5. MemoryStore hit through `#[cache_result]` vs raw moka get".into(),
                us(macro_hit),
                us(moka_get),
                format!("{:.2}×", macro_hit / moka_get),
                "report".into(),
                "—".into(),
            ]);
        }
    }
    let raw_get = mean("sessions/raw_get");
    let raw_set = mean("sessions/raw_set");
    for (op, baseline, baseline_name, round_trips) in [
        (
            "create",
            raw_set,
            "SET",
            "1 (script + registry ZADD, pipelined)",
        ),
        ("get_with_touch", raw_get, "GET", "1"),
        ("validate", raw_get, "GET", "1"),
        ("update", raw_set, "SET", "1"),
    ] {
        if let (Some(ns), Some(base)) = (mean(&format!("sessions/{op}")), baseline) {
            out.row(&[format!("6. session {op} ({round_trips} round trip) vs raw {baseline_name} of the session JSON"), per_sec(ns), per_sec(base), format!("{:.2}× the time", ns / base), "report".into(), "—".into()]);
        }
    }
    let profile = Profile::sample(42);
    let list = items(100);
    for (name, id, bincode_size, json_size, bincode_lz4, json_lz4) in [
        (
            "profile (20 fields)",
            "profile",
            framed_size(&profile, false, None).await,
            framed_size(&profile, true, None).await,
            framed_size(&profile, false, Some(0)).await,
            framed_size(&profile, true, Some(0)).await,
        ),
        (
            "100-item list",
            "list100",
            framed_size(&list, false, None).await,
            framed_size(&list, true, None).await,
            framed_size(&list, false, Some(0)).await,
            framed_size(&list, true, Some(0)).await,
        ),
    ] {
        let time = |codec: &str, mode: &str| {
            mean(&format!("payload/{id}_{codec}/{mode}")).map_or("—".into(), us)
        };
        out.row(&[
            format!("7. {name}: stored bytes bincode / JSON (lz4 bincode / JSON)"),
            format!("{bincode_size} / {json_size}"),
            format!("({bincode_lz4} / {json_lz4})"),
            "—".into(),
            "report".into(),
            "—".into(),
        ]);
        out.row(&[
            format!("7. {name}: encode+decode bincode / JSON (lz4: bincode / JSON)"),
            format!("{} / {}", time("bincode", "plain"), time("json", "plain")),
            format!("({} / {})", time("bincode", "lz4"), time("json", "lz4")),
            "—".into(),
            "report".into(),
            "—".into(),
        ]);
    }
    println!("{}", out.0.join("\n"));
}
