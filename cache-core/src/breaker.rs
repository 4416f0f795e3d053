//! Circuit breakers in front of a store: after repeated failures the store is skipped for a
//! cool-down, so that an outage costs callers no per-call timeouts; a background probe closes
//! the circuit as soon as the store answers again.
//!
//! A store spread over several nodes (a Redis Cluster, see [`Store::locate`]) gets one
//! breaker per node, following its slot map: a lost node fails fast for its own keys while
//! the others keep serving. Calls tied to no key (sweeps, `PUBLISH`), and calls whose node is
//! not known, go through the breaker of the store as a whole, which is the only one for a
//! store on one server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::recovery::Recovery;
use crate::store::Store;
use crate::telemetry::{Event, Gauge, Meter};

/// The longest time between two probes of a cluster node whose circuit is open (the
/// cool-down when it is shorter): with its circuit open nothing else reaches the node's
/// slots, so its probe is what notices a replica that took them over.
const NODE_PROBE: Duration = Duration::from_secs(1);

/// What a call is made on, for choosing its breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum On<'a> {
    /// The store as a whole: calls tied to no key.
    Store,
    /// One key, on whichever node holds it.
    Key(&'a str),
    /// A node a [`Store::locate`] named.
    Node(&'a str),
}

/// What every breaker of a cache shares: its settings and its counters.
#[derive(Debug)]
struct Shared {
    threshold: u32,
    cooldown: Duration,
    short_circuits: AtomicU64,
    trips: AtomicU64,
    /// Breakers open now (the gauge `circuit_open`).
    open: AtomicUsize,
    recovery: OnceLock<Weak<Recovery>>,
    meter: Meter,
}

/// One circuit: the store as a whole, or one of its nodes.
#[derive(Debug)]
struct Breaker {
    node: Option<String>,
    failures: AtomicU32,
    open: AtomicBool,
    opened_at: Mutex<Option<Instant>>,
    probing: AtomicBool,
    shared: Arc<Shared>,
}

impl Breaker {
    fn new(node: Option<String>, shared: &Arc<Shared>) -> Breaker {
        Breaker {
            node,
            failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            opened_at: Mutex::new(None),
            probing: AtomicBool::new(false),
            shared: Arc::clone(shared),
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether it has nothing to remember: closed, no failure counted, no probe running.
    fn is_clean(&self) -> bool {
        !self.is_open()
            && self.failures.load(Ordering::Relaxed) == 0
            && !self.probing.load(Ordering::Acquire)
    }

    fn opened_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.opened_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go to the store. Without a background probe (no tokio runtime),
    /// calls after the cool-down are the probe.
    fn allows(&self) -> bool {
        if !self.is_open() {
            return true;
        }
        let cooled = self
            .opened_at()
            .is_none_or(|at| at.elapsed() >= self.shared.cooldown);
        if cooled && !self.probing.load(Ordering::Acquire) {
            return true;
        }
        self.shared.short_circuits.fetch_add(1, Ordering::Relaxed);
        self.shared.meter.count(Event::ShortCircuit, 1);
        false
    }

    /// Called after every successful operation, so it only reads in the common case: a write
    /// to a shared cache line on every call would slow concurrent callers down.
    fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open.load(Ordering::Acquire) && self.open.swap(false, Ordering::AcqRel) {
            let open = self
                .shared
                .open
                .fetch_sub(1, Ordering::AcqRel)
                .saturating_sub(1);
            self.shared.meter.gauge(Gauge::CircuitOpen, open as f64);
            match &self.node {
                Some(node) => {
                    tracing::info!(node, "cluster node answers again: its circuit closed")
                }
                None => tracing::info!("store answers again: circuit closed"),
            }
        }
    }

    /// Counts a failure; returns whether it opened the circuit (and a probe must start).
    fn failed(&self) -> bool {
        let shared = &self.shared;
        if shared.threshold == 0 {
            return false;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures < shared.threshold {
            return false;
        }
        *self.opened_at() = Some(Instant::now());
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        shared.trips.fetch_add(1, Ordering::Relaxed);
        shared.meter.count(Event::CircuitTrip, 1);
        let open = shared.open.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        shared.meter.gauge(Gauge::CircuitOpen, open as f64);
        match &self.node {
            Some(node) => tracing::warn!(
                node,
                failures,
                cooldown = ?shared.cooldown,
                "cluster node failing: its circuit is open, calls on its keys skip the store"
            ),
            None => tracing::warn!(
                failures,
                cooldown = ?shared.cooldown,
                "store failing: circuit open, calls skip the store"
            ),
        }
        true
    }
}

/// The breakers of one cache: the store's, and one per node that failed lately.
#[derive(Debug)]
pub(crate) struct Breakers {
    whole: Arc<Breaker>,
    /// Breakers of nodes with failures counted or a circuit open; a node's breaker is
    /// forgotten once it is clean again, so that a healthy cluster keeps none.
    nodes: Mutex<HashMap<String, Arc<Breaker>>>,
    /// Whether `nodes` holds any: until then, keyed calls are not located.
    troubled: AtomicBool,
    /// Whether the store may be spread over nodes ([`Store::locate`]): for a store on one
    /// server, keyed calls go through `whole` without asking.
    spread: bool,
    shared: Arc<Shared>,
}

impl Breakers {
    /// Breakers that open after `threshold` consecutive failures (0: never), for a store
    /// that may be `spread` over several nodes.
    pub(crate) fn new(threshold: u32, cooldown: Duration, spread: bool, meter: Meter) -> Breakers {
        let shared = Arc::new(Shared {
            threshold,
            cooldown,
            short_circuits: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            recovery: OnceLock::new(),
            meter,
        });
        Breakers {
            whole: Arc::new(Breaker::new(None, &shared)),
            nodes: Mutex::new(HashMap::new()),
            troubled: AtomicBool::new(false),
            spread,
            shared,
        }
    }

    /// Makes a probe start a replay of `recovery`'s pending invalidations when it closes a
    /// circuit. The circuit does not wait for the replay: on a cluster, an invalidation
    /// for a node that is down cannot land, and the live nodes must not wait for it. Reads
    /// of the keys it covers stay misses in this process until it lands.
    pub(crate) fn replay_on_closing(&self, recovery: &Arc<Recovery>) {
        let _ = self.shared.recovery.set(Arc::downgrade(recovery));
    }

    /// Whether the store may be spread over nodes, so that multi-key calls are split by node.
    pub(crate) fn spread(&self) -> bool {
        self.spread
    }

    /// Store operations skipped because a circuit was open.
    pub(crate) fn short_circuits(&self) -> u64 {
        self.shared.short_circuits.load(Ordering::Relaxed)
    }

    /// Times a circuit opened.
    pub(crate) fn trips(&self) -> u64 {
        self.shared.trips.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_counts(&self) {
        self.shared.short_circuits.store(0, Ordering::Relaxed);
        self.shared.trips.store(0, Ordering::Relaxed);
    }

    /// Whether any circuit is open.
    pub(crate) fn any_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire) > 0
    }

    /// The nodes whose circuits are open, in order.
    pub(crate) fn open_nodes(&self) -> Vec<String> {
        let mut open: Vec<String> = self
            .nodes()
            .iter()
            .filter(|(_, breaker)| breaker.is_open())
            .map(|(node, _)| node.clone())
            .collect();
        open.sort();
        open
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Breaker>>> {
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call on `on` may go to the store.
    #[inline]
    pub(crate) fn allows(&self, on: On<'_>, store: &dyn Store) -> bool {
        match on {
            On::Store => self.whole.allows(),
            On::Key(_) if !self.spread => self.whole.allows(),
            On::Key(_) if !self.troubled.load(Ordering::Relaxed) && !self.whole.is_open() => true,
            On::Key(key) => match node_of(store, key) {
                Some(node) => self.node_allows(&node),
                None => self.whole.allows(),
            },
            On::Node(node) => !self.troubled.load(Ordering::Relaxed) || self.node_allows(node),
        }
    }

    fn node_allows(&self, node: &str) -> bool {
        self.nodes()
            .get(node)
            .is_none_or(|breaker| breaker.allows())
    }

    /// Tells the breaker of `on` that a call succeeded.
    #[inline]
    pub(crate) fn succeeded(&self, on: On<'_>, store: &dyn Store) {
        self.whole.succeeded();
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let node = match on {
            On::Store => return,
            On::Key(key) => match node_of(store, key) {
                Some(node) => node,
                None => return,
            },
            On::Node(node) => node.to_owned(),
        };
        let mut nodes = self.nodes();
        if let Some(breaker) = nodes.get(&node) {
            breaker.succeeded();
            if breaker.is_clean() {
                nodes.remove(&node);
                self.troubled.store(!nodes.is_empty(), Ordering::Relaxed);
            }
        }
    }

    /// Tells the breaker of `on` that a call failed (transiently); a circuit it opens is
    /// probed in the background until `store` answers for it.
    pub(crate) fn failed(self: &Arc<Self>, on: On<'_>, store: &Arc<dyn Store>) {
        let node = match on {
            On::Store => None,
            On::Key(key) if self.spread => node_of(&**store, key),
            On::Key(_) => None,
            On::Node(node) => Some(node.to_owned()),
        };
        let Some(node) = node.filter(|_| self.shared.threshold > 0) else {
            if self.whole.failed() {
                self.probe(Arc::clone(&self.whole), store);
            }
            return;
        };
        let mut nodes = self.nodes();
        let breaker = nodes
            .entry(node)
            .or_insert_with_key(|node| Arc::new(Breaker::new(Some(node.clone()), &self.shared)));
        self.troubled.store(true, Ordering::Relaxed);
        if breaker.failed() {
            let breaker = Arc::clone(breaker);
            drop(nodes);
            self.probe(breaker, store);
        }
    }

    /// Asks the store every cool-down in the background until it answers for `breaker`'s
    /// node (or as a whole), then closes it and starts the replay of pending invalidations.
    fn probe(self: &Arc<Self>, breaker: Arc<Breaker>, store: &Arc<dyn Store>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if breaker.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (breakers, store) = (Arc::downgrade(self), Arc::clone(store));
        // a node's probe is one keyed read, and it is how a replica's takeover is noticed
        let cooldown = match &breaker.node {
            Some(_) => self.shared.cooldown.min(NODE_PROBE),
            None => self.shared.cooldown,
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(cooldown).await;
                let answers = match &breaker.node {
                    Some(node) => store.answers_for(node).await,
                    None => store.answers().await,
                };
                if answers {
                    breaker.succeeded();
                    break;
                }
                if breakers.strong_count() == 0 {
                    // the cache is gone: nobody calls through this breaker any more
                    break;
                }
            }
            breaker.probing.store(false, Ordering::Release);
            if let Some(breakers) = breakers.upgrade() {
                breakers.closed(&breaker);
            }
        });
    }

    /// After a probe closed `breaker`: the replay starts, and a node's breaker that is clean
    /// is forgotten.
    fn closed(&self, breaker: &Arc<Breaker>) {
        if let Some(recovery) = self.shared.recovery.get().and_then(Weak::upgrade) {
            tokio::spawn(async move { recovery.replay().await });
        }
        let Some(node) = &breaker.node else {
            return;
        };
        let mut nodes = self.nodes();
        if nodes
            .get(node)
            .is_some_and(|kept| Arc::ptr_eq(kept, breaker) && kept.is_clean())
        {
            nodes.remove(node);
            self.troubled.store(!nodes.is_empty(), Ordering::Relaxed);
        }
    }
}

/// The node holding `key`, when `store` is spread over nodes and knows its layout.
fn node_of(store: &dyn Store, key: &str) -> Option<String> {
    store
        .locate(&[key])?
        .into_iter()
        .next()
        .map(|(node, _)| node)
}
