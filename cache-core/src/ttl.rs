use std::time::Duration;

/// How long a written value lives: one of the configured expiry classes or an exact duration.
///
/// Every cache write takes an `impl Into<Ttl>`, so a [`Duration`] works where a `Ttl` is
/// expected, and `None` means the default class.
///
/// ```
/// use cache_core::Ttl;
/// use std::time::Duration;
///
/// assert_eq!(Ttl::from(Duration::from_secs(5)), Ttl::Exact(Duration::from_secs(5)));
/// assert_eq!(Ttl::from(None), Ttl::Default);
/// assert_eq!("short".parse::<Ttl>().unwrap(), Ttl::Short);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// `CACHE_DEFAULT_EXPIRE` (1 hour unless configured).
    #[default]
    Default,
    /// `CACHE_SHORT_EXPIRE` (5 minutes unless configured).
    Short,
    /// `CACHE_LONG_EXPIRE` (24 hours unless configured).
    Long,
    /// Exactly this long.
    Exact(Duration),
}

impl Ttl {
    /// A ttl of `secs` seconds.
    pub const fn secs(secs: u64) -> Ttl {
        Ttl::Exact(Duration::from_secs(secs))
    }
}

impl From<Duration> for Ttl {
    fn from(duration: Duration) -> Ttl {
        Ttl::Exact(duration)
    }
}

impl From<Option<Duration>> for Ttl {
    fn from(duration: Option<Duration>) -> Ttl {
        duration.map_or(Ttl::Default, Ttl::Exact)
    }
}

impl std::str::FromStr for Ttl {
    type Err = crate::Error;

    /// Parses an expiry class name: `default`, `short` or `long`.
    fn from_str(name: &str) -> crate::Result<Ttl> {
        match name {
            "default" => Ok(Ttl::Default),
            "short" => Ok(Ttl::Short),
            "long" => Ok(Ttl::Long),
            other => Err(crate::Error::Config {
                name: "expiry class",
                value: other.to_owned(),
                reason: "expected one of `default`, `short`, `long`".into(),
            }),
        }
    }
}
