//! A circuit breaker in front of a store: after repeated failures the store is skipped for a
//! cool-down, so that an outage costs callers no per-call timeouts; a background probe closes
//! the circuit as soon as the store answers again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::recovery::Recovery;
use crate::store::Store;
use crate::telemetry::{Event, Gauge, Meter};

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    open: AtomicBool,
    opened_at: Mutex<Option<Instant>>,
    probing: AtomicBool,
    pub(crate) short_circuits: AtomicU64,
    pub(crate) trips: AtomicU64,
    recovery: OnceLock<Weak<Recovery>>,
    meter: Meter,
}

impl Breaker {
    /// A breaker that opens after `threshold` consecutive failures (0: never).
    pub(crate) fn new(threshold: u32, cooldown: Duration, meter: Meter) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            opened_at: Mutex::new(None),
            probing: AtomicBool::new(false),
            short_circuits: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            recovery: OnceLock::new(),
            meter,
        }
    }

    /// Makes the probe start a replay of `recovery`'s pending invalidations when it closes
    /// the circuit. The circuit does not wait for the replay: on a cluster, an invalidation
    /// for a node that is down cannot land, and the live nodes must not wait for it. Reads
    /// of the keys it covers stay misses in this process until it lands.
    pub(crate) fn replay_on_closing(&self, recovery: &Arc<Recovery>) {
        let _ = self.recovery.set(Arc::downgrade(recovery));
    }

    fn start_replay(&self) {
        if let Some(recovery) = self.recovery.get().and_then(Weak::upgrade) {
            tokio::spawn(async move { recovery.replay().await });
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn opened_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.opened_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go to the store. Without a background probe (no tokio runtime),
    /// calls after the cool-down are the probe.
    pub(crate) fn allows(&self) -> bool {
        if !self.is_open() {
            return true;
        }
        let cooled = self
            .opened_at()
            .is_none_or(|at| at.elapsed() >= self.cooldown);
        if cooled && !self.probing.load(Ordering::Acquire) {
            return true;
        }
        self.short_circuits.fetch_add(1, Ordering::Relaxed);
        self.meter.count(Event::ShortCircuit, 1);
        false
    }

    /// Called after every successful operation, so it only reads in the common case: a write
    /// to a shared cache line on every call would slow concurrent callers down.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open.load(Ordering::Acquire) && self.open.swap(false, Ordering::AcqRel) {
            self.meter.gauge(Gauge::CircuitOpen, 0.0);
            tracing::info!("store answers again: circuit closed");
        }
    }

    pub(crate) fn failed(self: &Arc<Self>, store: &Arc<dyn Store>) {
        if self.threshold == 0 {
            return;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures < self.threshold {
            return;
        }
        *self.opened_at() = Some(Instant::now());
        if !self.open.swap(true, Ordering::AcqRel) {
            self.trips.fetch_add(1, Ordering::Relaxed);
            self.meter.count(Event::CircuitTrip, 1);
            self.meter.gauge(Gauge::CircuitOpen, 1.0);
            tracing::warn!(
                failures,
                cooldown = ?self.cooldown,
                "store failing: circuit open, calls skip the store"
            );
            self.probe(store);
        }
    }

    /// Asks the store every cool-down in the background until it answers.
    fn probe(self: &Arc<Self>, store: &Arc<dyn Store>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (breaker, store) = (Arc::clone(self), Arc::clone(store));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(breaker.cooldown).await;
                if store.answers().await {
                    breaker.succeeded();
                    breaker.start_replay();
                    break;
                }
            }
            breaker.probing.store(false, Ordering::Release);
        });
    }
}
