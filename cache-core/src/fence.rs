//! Invalidation fences: cache-aside without stale refills.
//!
//! A get-or-set miss reads the database, and a writer may update the database and
//! invalidate the key before the miss writes what it read. Without a fence the miss then
//! stores the old value for a whole ttl. With one:
//!
//! - an invalidation leaves a short-lived marker in the key ([`marker`], `window` long)
//!   instead of removing it ([`Store::fence`](crate::Store::fence));
//! - a read that finds a marker is a miss;
//! - a miss writes its value only over what its read saw ([`Over`]): `SET NX` over nothing,
//!   a compare-and-set over a marker or a stale value. A value whose key was invalidated
//!   since is returned to its caller but not stored.
//!
//! A marker outlives the invalidation by `window`, so a miss over nothing that computed for
//! longer than half of it does not write (it could no longer tell). Hits pay nothing: the
//! marker is recognised only where a value does not decode.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How every fence marker starts: `0xCA` (a byte no JSON text starts with), then `0xFE`,
/// which is never a format version of cachemere's frames (see the `frame` layout), then
/// `FN`. A random nonce follows, so that each invalidation leaves a marker of its own.
///
/// A third-party [`Store`](crate::Store) needs it for [`Store::fence`](crate::Store::fence)'s
/// count.
pub const FENCE_PREFIX: &[u8] = &[0xCA, 0xFE, b'F', b'N'];

/// How long an invalidation's marker stays by default.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Whether stored bytes are an invalidation's marker rather than a value.
#[inline]
pub fn is_marker(bytes: &[u8]) -> bool {
    bytes.starts_with(FENCE_PREFIX)
}

/// A new marker: the prefix and 16 random bytes.
pub(crate) fn marker() -> Vec<u8> {
    let mut marker = Vec::with_capacity(FENCE_PREFIX.len() + 16);
    marker.extend_from_slice(FENCE_PREFIX);
    marker.extend_from_slice(&crate::random::random_token());
    marker
}

/// Removes `keys` from `store`, or with a fence `window`, fences them with a new marker;
/// returns how many held a value. Invalidations and their replays both remove keys here.
pub(crate) async fn remove(
    store: &dyn crate::Store,
    keys: &[String],
    window: Option<Duration>,
) -> crate::Result<u64> {
    match window {
        Some(window) => store.fence(keys, &marker(), window).await,
        None => store.delete_many(keys).await,
    }
}

/// Removes the keys matching `pattern` from `store`, or with a fence `window`, fences them
/// with a new marker; returns how many held a value. Pattern invalidations and their
/// replays both sweep here.
pub(crate) async fn remove_matching(
    store: &dyn crate::Store,
    pattern: &str,
    window: Option<Duration>,
) -> crate::Result<u64> {
    match window {
        Some(window) => store.fence_matching(pattern, &marker(), window).await,
        None => store.delete_matching(pattern).await,
    }
}

/// What a write may replace.
#[derive(Debug, Clone)]
pub(crate) enum Over {
    /// Whatever the key holds: `set`, `set_multi`, a cache without fences.
    Anything,
    /// Nothing: a miss whose read (made by `since`) found the key empty or could not read
    /// it. Written with `SET NX`, and not at all once half the fence window has passed.
    Nothing { since: Instant },
    /// Exactly these bytes: a miss over a marker or a stale value, an early refresh.
    Bytes(Arc<Vec<u8>>),
}

impl Over {
    /// Whether a write over nothing comes too late for the fence `window`: a marker left
    /// since the read may have expired already.
    pub(crate) fn too_late(&self, window: Option<Duration>) -> bool {
        match (self, window) {
            (Over::Nothing { since }, Some(window)) => since.elapsed() >= window / 2,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_unique_and_recognised() {
        let (a, b) = (marker(), marker());
        assert_ne!(a, b);
        assert!(is_marker(&a) && is_marker(&b));
        assert!(!is_marker(b"{\"json\":1}"));
        assert!(!is_marker(&[0xCA, 0x01, 0x00, 0x00]));
        assert!(!is_marker(&[]));
    }

    #[test]
    fn a_write_over_nothing_expires_with_half_the_window() {
        let since = Instant::now() - Duration::from_secs(31);
        let over = Over::Nothing { since };
        assert!(over.too_late(Some(Duration::from_secs(60))));
        assert!(!over.too_late(Some(Duration::from_secs(90))));
        assert!(!over.too_late(None));
        assert!(!Over::Anything.too_late(Some(Duration::ZERO)));
    }
}
