//! The crate's error type and helpers.

use std::time::Duration;

/// The result type of every fallible `cache-core` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from a codec or another pluggable component.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `cache-core`.
///
/// Match on the variant for detail, or ask the classification methods
/// ([`is_transient`](Error::is_transient), [`is_timeout`](Error::is_timeout)) when
/// deciding whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis client or server reported an error.
    #[error("redis error during {operation}")]
    Redis {
        /// The store operation that failed (`GET`, `MSET`, ...).
        operation: &'static str,
        /// The underlying client error.
        #[source]
        source: redis::RedisError,
    },
    /// The store did not answer within the configured deadline.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The store operation that timed out.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// A computation run by [`Cache::get_or_refresh`](crate::Cache::get_or_refresh) panicked
    /// or was cancelled before producing a value.
    #[error("the computation for key `{key}` ended without a value")]
    ComputationFailed {
        /// The key being computed.
        key: String,
    },
    /// The batch that a [`BatchLoader::load`](crate::BatchLoader::load) joined failed (a
    /// store error in [strict](crate::CacheBuilder::strict) mode): every load of the batch
    /// gets this, with the batch's error as its source.
    #[error("the batch this load joined failed")]
    BatchFailed {
        /// The batch's error.
        #[source]
        source: std::sync::Arc<Error>,
    },
    /// The circuit breaker is open after repeated store failures: the store was not asked.
    #[error("{operation} skipped: the store is failing and the circuit is open")]
    CircuitOpen {
        /// The store operation that was skipped.
        operation: &'static str,
    },
    /// A value could not be serialized.
    #[error("could not encode the value for key `{key}` with the {codec} codec")]
    Encode {
        /// The key the value was meant for.
        key: String,
        /// The codec's name.
        codec: &'static str,
        /// What the serializer reported.
        #[source]
        source: BoxError,
    },
    /// Bytes read from the store are not a value this cache can decode: corrupt, written by
    /// another codec, or of another type.
    #[error("the value at key `{key}` could not be decoded: {reason}")]
    Decode {
        /// The key that was read.
        key: String,
        /// Why decoding failed.
        reason: String,
    },
    /// An encoded value is over the configured maximum size; nothing was written.
    #[error(
        "the value for key `{key}` is {size} bytes, over the maximum of {max} bytes \
         (raise `CACHE_MAX_VALUE_BYTES` or `CacheBuilder::max_value_bytes`)"
    )]
    ValueTooLarge {
        /// The key the value was meant for.
        key: String,
        /// Encoded size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A key or key argument was rejected before it reached the store.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The offending key (possibly shortened).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A time-to-live that the store cannot represent (zero, for example).
    #[error("invalid ttl {ttl:?} for key `{key}`: a ttl must be at least one millisecond")]
    InvalidTtl {
        /// The key the ttl was meant for.
        key: String,
        /// The rejected ttl.
        ttl: Duration,
    },
    /// An operation was applied to a key that holds another kind of value
    /// (a hash operation on a plain value, say).
    #[error("key `{key}` holds a value of another type than {operation} expects")]
    WrongType {
        /// The key.
        key: String,
        /// The operation that was refused.
        operation: &'static str,
    },
    /// A configuration variable has a value that cannot be used.
    #[error("invalid configuration: {name}={value:?}: {reason}")]
    Config {
        /// The variable or option name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// What would be accepted.
        reason: String,
    },
    /// The test kit (`cache-testing`) could not start or control `redis-server`.
    #[error("redis test server: {reason}")]
    Harness {
        /// What went wrong and how to fix it.
        reason: String,
        /// The I/O error behind it, if any.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed: timeouts, refused or dropped
    /// connections, a server that is loading or failing over, and a cluster whose slots are
    /// moving or whose node is unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Redis { source, .. } => {
                source.is_timeout()
                    || source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || matches!(
                        source.kind(),
                        redis::ErrorKind::ClusterConnectionNotFound
                            | redis::ErrorKind::Server(
                                redis::ServerErrorKind::BusyLoading
                                    | redis::ServerErrorKind::TryAgain
                                    | redis::ServerErrorKind::ClusterDown
                                    | redis::ServerErrorKind::MasterDown
                                    | redis::ServerErrorKind::Moved
                                    | redis::ServerErrorKind::Ask
                            )
                    )
            }
            _ => false,
        }
    }

    /// Whether the store did not answer in time.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Redis { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// Whether the store could not be reached at all (refused, dropped or never connected).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Redis { source, .. } => {
                source.is_connection_refusal()
                    || source.is_connection_dropped()
                    || source.is_io_error()
            }
            _ => false,
        }
    }

    pub(crate) fn redis(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
        move |source| Error::Redis { operation, source }
    }
}

/// Renders an error and its chain of sources on one line: `outer: inner: root cause`.
///
/// ```
/// # use cache_core::error::one_line;
/// let err = std::io::Error::other("connection refused");
/// assert_eq!(one_line(&err), "connection refused");
/// ```
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
