//! Randomness that needs no cryptographic strength: jitter, lock tokens, instance ids.

pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A random token, unique enough to identify one lock holder.
pub(crate) fn random_token() -> [u8; 16] {
    let mut token = [0u8; 16];
    token[..8].copy_from_slice(&random_u64().to_le_bytes());
    token[8..].copy_from_slice(&random_u64().to_le_bytes());
    token
}
