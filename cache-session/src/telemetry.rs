//! Session metrics through the [`metrics`](https://docs.rs/metrics) facade, with the
//! `metrics` feature; without it every function here is empty.

/// Counts `n` under the counter `name`.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn count(name: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    if n > 0 {
        metrics::counter!(name).increment(n);
    }
}

/// Counts a validation (a read of a session by its token) by its outcome: `ok`, `invalid`
/// (malformed, unknown or ended token), `expired` or `store_error`.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn validated(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("cachemere.session.validated", "outcome" => outcome).increment(1);
}
