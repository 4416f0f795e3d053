//! Early refresh (XFetch) under steady load: one hot key read by 64 tasks across 20 expiries
//! of a 1 s ttl, its computation taking 50 ms, through `#[cache_result]` with and without
//! `early_refresh = true`, against a private `redis-server`.
//!
//! Prints a markdown table: computations per expiry, values served past their ttl, and the
//! latency of the calls that started within 100 ms of a value's expiry (p99, max, and how many
//! waited for a computation). `--quick` runs 3 expiries (the CI smoke run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cache_core::{Cache, cache_result};
use cachemere_bench::Bench;
use serde::{Deserialize, Serialize};

const TTL: Duration = Duration::from_secs(1);
const COMPUTATION: Duration = Duration::from_millis(50);
const TASKS: usize = 64;
/// Calls starting this close to a value's expiry are "around expiry".
const AROUND: Duration = Duration::from_millis(100);
/// A value's ttl runs from its write, a round trip after its computation ends (when it is
/// stamped): reads this close past the stamp's ttl are not counted as past it.
const SLACK: Duration = Duration::from_millis(5);
/// Each task's pause between calls: a steady load, not a saturated CPU.
const PAUSE: Duration = Duration::from_millis(2);

/// The cached value: which computation made it, and when it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    computation: u64,
    /// Microseconds since the run began, when the computation ended.
    computed_at: u64,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

async fn compute(runs: Arc<AtomicU64>) -> Report {
    let computation = runs.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(COMPUTATION).await;
    Report {
        computation,
        computed_at: now_us(),
    }
}

#[cache_result("xfetch:plain", crate = "cache_core", cache = cache, ttl = TTL)]
async fn plain(cache: &Cache, runs: Arc<AtomicU64>) -> Report {
    compute(runs).await
}

#[cache_result("xfetch:early", crate = "cache_core", cache = cache, ttl = TTL, early_refresh = true)]
async fn early(cache: &Cache, runs: Arc<AtomicU64>) -> Report {
    compute(runs).await
}

#[cache_result("xfetch:later", crate = "cache_core", cache = cache, ttl = TTL, early_refresh = true, beta = 0.5)]
async fn later(cache: &Cache, runs: Arc<AtomicU64>) -> Report {
    compute(runs).await
}

/// How the hot key is read.
#[derive(Clone, Copy)]
enum Variant {
    Plain,
    Early,
    Later,
}

/// One call as a caller saw it.
struct Call {
    started: u64,
    latency: u64,
    report: Report,
}

struct Outcome {
    /// Calls per second over the run.
    reads_per_second: f64,
    /// Median time between a computation's start and its predecessor's expiry (negative:
    /// it started after the expiry), in microseconds.
    lead: i64,
    computations: u64,
    expiries: u64,
    past_ttl: usize,
    around: Vec<u64>,
    waited: usize,
}

async fn run(cache: &Cache, variant: Variant, expiries: u64) -> Outcome {
    let runs = Arc::new(AtomicU64::new(0));
    let read = move |cache: Cache, runs: Arc<AtomicU64>| async move {
        match variant {
            Variant::Plain => plain(&cache, runs).await,
            Variant::Early => early(&cache, runs).await,
            Variant::Later => later(&cache, runs).await,
        }
    };
    read(cache.clone(), runs.clone()).await;
    let warmed = runs.load(Ordering::SeqCst);
    let until = Instant::now() + TTL * expiries as u32;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while Instant::now() < until {
                    let started = now_us();
                    let report = read(cache.clone(), runs.clone()).await;
                    calls.push(Call {
                        started,
                        latency: now_us() - started,
                        report,
                    });
                    tokio::time::sleep(PAUSE).await;
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.expect("a reader panicked"));
    }
    let reads_per_second = calls.len() as f64 / started.elapsed().as_secs_f64();
    // a refresh still running at the end is counted
    tokio::time::sleep(COMPUTATION * 2).await;
    let ttl = TTL.as_micros() as u64;
    let mut expiry_times: Vec<u64> = calls.iter().map(|c| c.report.computed_at + ttl).collect();
    expiry_times.sort_unstable();
    expiry_times.dedup();
    let around_us = AROUND.as_micros() as u64;
    let near_expiry = |started: u64| {
        let i = expiry_times.partition_point(|&at| at < started.saturating_sub(around_us));
        expiry_times
            .get(i)
            .is_some_and(|&at| at <= started + around_us)
    };
    let mut around: Vec<u64> = calls
        .iter()
        .filter(|c| near_expiry(c.started))
        .map(|c| c.latency)
        .collect();
    around.sort_unstable();
    let waited_us = (COMPUTATION.as_micros() as u64) * 4 / 5;
    let mut written: Vec<(u64, u64)> = calls
        .iter()
        .map(|c| (c.report.computation, c.report.computed_at))
        .collect();
    written.sort_unstable();
    written.dedup();
    let mut leads: Vec<i64> = written
        .windows(2)
        .map(|pair| {
            let expired = (pair[0].1 + ttl) as i64;
            let began = pair[1].1 as i64 - COMPUTATION.as_micros() as i64;
            expired - began
        })
        .collect();
    leads.sort_unstable();
    Outcome {
        reads_per_second,
        lead: leads.get(leads.len() / 2).copied().unwrap_or(0),
        computations: runs.load(Ordering::SeqCst) - warmed,
        expiries,
        past_ttl: calls
            .iter()
            .filter(|c| c.started > c.report.computed_at + ttl + SLACK.as_micros() as u64)
            .count(),
        waited: calls.iter().filter(|c| c.latency >= waited_us).count(),
        around,
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let expiries = if quick { 3 } else { 20 };
    let bench = Bench::start().await;
    now_us();
    println!(
        "| `#[cache_result]`, {TASKS} tasks, ttl {} s, computation {} ms, {expiries} expiries | reads/s | computations per expiry | a computation starts, before the last value's expiry (median) | values served past their ttl (+{} ms) | calls within {} ms of an expiry | p99 | max | callers that waited >= 40 ms |",
        TTL.as_secs(),
        COMPUTATION.as_millis(),
        SLACK.as_millis(),
        AROUND.as_millis()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, variant) in [
        ("without early refresh", Variant::Plain),
        ("`early_refresh = true` (beta 1.0)", Variant::Early),
        ("`early_refresh = true, beta = 0.5`", Variant::Later),
    ] {
        let outcome = run(&bench.cache, variant, expiries).await;
        let p99 = outcome
            .around
            .get((outcome.around.len() * 99 / 100).min(outcome.around.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0);
        let max = outcome.around.last().copied().unwrap_or(0);
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} ms | {} | {} | {} | {} | {} |",
            outcome.reads_per_second,
            outcome.computations as f64 / outcome.expiries as f64,
            outcome.lead as f64 / 1000.0,
            outcome.past_ttl,
            outcome.around.len(),
            ms(p99),
            ms(max),
            outcome.waited,
        );
    }
}
