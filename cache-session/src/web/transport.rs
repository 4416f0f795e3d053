//! How a session token travels: a cookie, an `Authorization: Bearer` header, or either.

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::error::{Error, Result};
use crate::token::SessionToken;

/// Where the layer looks for the session token, and how it hands a new one out.
///
/// With [`Transport::Bearer`] a new token (after [`login`](super::SessionHandle::login) or
/// [`rotate`](super::SessionHandle::rotate)) reaches the client only through the handler's
/// response ([`SessionHandle::token`](super::SessionHandle::token)); the layer sets no cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// A cookie ([`CookieSettings`]), set and cleared by the layer.
    #[default]
    Cookie,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// Both: a request's `Authorization` header, when it has one, wins over its cookie; the
    /// layer sets the cookie as with [`Transport::Cookie`].
    CookieOrBearer,
}

impl Transport {
    fn reads_cookie(self) -> bool {
        matches!(self, Transport::Cookie | Transport::CookieOrBearer)
    }

    fn reads_bearer(self) -> bool {
        matches!(self, Transport::Bearer | Transport::CookieOrBearer)
    }

    /// Whether the layer sets and clears the session cookie.
    pub(super) fn sets_cookie(self) -> bool {
        self.reads_cookie()
    }
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent only with requests from the site itself.
    Strict,
    /// Also sent with top-level navigations from other sites (links), not with their
    /// sub-requests or form posts.
    #[default]
    Lax,
    /// Sent with every request (needs `Secure`): cross-site requests carry the session, so
    /// turn on the [CSRF check](super::SessionLayer::csrf).
    None,
}

/// The session cookie's name and attributes.
///
/// The default is the strictest a browser accepts for a session cookie:
/// `__Host-session=<token>; Max-Age=<until the session expires>; Path=/; Secure; HttpOnly;
/// SameSite=Lax`. The `__Host-` prefix makes browsers refuse the cookie unless it is
/// `Secure`, has `Path=/` and no `Domain`, so no other host or path can plant or shadow it;
/// [`SessionLayer::cookie`](super::SessionLayer::cookie) checks these rules.
///
/// ```
/// use cache_session::web::{CookieSettings, SameSite};
///
/// // a cookie shared with subdomains cannot use the `__Host-` prefix
/// let cookie = CookieSettings::default()
///     .name("__Secure-session")
///     .domain("example.com")
///     .same_site(SameSite::Strict);
/// # let _ = cookie;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    name: String,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
}

impl Default for CookieSettings {
    fn default() -> CookieSettings {
        CookieSettings {
            name: "__Host-session".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
        }
    }
}

impl CookieSettings {
    /// The cookie's name (default `__Host-session`).
    pub fn name(mut self, name: impl Into<String>) -> CookieSettings {
        self.name = name.into();
        self
    }

    /// `Secure`: sent over HTTPS only (default on; browsers treat `http://localhost` as
    /// secure).
    pub fn secure(mut self, secure: bool) -> CookieSettings {
        self.secure = secure;
        self
    }

    /// `HttpOnly`: out of reach of the page's scripts (default on).
    pub fn http_only(mut self, http_only: bool) -> CookieSettings {
        self.http_only = http_only;
        self
    }

    /// `SameSite` (default [`SameSite::Lax`]).
    pub fn same_site(mut self, same_site: SameSite) -> CookieSettings {
        self.same_site = same_site;
        self
    }

    /// `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> CookieSettings {
        self.path = path.into();
        self
    }

    /// `Domain` (default none: this host only).
    pub fn domain(mut self, domain: impl Into<String>) -> CookieSettings {
        self.domain = Some(domain.into());
        self
    }

    /// Checks the settings against what browsers accept.
    pub(super) fn check(&self) -> Result<()> {
        let invalid = |reason: &str| {
            Err(Error::InvalidArgument {
                name: "session cookie",
                reason: reason.to_owned(),
            })
        };
        let is_token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(is_token_char) {
            return invalid("the name must be 1 or more visible ASCII characters, no separators");
        }
        let attribute_ok = |value: &str| value.chars().all(|c| c.is_ascii_graphic() && c != ';');
        if !self.path.starts_with('/') || !attribute_ok(&self.path) {
            return invalid("the path must start with `/` and hold no `;` or spaces");
        }
        if self
            .domain
            .as_deref()
            .is_some_and(|domain| domain.is_empty() || !attribute_ok(domain))
        {
            return invalid("the domain must be a host name");
        }
        if self.name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return invalid(
                "a `__Host-` cookie must be Secure, with Path=/ and no Domain (browsers refuse \
                 it otherwise); rename it (e.g. `__Secure-session`) to change these",
            );
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return invalid("a `__Secure-` cookie must be Secure (browsers refuse it otherwise)");
        }
        if self.same_site == SameSite::None && !self.secure {
            return invalid("SameSite=None needs Secure (browsers refuse it otherwise)");
        }
        Ok(())
    }

    /// The `Set-Cookie` value that hands out `token` until `expires_at`.
    pub(super) fn set(&self, token: &SessionToken, expires_at: SystemTime) -> Option<HeaderValue> {
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        // rounded up, so that the cookie never ends before the session
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        self.header(token.expose(), seconds.max(1))
    }

    /// The `Set-Cookie` value that removes the cookie (same name, path and domain).
    pub(super) fn clear(&self) -> Option<HeaderValue> {
        self.header("", 0)
    }

    fn header(&self, value: &str, max_age_seconds: u64) -> Option<HeaderValue> {
        let same_site = match self.same_site {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        };
        let max_age = i64::try_from(max_age_seconds).unwrap_or(i64::MAX);
        let mut cookie = cookie::Cookie::build((self.name.as_str(), value))
            .path(self.path.as_str())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(same_site)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.as_str());
        }
        HeaderValue::from_str(&cookie.to_string()).ok()
    }
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Cookie,
    Bearer,
}

