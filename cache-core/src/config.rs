//! Configuration from the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Settings shared by the stores, the [`Cache`](crate::Cache) and the session manager.
///
/// Build one with [`Config::from_env`] (the seed's variables, see the table below) or start
/// from [`Config::default`] and change fields.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `REDIS_URL` | unset | Redis to use; unset means the in-process [`MemoryStore`](crate::MemoryStore); several comma-separated URLs (or `redis+cluster://`) name a Redis Cluster's nodes |
/// | `CACHE_DEFAULT_EXPIRE` | 3600 | seconds; the ttl of writes that name none |
/// | `CACHE_SHORT_EXPIRE` | 300 | seconds; the `short` expiry class |
/// | `CACHE_LONG_EXPIRE` | 86400 | seconds; the `long` expiry class |
/// | `CACHE_KEY_PREFIX` | empty | prepended to every cache key |
/// | `CACHE_MAX_VALUE_BYTES` | 67108864 | largest encoded value a cache writes |
/// | `CACHE_OPERATION_TIMEOUT` | 0.5 | seconds (fractions allowed); deadline of each cache store operation |
/// | `CACHE_BREAKER_THRESHOLD` | 5 | consecutive store failures that open the circuit (0: never) |
/// | `CACHE_BREAKER_COOLDOWN` | 5 | seconds (fractions allowed) between health probes while the circuit is open |
/// | `SESSION_EXPIRE_SECONDS` | 86400 | session lifetime |
/// | `SESSION_CLEANUP_INTERVAL` | 3600 | seconds between session index clean-ups |
/// | `SESSION_ABSOLUTE_EXPIRE_SECONDS` | 604800 | seconds; no session outlives this, however active |
/// | `SESSION_MAX_PER_USER` | unset | most sessions a user keeps; creating one more ends the oldest (earliest created) |
/// | `SESSION_SECRET` | unset | key for HMAC-SHA-256 of session tokens in the store and of the user tag tokens carry (unkeyed SHA-256 when unset: set it in production) |
/// | `REDIS_MAX_CONNECTIONS` | 20 | connection limit for pooled backends |
/// | `REDIS_CONNECT_TIMEOUT` | 5 | seconds (fractions allowed) to establish a connection |
/// | `REDIS_SOCKET_TIMEOUT` | 5 | seconds (fractions allowed) to wait for a reply |
/// | `REDIS_HEALTH_CHECK_INTERVAL` | 30 | seconds between background health checks |
/// | `CACHE_ENCRYPTION_KEY` | unset | base64 of 32 random bytes (several, comma-separated, to rotate: the first encrypts, all decrypt); cached values are then stored encrypted ([`EncryptionKeys`](crate::encryption::EncryptionKeys)) |
/// | `CACHE_ENCRYPTION_FORMAT` | 1 | how new values are sealed: `2` derives a subkey per use (cache, sessions) and binds session data to its session; every format opens both. Switch to 2 once every instance runs a release that reads it ([`SealFormat`](crate::encryption::SealFormat)) |
/// | `REDIS_TLS_CA_FILE` | unset | PEM file of the certificate authorities a `rediss://` server's certificate must chain to (unset: the system's roots) |
/// | `REDIS_TLS_CERT_FILE` | unset | PEM client certificate (chain) for mutual TLS; needs `REDIS_TLS_KEY_FILE` |
/// | `REDIS_TLS_KEY_FILE` | unset | PEM private key of the client certificate |
/// | `REDIS_TLS_INSECURE_SKIP_VERIFY` | false | `true` accepts any server certificate (no verification at all: for tests only) |
///
/// The `REDIS_TLS_*` variables need a `rediss://` URL (TLS is built with the `tls` feature);
/// setting one for a plaintext `redis://` URL is an error rather than a silent plaintext
/// connection.
///
/// ```
/// let config = cache_core::Config::from_lookup(|name| match name {
///     "CACHE_SHORT_EXPIRE" => Some("60".into()),
///     _ => None,
/// })?;
/// assert_eq!(config.short_ttl, std::time::Duration::from_secs(60));
/// assert_eq!(config.default_ttl, std::time::Duration::from_secs(3600));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `REDIS_URL`: the server (or the cluster's seed nodes, comma-separated) to use; `None`
    /// selects the in-process store.
    pub redis_url: Option<String>,
    /// `CACHE_DEFAULT_EXPIRE`: ttl of writes that name none.
    pub default_ttl: Duration,
    /// `CACHE_SHORT_EXPIRE`: the `short` expiry class.
    pub short_ttl: Duration,
    /// `CACHE_LONG_EXPIRE`: the `long` expiry class.
    pub long_ttl: Duration,
    /// `CACHE_KEY_PREFIX`: prepended to every cache key.
    pub key_prefix: String,
    /// `CACHE_MAX_VALUE_BYTES`: largest encoded value a cache writes.
    pub max_value_bytes: usize,
    /// `CACHE_OPERATION_TIMEOUT`: deadline of each store operation a cache makes.
    pub cache_operation_timeout: Duration,
    /// `CACHE_BREAKER_THRESHOLD`: consecutive store failures that open the circuit (0: never).
    pub cache_breaker_threshold: usize,
    /// `CACHE_BREAKER_COOLDOWN`: time between health probes while the circuit is open.
    pub cache_breaker_cooldown: Duration,
    /// `SESSION_EXPIRE_SECONDS`: session lifetime (idle timeout: use extends it).
    pub session_ttl: Duration,
    /// `SESSION_CLEANUP_INTERVAL`: time between session index clean-ups.
    pub session_cleanup_interval: Duration,
    /// `SESSION_ABSOLUTE_EXPIRE_SECONDS`: absolute session lifetime, however active.
    pub session_absolute_ttl: Duration,
    /// `SESSION_MAX_PER_USER`: most sessions a user keeps (`None`: no limit).
    pub session_max_per_user: Option<usize>,
    /// `SESSION_SECRET`: key for hashing session tokens (HMAC-SHA-256).
    pub session_secret: Option<Secret>,
    /// `REDIS_MAX_CONNECTIONS`: connection limit for pooled backends.
    pub max_connections: usize,
    /// `REDIS_CONNECT_TIMEOUT`: time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// `REDIS_SOCKET_TIMEOUT`: time allowed for a reply.
    pub command_timeout: Duration,
    /// `REDIS_HEALTH_CHECK_INTERVAL`: time between background health checks.
    pub health_check_interval: Duration,
    /// `REDIS_TLS_CA_FILE`: PEM file of the certificate authorities trusted for `rediss://`
    /// (`None`: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// `REDIS_TLS_CERT_FILE`: PEM client certificate (chain) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// `REDIS_TLS_KEY_FILE`: PEM private key of [`tls_cert_file`](Config::tls_cert_file).
    pub tls_key_file: Option<PathBuf>,
    /// `REDIS_TLS_INSECURE_SKIP_VERIFY`: accept any server certificate and name. This turns
    /// TLS's protection against an impostor off; never set it in production.
    pub tls_insecure_skip_verify: bool,
    /// `CACHE_ENCRYPTION_KEY`: when set, caches built from this configuration store values
    /// encrypted (`Debug` shows key ids, never keys), in the format
    /// `CACHE_ENCRYPTION_FORMAT` names (`1`, the default, or `2`:
    /// [`SealFormat`](crate::encryption::SealFormat)).
    pub encryption_keys: Option<crate::encryption::EncryptionKeys>,
}

