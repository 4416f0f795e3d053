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

/// `err` on one line for a log event, with `key` (which some errors name, quoted: a value
/// that does not decode, a refused write) shown as `` `…` `` unless trace level is enabled.
/// Only the quoted key is replaced: a short key (`a`) also occurs in the message's words.
pub(crate) fn without_key(err: &crate::Error, key: &str) -> String {
    let text = crate::error::one_line(err);
    match tracing::enabled!(tracing::Level::TRACE) {
        true => text,
        false => hide_key(&text, key),
    }
}

/// `text` with the quoted `key` shown as `` `…` ``.
fn hide_key(text: &str, key: &str) -> String {
    text.replace(&format!("`{key}`"), "`…`")
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

#[cfg(test)]
mod tests {
    use super::hide_key;

    #[test]
    fn only_the_quoted_key_is_hidden() {
        let err = crate::Error::Decode {
            key: "a".into(),
            reason: "bad frame".into(),
        };
        let text = crate::error::one_line(&err);
        assert_eq!(
            hide_key(&text, "a"),
            "the value at key `…` could not be decoded: bad frame"
        );
        let err = crate::Error::Decode {
            key: "élève:`42`".into(),
            reason: "bad frame".into(),
        };
        let text = crate::error::one_line(&err);
        assert!(!hide_key(&text, "élève:`42`").contains("élève"));
        assert_eq!(hide_key("no key here", ""), "no key here");
    }
}
