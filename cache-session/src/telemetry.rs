//! Session metrics through the [`metrics`](https://docs.rs/metrics) facade, with the
//! `metrics` feature; without it every function here is empty. Each carries the manager's
//! name as `session.manager.name`.

/// Counts `n` under the counter `name`, for the manager named `manager`.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn count(manager: &std::sync::Arc<str>, name: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    if n > 0 {
        let manager = metrics::SharedString::from_shared(std::sync::Arc::clone(manager));
        metrics::counter!(name, "session.manager.name" => manager).increment(n);
    }
}

/// Counts a validation (a read of a session by its token) by its outcome: `ok`, `invalid`
/// (malformed, unknown or ended token), `expired` or `store_error`.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn validated(manager: &std::sync::Arc<str>, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "cachemere.session.validated",
        "session.manager.name" => metrics::SharedString::from_shared(std::sync::Arc::clone(manager)),
        "outcome" => outcome
    )
    .increment(1);
}

/// Describes the session metrics (unit and meaning) for exporters; harmless to repeat.
#[cfg(feature = "metrics")]
pub(crate) fn describe() {
    use metrics::Unit;
    for (name, what) in [
        ("cachemere.session.created", "sessions created"),
        (
            "cachemere.session.revoked",
            "sessions ended by a logout, a revoke-all or the per-user limit",
        ),
        ("cachemere.session.rotated", "session tokens rotated"),
        (
            "cachemere.session.cleanup_removed",
            "expired index entries removed by clean-ups",
        ),
        (
            "cachemere.session.validated",
            "session reads by token, by outcome (ok, invalid, expired, store_error)",
        ),
    ] {
        metrics::describe_counter!(name, Unit::Count, what);
    }
}

/// Without the `metrics` feature there is nothing to describe.
#[cfg(not(feature = "metrics"))]
pub(crate) fn describe() {}