/// The token a request carries, as the transport finds it. A value that is not a token is
/// no token: the request has no session, and it is never an error.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    pub(super) token: Option<SessionToken>,
    /// What the request sent when it is not a token (it is still validated, and counted as
    /// an invalid one).
    pub(super) malformed: Option<String>,
    pub(super) source: Option<Source>,
}

impl Incoming {
    pub(super) fn from_headers(
        transport: Transport,
        cookie: &CookieSettings,
        headers: &HeaderMap,
    ) -> Incoming {
        let bearer = transport
            .reads_bearer()
            .then(|| bearer(headers))
            .flatten()
            .map(|value| (value, Source::Bearer));
        let found = bearer.or_else(|| {
            transport
                .reads_cookie()
                .then(|| cookie_value(headers, &cookie.name))
                .flatten()
                .map(|value| (value, Source::Cookie))
        });
        match found {
            Some((value, source)) => match SessionToken::parse(&value) {
                Ok(token) => Incoming {
                    token: Some(token),
                    malformed: None,
                    source: Some(source),
                },
                Err(_) => Incoming {
                    token: None,
                    malformed: Some(value),
                    source: Some(source),
                },
            },
            None => Incoming {
                token: None,
                malformed: None,
                source: None,
            },
        }
    }
}

// Header bytes are read lossily: a value that is not ASCII is still a (malformed) token, so
// the request is told "invalid session", not "missing".
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = String::from_utf8_lossy(headers.get(AUTHORIZATION)?.as_bytes());
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(std::result::Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// When a session that lives `ttl` from now expires.
pub(super) fn expiry_after(ttl: Duration) -> SystemTime {
    SystemTime::now() + ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const TOKEN: &str =
        "cms1_00112233445566778899aabbccddeeff_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn the_default_cookie_is_the_strictest() {
        let settings = CookieSettings::default();
        settings.check().unwrap();
        let token = SessionToken::parse(TOKEN).unwrap();
        let header = settings
            .set(&token, SystemTime::now() + Duration::from_millis(1_800_500))
            .unwrap();
        let header = header.to_str().unwrap();
        assert!(
            header.starts_with(&format!("__Host-session={TOKEN};")),
            "{header}"
        );
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=1801",
        ] {
            assert!(
                header.contains(attribute),
                "{attribute} missing in {header}"
            );
        }
        assert!(!header.contains("Domain"), "{header}");
        let cleared = settings.clear().unwrap();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn settings_browsers_refuse_are_errors() {
        let host = CookieSettings::default();
        assert!(host.clone().domain("example.com").check().is_err());
        assert!(host.clone().secure(false).check().is_err());
        assert!(host.clone().path("/app").check().is_err());
        assert!(host.clone().name("").check().is_err());
        assert!(host.clone().name("a;b").check().is_err());
        assert!(
            host.clone()
                .name("__Secure-s")
                .secure(false)
                .check()
                .is_err()
        );
        let plain = host.name("sid").secure(false);
        plain.clone().check().unwrap();
        assert!(plain.clone().same_site(SameSite::None).check().is_err());
        assert!(plain.clone().path("/a;b").check().is_err());
        assert!(plain.domain("").check().is_err());
    }

    #[test]
    fn finds_the_token_where_the_transport_says() {
        let settings = CookieSettings::default();
        let cookie = format!("theme=dark; __Host-session={TOKEN}; other=1");
        let both = headers(&[("cookie", &cookie), ("authorization", "Bearer nonsense")]);
        let read = |transport| Incoming::from_headers(transport, &settings, &both);
        assert_eq!(read(Transport::Cookie).token.unwrap().expose(), TOKEN);
        let bearer = read(Transport::Bearer);
        assert_eq!(bearer.source, Some(Source::Bearer));
        assert!(bearer.token.is_none(), "a malformed token is no token");
        assert!(
            read(Transport::CookieOrBearer).token.is_none(),
            "the header wins"
        );
        let lower = headers(&[("authorization", &format!("bearer {TOKEN}"))]);
        let found = Incoming::from_headers(Transport::CookieOrBearer, &settings, &lower);
        assert_eq!(found.token.unwrap().expose(), TOKEN);
        assert!(
            Incoming::from_headers(Transport::Cookie, &settings, &lower)
                .token
                .is_none()
        );
        let none = Incoming::from_headers(Transport::CookieOrBearer, &settings, &HeaderMap::new());
        assert!(none.token.is_none() && none.source.is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, max_shrink_time: 5_000, ..Default::default() })]
        #[test]
        fn arbitrary_headers_are_no_token_or_a_token(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let settings = CookieSettings::default();
            let mut map = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                map.append(COOKIE, value.clone());
                map.append(AUTHORIZATION, value);
            }
            let found = Incoming::from_headers(Transport::CookieOrBearer, &settings, &map);
            if let Some(token) = found.token {
                proptest::prop_assert!(SessionToken::parse(token.expose()).is_ok());
            }
        }
    }
}