/// Passwords in `redis_url` are shown as `***` ([`redacted_url`]); the session secret is
/// never shown.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            redis_url,
            default_ttl,
            short_ttl,
            long_ttl,
            key_prefix,
            max_value_bytes,
            cache_operation_timeout,
            cache_breaker_threshold,
            cache_breaker_cooldown,
            session_ttl,
            session_cleanup_interval,
            session_absolute_ttl,
            session_max_per_user,
            session_secret,
            max_connections,
            connect_timeout,
            command_timeout,
            health_check_interval,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_insecure_skip_verify,
            encryption_keys,
        } = self;
        f.debug_struct("Config")
            .field("redis_url", &redis_url.as_deref().map(redacted_url))
            .field("default_ttl", default_ttl)
            .field("short_ttl", short_ttl)
            .field("long_ttl", long_ttl)
            .field("key_prefix", key_prefix)
            .field("max_value_bytes", max_value_bytes)
            .field("cache_operation_timeout", cache_operation_timeout)
            .field("cache_breaker_threshold", cache_breaker_threshold)
            .field("cache_breaker_cooldown", cache_breaker_cooldown)
            .field("session_ttl", session_ttl)
            .field("session_cleanup_interval", session_cleanup_interval)
            .field("session_absolute_ttl", session_absolute_ttl)
            .field("session_max_per_user", session_max_per_user)
            .field("session_secret", session_secret)
            .field("max_connections", max_connections)
            .field("connect_timeout", connect_timeout)
            .field("command_timeout", command_timeout)
            .field("health_check_interval", health_check_interval)
            .field("tls_ca_file", tls_ca_file)
            .field("tls_cert_file", tls_cert_file)
            .field("tls_key_file", tls_key_file)
            .field("tls_insecure_skip_verify", tls_insecure_skip_verify)
            .field("encryption_keys", encryption_keys)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_url: None,
            default_ttl: Duration::from_secs(3600),
            short_ttl: Duration::from_secs(300),
            long_ttl: Duration::from_secs(86_400),
            key_prefix: String::new(),
            max_value_bytes: 64 * 1024 * 1024,
            cache_operation_timeout: Duration::from_millis(500),
            cache_breaker_threshold: 5,
            cache_breaker_cooldown: Duration::from_secs(5),
            session_ttl: Duration::from_secs(86_400),
            session_cleanup_interval: Duration::from_secs(3600),
            session_absolute_ttl: Duration::from_secs(7 * 86_400),
            session_max_per_user: None,
            session_secret: None,
            max_connections: 20,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(30),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_insecure_skip_verify: false,
            encryption_keys: None,
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// Unset variables take their defaults; a set but unusable value is an
    /// [`Error::Config`] naming the variable and the value.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which maps a variable name to its value.
    ///
    /// This is [`from_env`](Config::from_env) without the process environment, for tests and
    /// for configuration that lives elsewhere.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let defaults = Config::default();
        let var = |name: &'static str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(|value| (name, value))
        };
        let seconds = |name, default| var(name).map_or(Ok(default), parse_whole_seconds);
        let timeout = |name, default| var(name).map_or(Ok(default), parse_fractional_seconds);
        let count = |name, default| var(name).map_or(Ok(default), parse_count);

        let redis_url = var("REDIS_URL").map(|(_, url)| url);
        if let Some(url) = &redis_url {
            crate::store::endpoint::Endpoint::parse(url).map_err(|reason| Error::Config {
                name: "REDIS_URL",
                value: redacted_url(url),
                reason: format!(
                    "{reason}; expected a URL such as redis://127.0.0.1:6379/0, or a cluster's \
                     nodes: redis://10.0.0.1:7000,10.0.0.2:7000"
                ),
            })?;
        }
        let path = |name| var(name).map(|(_, path)| PathBuf::from(path));
        let config = Config {
            redis_url,
            default_ttl: seconds("CACHE_DEFAULT_EXPIRE", defaults.default_ttl)?,
            short_ttl: seconds("CACHE_SHORT_EXPIRE", defaults.short_ttl)?,
            long_ttl: seconds("CACHE_LONG_EXPIRE", defaults.long_ttl)?,
            key_prefix: var("CACHE_KEY_PREFIX").map_or(defaults.key_prefix, |(_, p)| p),
            max_value_bytes: count("CACHE_MAX_VALUE_BYTES", defaults.max_value_bytes)?,
            cache_operation_timeout: timeout(
                "CACHE_OPERATION_TIMEOUT",
                defaults.cache_operation_timeout,
            )?,
            cache_breaker_threshold: var("CACHE_BREAKER_THRESHOLD")
                .map_or(Ok(defaults.cache_breaker_threshold), parse_count_or_zero)?,
            cache_breaker_cooldown: timeout(
                "CACHE_BREAKER_COOLDOWN",
                defaults.cache_breaker_cooldown,
            )?,
            session_ttl: seconds("SESSION_EXPIRE_SECONDS", defaults.session_ttl)?,
            session_cleanup_interval: seconds(
                "SESSION_CLEANUP_INTERVAL",
                defaults.session_cleanup_interval,
            )?,
            session_absolute_ttl: seconds(
                "SESSION_ABSOLUTE_EXPIRE_SECONDS",
                defaults.session_absolute_ttl,
            )?,
            session_max_per_user: var("SESSION_MAX_PER_USER").map(parse_count).transpose()?,
            session_secret: var("SESSION_SECRET").map(|(_, secret)| Secret(secret)),
            max_connections: count("REDIS_MAX_CONNECTIONS", defaults.max_connections)?,
            connect_timeout: timeout("REDIS_CONNECT_TIMEOUT", defaults.connect_timeout)?,
            command_timeout: timeout("REDIS_SOCKET_TIMEOUT", defaults.command_timeout)?,
            health_check_interval: seconds(
                "REDIS_HEALTH_CHECK_INTERVAL",
                defaults.health_check_interval,
            )?,
            tls_ca_file: path("REDIS_TLS_CA_FILE"),
            tls_cert_file: path("REDIS_TLS_CERT_FILE"),
            tls_key_file: path("REDIS_TLS_KEY_FILE"),
            tls_insecure_skip_verify: var("REDIS_TLS_INSECURE_SKIP_VERIFY")
                .map_or(Ok(false), parse_flag)?,
            encryption_keys: encryption_keys(&var)?,
        };
        config.check_tls()?;
        Ok(config)
    }

    /// Whether the `REDIS_TLS_*` settings fit together and with `REDIS_URL`: a client
    /// certificate needs its key (and the other way round), and TLS settings need a
    /// `rediss://` URL, so that a forgotten `s` is an error, not a plaintext connection.
    pub(crate) fn check_tls(&self) -> Result<()> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(Error::Config {
                    name: "REDIS_TLS_KEY_FILE",
                    value: String::new(),
                    reason:
                        "REDIS_TLS_CERT_FILE is set: a client certificate needs its private key"
                            .into(),
                });
            }
            (None, Some(_)) => {
                return Err(Error::Config {
                    name: "REDIS_TLS_CERT_FILE",
                    value: String::new(),
                    reason: "REDIS_TLS_KEY_FILE is set: a private key needs its client certificate"
                        .into(),
                });
            }
            _ => {}
        }
        let set = [
            ("REDIS_TLS_CA_FILE", shown(&self.tls_ca_file)),
            ("REDIS_TLS_CERT_FILE", shown(&self.tls_cert_file)),
            ("REDIS_TLS_INSECURE_SKIP_VERIFY", {
                let on = self.tls_insecure_skip_verify;
                if on { "true".to_owned() } else { String::new() }
            }),
        ];
        let plaintext = self
            .redis_url
            .as_deref()
            .is_some_and(|url| !url.trim_start().starts_with("rediss"));
        match set.into_iter().find(|(_, value)| !value.is_empty()) {
            Some((name, value)) if plaintext => Err(Error::Config {
                name,
                value,
                reason: format!(
                    "TLS settings need a rediss:// URL, but REDIS_URL is `{}`",
                    redacted_url(self.redis_url.as_deref().unwrap_or_default())
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// A secret setting: `Debug` does not show it.
///
/// ```
/// let secret = cache_core::config::Secret::new("hunter2");
/// assert_eq!(format!("{secret:?}"), "Secret(..)");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub use crate::store::endpoint::redacted_url;

fn parse_whole_seconds((name, value): (&'static str, String)) -> Result<Duration> {
    match value.parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(Error::Config {
            name,
            value,
            reason: "expected a whole number of seconds greater than zero".into(),
        }),
    }
}

fn parse_fractional_seconds((name, value): (&'static str, String)) -> Result<Duration> {
    match value.parse::<f64>().ok().and_then(|secs| {
        (secs > 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten()
    }) {
        Some(duration) => Ok(duration),
        None => Err(Error::Config {
            name,
            value,
            reason: "expected a number of seconds greater than zero, such as 5 or 0.25".into(),
        }),
    }
}

/// A path setting for an error message (empty when unset).
pub(crate) fn shown(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// `CACHE_ENCRYPTION_KEY`, sealing in `CACHE_ENCRYPTION_FORMAT` (which needs a key).
fn encryption_keys(
    var: &impl Fn(&'static str) -> Option<(&'static str, String)>,
) -> Result<Option<crate::encryption::EncryptionKeys>> {
    use crate::encryption::{EncryptionKeys, SealFormat};
    let format = var("CACHE_ENCRYPTION_FORMAT")
        .map(|(name, value)| {
            SealFormat::parse(&value).map_err(|reason| Error::Config {
                name,
                value,
                reason,
            })
        })
        .transpose()?;
    let Some((name, value)) = var("CACHE_ENCRYPTION_KEY") else {
        return match format {
            None => Ok(None),
            Some(_) => Err(Error::Config {
                name: "CACHE_ENCRYPTION_FORMAT",
                value: String::new(),
                reason: "set without CACHE_ENCRYPTION_KEY, which it is the format of".into(),
            }),
        };
    };
    let keys = EncryptionKeys::parse(&value).map_err(|reason| Error::Config {
        name,
        value: "(hidden)".into(),
        reason,
    })?;
    Ok(Some(keys.with_format(format.unwrap_or_default())))
}

fn parse_flag((name, value): (&'static str, String)) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            name,
            value,
            reason: "expected true or false".into(),
        }),
    }
}

fn parse_count_or_zero((name, value): (&'static str, String)) -> Result<usize> {
    value.parse::<usize>().map_err(|_| Error::Config {
        name,
        value,
        reason: "expected a whole number (0 disables)".into(),
    })
}

fn parse_count((name, value): (&'static str, String)) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::Config {
            name,
            value,
            reason: "expected a whole number greater than zero".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults_follow_the_seed() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.redis_url, None);
        assert_eq!(config.default_ttl, Duration::from_secs(3600));
        assert_eq!(config.short_ttl, Duration::from_secs(300));
        assert_eq!(config.long_ttl, Duration::from_secs(86_400));
        assert_eq!(config.session_ttl, Duration::from_secs(86_400));
        assert_eq!(config.session_cleanup_interval, Duration::from_secs(3600));
        assert_eq!(config.max_connections, 20);
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.command_timeout, Duration::from_secs(5));
        assert_eq!(config.health_check_interval, Duration::from_secs(30));
    }

    #[test]
    fn every_variable_is_read() {
        let config = Config::from_lookup(lookup(&[
            ("REDIS_URL", "redis://127.0.0.1:7000/2"),
            ("CACHE_DEFAULT_EXPIRE", "10"),
            ("CACHE_SHORT_EXPIRE", "1"),
            ("CACHE_LONG_EXPIRE", "100"),
            ("CACHE_KEY_PREFIX", "app:"),
            ("CACHE_MAX_VALUE_BYTES", "1024"),
            ("SESSION_EXPIRE_SECONDS", "60"),
            ("SESSION_CLEANUP_INTERVAL", "30"),
            ("SESSION_ABSOLUTE_EXPIRE_SECONDS", "600"),
            ("CACHE_OPERATION_TIMEOUT", "0.1"),
            ("CACHE_BREAKER_THRESHOLD", "0"),
            ("CACHE_BREAKER_COOLDOWN", "2"),
            ("SESSION_MAX_PER_USER", "5"),
            ("SESSION_SECRET", "s3cret"),
            ("REDIS_MAX_CONNECTIONS", "4"),
            ("REDIS_CONNECT_TIMEOUT", "0.25"),
            ("REDIS_SOCKET_TIMEOUT", "2"),
            ("REDIS_HEALTH_CHECK_INTERVAL", "7"),
        ]))
        .unwrap();
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://127.0.0.1:7000/2")
        );
        assert_eq!(config.default_ttl, Duration::from_secs(10));
        assert_eq!(config.short_ttl, Duration::from_secs(1));
        assert_eq!(config.long_ttl, Duration::from_secs(100));
        assert_eq!(config.key_prefix, "app:");
        assert_eq!(config.max_value_bytes, 1024);
        assert_eq!(config.session_ttl, Duration::from_secs(60));
        assert_eq!(config.session_cleanup_interval, Duration::from_secs(30));
        assert_eq!(config.session_absolute_ttl, Duration::from_secs(600));
        assert_eq!(config.cache_operation_timeout, Duration::from_millis(100));
        assert_eq!(config.cache_breaker_threshold, 0);
        assert_eq!(config.cache_breaker_cooldown, Duration::from_secs(2));
        assert_eq!(config.session_max_per_user, Some(5));
        assert_eq!(
            config.session_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.command_timeout, Duration::from_secs(2));
        assert_eq!(config.health_check_interval, Duration::from_secs(7));
    }

    #[test]
    fn garbage_is_an_error_naming_variable_and_value() {
        for (name, value) in [
            ("CACHE_DEFAULT_EXPIRE", "an hour"),
            ("CACHE_SHORT_EXPIRE", "-5"),
            ("CACHE_LONG_EXPIRE", "0"),
            ("REDIS_CONNECT_TIMEOUT", "NaN"),
            ("REDIS_SOCKET_TIMEOUT", "inf"),
            ("REDIS_MAX_CONNECTIONS", "1e3"),
            ("REDIS_URL", "localhost:6379"),
        ] {
            let err = Config::from_lookup(lookup(&[(name, value)])).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, Error::Config { .. }), "{name}: {err:?}");
            assert!(message.contains(name), "{message}");
            assert!(message.contains(value), "{message}");
        }
    }

    #[test]
    fn blank_values_mean_unset() {
        let config =
            Config::from_lookup(lookup(&[("REDIS_URL", "  "), ("CACHE_SHORT_EXPIRE", "")]))
                .unwrap();
        assert_eq!(config, Config::default());
    }

    proptest::proptest! {
        #[test]
        fn a_redacted_url_never_shows_the_password(
            user in "[a-z]{0,8}",
            password in "[A-Za-z0-9@:/%é]{1,16}",
            host in "[a-z0-9.]{1,12}",
        ) {
            let url = format!("redis://{user}:{password}@{host}:6379/0,{host}:6380");
            let shown = redacted_url(&url);
            proptest::prop_assert!(!shown.contains(&format!(":{password}@")), "{}", shown);
            proptest::prop_assert!(shown.contains(&host));
        }
    }
}
