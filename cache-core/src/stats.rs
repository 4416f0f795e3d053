use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::{Event, Meter};

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a usable value.
    pub hits: u64,
    /// Reads that found nothing (or nothing usable).
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Keys removed by delete, invalidation or tag.
    pub deletes: u64,
    /// Store errors and timeouts, whether surfaced or degraded to a miss.
    pub errors: u64,
    /// Callers that waited for another caller's computation instead of running the factory.
    pub stampede_joins: u64,
    /// Stored values that could not be decoded (counted as misses too, and deleted).
    pub decode_failures: u64,
    /// Hits answered by the in-process first tier (also counted in `hits`; the rest came from
    /// the store).
    pub local_hits: u64,
    /// Local-tier hits served after its subscription was lost, within
    /// [`local_cache_stale_window`](crate::CacheBuilder::local_cache_stale_window) (also
    /// counted in `local_hits`).
    pub local_stale_hits: u64,
    /// Stale values served by the fail-safe because a computation failed or timed out.
    pub stale_served: u64,
    /// Values recomputed before they expired by early refresh (see
    /// [`SetOptions::early_refresh`](crate::SetOptions::early_refresh)).
    pub early_refreshes: u64,
    /// Early refreshes whose computation failed: the current value kept being served.
    pub early_refresh_failures: u64,
    /// Store operations skipped because the circuit breaker was open (not counted as errors).
    pub short_circuits: u64,
    /// Times the circuit breaker opened.
    pub circuit_trips: u64,
    /// Invalidations waiting for the store to answer (a gauge: [`reset_stats`] leaves it);
    /// see [`CacheBuilder::pending_invalidations`](crate::CacheBuilder::pending_invalidations).
    ///
    /// [`reset_stats`]: crate::Cache::reset_stats
    pub pending_invalidations: u64,
    /// Invalidations applied late, by the replay, after the store failed them.
    pub recovered_invalidations: u64,
    /// Times the queue of pending invalidations overflowed and was replaced by a sweep of
    /// the cache's prefix.
    pub invalidation_overflows: u64,
    /// Computed values not stored because their key was invalidated or rewritten while they
    /// were computed (see [`CacheBuilder::fence`](crate::CacheBuilder::fence)); their
    /// callers got them all the same.
    pub fenced_writes: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or `0.0` before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) stampede_joins: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) early_refresh_failures: AtomicU64,
    pub(crate) fenced_writes: AtomicU64,
    /// Where the same events go as metrics.
    pub(crate) meter: Meter,
}

impl Counters {
    pub(crate) fn new(meter: Meter) -> Counters {
        Counters {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            sets: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stampede_joins: AtomicU64::new(0),
            decode_failures: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            early_refreshes: AtomicU64::new(0),
            early_refresh_failures: AtomicU64::new(0),
            fenced_writes: AtomicU64::new(0),
            meter,
        }
    }

    /// Counts `n` events, in the stats and as a metric. Store errors are counted with
    /// [`Counters::error`] (the metric, by operation and kind, comes from the guarded store).
    pub(crate) fn count(&self, event: Event, n: u64) {
        let counter = match event {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::Set => &self.sets,
            Event::Delete => &self.deletes,
            Event::StampedeJoin => &self.stampede_joins,
            Event::DecodeFailure => &self.decode_failures,
            Event::StaleServed => &self.stale_served,
            Event::EarlyRefresh => &self.early_refreshes,
            Event::EarlyRefreshFailure => &self.early_refresh_failures,
            Event::FencedWrite => &self.fenced_writes,
            // counted where they happen (local tier, breaker, recovery)
            Event::LocalHit
            | Event::LocalStaleHit
            | Event::ShortCircuit
            | Event::CircuitTrip
            | Event::RecoveredInvalidation
            | Event::InvalidationOverflow => {
                self.meter.count(event, n);
                return;
            }
        };
        counter.fetch_add(n, Ordering::Relaxed);
        self.meter.count(event, n);
    }

    /// Counts a store error in the stats.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.hits),
            misses: read(&self.misses),
            sets: read(&self.sets),
            deletes: read(&self.deletes),
            errors: read(&self.errors),
            stampede_joins: read(&self.stampede_joins),
            decode_failures: read(&self.decode_failures),
            stale_served: read(&self.stale_served),
            early_refreshes: read(&self.early_refreshes),
            early_refresh_failures: read(&self.early_refresh_failures),
            local_hits: 0,
            local_stale_hits: 0,
            short_circuits: 0,
            circuit_trips: 0,
            pending_invalidations: 0,
            recovered_invalidations: 0,
            invalidation_overflows: 0,
            fenced_writes: read(&self.fenced_writes),
        }
    }

    pub(crate) fn reset(&self) {
        for counter in [
            &self.hits,
            &self.misses,
            &self.sets,
            &self.deletes,
            &self.errors,
            &self.stampede_joins,
            &self.decode_failures,
            &self.stale_served,
            &self.early_refreshes,
            &self.early_refresh_failures,
            &self.fenced_writes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
