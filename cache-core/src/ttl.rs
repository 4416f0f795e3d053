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
    early: Option<Beta>,
}

/// The XFetch `beta` of early refresh, compared by its bits (so that `SetOptions` is `Eq`).
#[derive(Debug, Clone, Copy)]
struct Beta(f64);

impl PartialEq for Beta {
    fn eq(&self, other: &Beta) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Beta {}

impl SetOptions {
    /// Options with this ttl, no tags and no lock.
    pub fn new(ttl: impl Into<Ttl>) -> SetOptions {
        SetOptions {
            ttl: ttl.into(),
            ..SetOptions::default()
        }
    }

    /// All of a `#[cache_result]` site's options at once (built on every call).
    #[inline]
    pub(crate) fn of(
        ttl: Ttl,
        tags: Vec<String>,
        lock: bool,
        stale_for: Option<Duration>,
    ) -> SetOptions {
        SetOptions {
            ttl,
            tags,
            lock,
            stale_for,
            early: None,
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

    /// Refreshes the value early, in the background, before it expires (probabilistic early
    /// expiration, XFetch: Vattani, Chierichetti and Lowenstein, VLDB 2015).
    ///
    /// A computed value records how long its computation took. Each read of it then decides
    /// at random to refresh it, with a probability that grows as expiry nears and with the
    /// cost of the computation: a read at time `now` refreshes when
    /// `now - took * beta * ln(rand()) >= expiry`. The read that decides returns the current
    /// value at once, and the value is recomputed once per key in this process (and, with
    /// [`lock`](SetOptions::lock), once across the processes sharing the store) while the
    /// other callers keep reading the current value. A refresh that fails leaves the current
    /// value to be served until its ttl.
    ///
    /// Where the refresh runs: [`Cache::get_or_refresh`](crate::Cache::get_or_refresh) and
    /// `#[cache_result(early_refresh = true)]` run it as its own task;
    /// [`Cache::get_or_set`](crate::Cache::get_or_set), whose factory may borrow from its
    /// caller, runs it in the call that decided (that one caller waits; the others do not).
    /// It applies to computed values: [`Cache::set`](crate::Cache::set) writes no computation
    /// time. A cache using the [`Json`](crate::Json) codec refuses it (the stamp is binary).
    ///
    /// ```
    /// use cache_core::{SetOptions, Ttl};
    ///
    /// let options = SetOptions::new(Ttl::Short).early_refresh(true);
    /// assert_eq!(options.early_refresh_beta(), Some(1.0));
    /// assert_eq!(options.beta(2.0).early_refresh_beta(), Some(2.0));
    /// ```
    pub fn early_refresh(mut self, on: bool) -> SetOptions {
        self.early = match on {
            true => Some(self.early.unwrap_or(Beta(1.0))),
            false => None,
        };
        self
    }

    /// Turns [early refresh](SetOptions::early_refresh) on with this `beta` (1.0 unless
    /// set): above 1 refreshes earlier, below 1 later. It must be finite and above 0; any
    /// other value is refused when a computed value is written (an [`Error::Config`]).
    ///
    /// [`Error::Config`]: crate::Error::Config
    pub fn beta(mut self, beta: f64) -> SetOptions {
        self.early = Some(Beta(beta));
        self
    }

    /// The early-refresh `beta`, when early refresh is on.
    pub fn early_refresh_beta(&self) -> Option<f64> {
        self.early.map(|beta| beta.0)
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
