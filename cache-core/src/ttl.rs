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

/// How a value is written: its [`Ttl`], the tags it carries, and whether a recomputation in
/// [`Cache::get_or_set`](crate::Cache::get_or_set) takes the distributed lock.
///
/// Anything that converts into a [`Ttl`] (a [`Duration`], an expiry class, `None`) converts
/// into `SetOptions` too, so simple calls stay simple:
///
/// ```
/// use cache_core::{SetOptions, Ttl};
///
/// let plain: SetOptions = Ttl::Short.into();
/// let tagged = SetOptions::new(Ttl::Long).tags(["user:42", "class:7"]).lock(true);
/// assert_eq!(tagged.tag_names(), ["user:42", "class:7"]);
/// # let _ = plain;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    ttl: Ttl,
    tags: Vec<String>,
    lock: bool,
    stale_for: Option<Duration>,
}

impl SetOptions {
    /// Options with this ttl, no tags and no lock.
    pub fn new(ttl: impl Into<Ttl>) -> SetOptions {
        SetOptions {
            ttl: ttl.into(),
            ..SetOptions::default()
        }
    }

    /// Tags the written value; [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)
    /// removes every value carrying a tag.
    pub fn tags<I, S>(mut self, tags: I) -> SetOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Whether [`Cache::get_or_set`](crate::Cache::get_or_set) takes a lock in the store
    /// before computing, so that several processes recompute a hot key once.
    pub fn lock(mut self, lock: bool) -> SetOptions {
        self.lock = lock;
        self
    }

    /// Keeps the value for `window` past its ttl as a fail-safe: [`Cache::get_or_set`](crate::Cache::get_or_set)
    /// and the macros recompute it once it is stale, but serve the stale value when the
    /// computation fails (or outlasts [`CacheBuilder::factory_timeout`](crate::CacheBuilder::factory_timeout)).
    /// Overrides [`CacheBuilder::fail_safe`](crate::CacheBuilder::fail_safe).
    pub fn stale_for(mut self, window: Duration) -> SetOptions {
        self.stale_for = Some(window);
        self
    }

    /// The fail-safe window, when one is set.
    pub fn stale_window(&self) -> Option<Duration> {
        self.stale_for
    }

    /// The ttl.
    pub fn ttl_class(&self) -> Ttl {
        self.ttl
    }

    /// The tags.
    pub fn tag_names(&self) -> &[String] {
        &self.tags
    }

    /// Whether the distributed lock is requested.
    pub fn locks(&self) -> bool {
        self.lock
    }
}

impl From<Ttl> for SetOptions {
    fn from(ttl: Ttl) -> SetOptions {
        SetOptions::new(ttl)
    }
}

impl From<Duration> for SetOptions {
    fn from(ttl: Duration) -> SetOptions {
        SetOptions::new(ttl)
    }
}

impl From<Option<Duration>> for SetOptions {
    fn from(ttl: Option<Duration>) -> SetOptions {
        SetOptions::new(ttl)
    }
}
