//! Rate-limited logging of store errors, so an outage does not flood the logs; and the rule
//! that keys are recorded only at trace level.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const INTERVAL_MS: u64 = 1000;

#[derive(Debug)]
pub(crate) struct ErrorLog {
    started: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog {
            started: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

/// `key` when trace level is enabled, else `None`: an event of any level records a key (a
/// field holding user data, often) only then, as the README promises. A `None` field is not
/// recorded.
pub(crate) fn traced<T>(key: T) -> Option<T> {
    tracing::enabled!(tracing::Level::TRACE).then_some(key)
}

/// `err` on one line for a log event, with `key` (which some errors name: a value that does
/// not decode, a refused write) replaced by `…` unless trace level is enabled.
pub(crate) fn without_key(err: &crate::Error, key: &str) -> String {
    let text = crate::error::one_line(err);
    match key.is_empty() || tracing::enabled!(tracing::Level::TRACE) {
        true => text,
        false => text.replace(key, "…"),
    }
}

impl ErrorLog {
    /// Logs at most one store error a second, saying how many were suppressed since.
    pub(crate) fn store_error(&self, operation: &str, key: &str, error: &crate::Error) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now + INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            operation,
            key = traced(key),
            suppressed,
            error = %without_key(error, key),
            "cache store error; continuing without the cache"
        );
    }
}
